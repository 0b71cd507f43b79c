"""Building frozen backbones by name: the offline ones (timm, torchvision or a port from another framework),
or any timm model from the hub."""

from __future__ import annotations

import importlib
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fusion_lib.data.assets import AssetError, asset_file, get_asset, imagenet_samples
from fusion_lib.data.atomic import sha256_file
from fusion_lib.data.backbones.config import (
    BACKBONE_CFGS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFLINE_BACKBONES,
    ZOOS,
    BackboneCfg,
    min_input_size,
    short_name,
)
from fusion_lib.data.checks import split_names
from fusion_lib.data.fold_bn import fold_batchnorm


class BackboneError(ValueError):
    """A backbone name or weights that cannot be used."""


@dataclass
class Backbone:
    """A frozen eval-mode feature extractor with its preprocessing and metadata."""

    name: str
    model: nn.Module  # images (n, 3, s, s), normalised -> features (n, feature_dim)
    imagenet_model: nn.Module | None  # images -> ImageNet logits, for sanity checks (None: no ImageNet head)
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    weights: str
    n_params: int = 0
    gflops: float = 0.0
    imagenet_top1: float | None = None
    native_input_size: int = 224  # the size the ImageNet classifier was trained at

    @property
    def short_name(self) -> str:
        """The display name used in plots and tables (see ``short_name``)."""
        return short_name(self.name)

    def describe(self) -> dict:
        """Metadata as a flat dict (one row of a backbone table)."""
        return {
            "backbone": self.name,
            "params_m": round(self.n_params / 1e6, 3),
            "gflops": round(self.gflops, 4),
            "input_size": self.input_size,
            "feature_dim": self.feature_dim,
            "imagenet_top1": self.imagenet_top1,
            "weights": self.weights,
        }

    def eval_transform(self, size: int | None = None):
        """ImageNet-style evaluation transform (resize, centre crop, normalise) for PIL images, at ``size``
        (default: the feature input size)."""
        # torchvision is imported where used, as timm is: it loads torch's compiler stack (about 2 s),
        # and only a transform or SqueezeNet needs it
        from torchvision import transforms as T

        size = size or self.input_size
        scaled = int(round(size / self.crop_pct))
        return T.Compose(
            [
                T.Resize(scaled, interpolation=_interp(self.interpolation)),
                T.CenterCrop(size),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )


def _interp(name: str):
    from torchvision.transforms import InterpolationMode

    return {
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST,
    }.get(name, InterpolationMode.BILINEAR)


class _TimmFeatures(nn.Module):
    """A timm model's pooled pre-logit features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


class _SqueezeFeatures(nn.Module):
    """SqueezeNet's last fire module, average-pooled: 512-d."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.features = model.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


def resolve_backbones(spec: str | Sequence[str]) -> list[str]:
    """Expand a backbone spec: "offline" (the diverse zoo, the book's experts), a zoo's name ("homogeneous",
    "diverse"), "all-offline" (every offline backbone), a comma-separated string, or a list of names."""
    named = {"offline": ZOOS["diverse"], "all-offline": OFFLINE_BACKBONES, **ZOOS}
    out: list[str] = []
    for n in split_names(spec):
        out.extend(named.get(n, [n]))
    if not out:
        raise BackboneError(
            f"no backbones given; use {', '.join(map(repr, named))} or names such as "
            + ", ".join(OFFLINE_BACKBONES)
        )
    for n in out:
        _check_name(n)
    return list(dict.fromkeys(out))


def _check_name(name: str) -> None:
    # timm (with huggingface_hub) takes seconds to import and only building a backbone needs it, not the fitting, the checks or a CLI's help: imported where used in this module
    import timm

    if name in OFFLINE_BACKBONES or timm.is_model(name):
        return
    close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
    raise BackboneError(
        f"unknown backbone {name!r}. Valid: the offline backbones {', '.join(OFFLINE_BACKBONES)}, "
        f"the zoos {', '.join(ZOOS)}, "
        f"or any timm model name (timm.list_models()); similar timm names: {', '.join(close) or 'none'}"
    )


# weights="random": the architecture with its own seeded initialisation, the control a probe of pretrained
# weights is measured against (a port without an ImageNet head cannot be checked on ImageNet samples)
RANDOM = "random"
RANDOM_SEED = 0


def _weights_override(name: str, weights: str | os.PathLike | None) -> Path | None:
    if weights == RANDOM:
        return None
    env = "FUSION_WEIGHTS_" + name.upper().replace("-", "_").replace(".", "_")
    given = weights if weights not in (None, "auto", "registry", "hub") else os.environ.get(env)
    if not given:
        return None
    p = Path(given).expanduser()
    if not p.is_file():
        raise BackboneError(f"weights file {p} for {name!r} does not exist (given via weights= or {env})")
    return p


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _map_in_order(source: dict[str, torch.Tensor], target: nn.Module, what: str) -> OrderedDict:
    """Map a state dict onto a model's parameters by position, checking every shape."""
    tgt = target.state_dict()
    if len(source) != len(tgt):
        raise BackboneError(
            f"{what}: {len(source)} tensors but the model has {len(tgt)}; wrong weights file?"
        )
    out = OrderedDict()
    for (sk, sv), (tk, tv) in zip(source.items(), tgt.items()):
        if tuple(sv.shape) != tuple(tv.shape):
            raise BackboneError(f"{what}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


def _registry_weights(name: str) -> Path:
    """The weights file of the offline backbone ``name`` from the asset registry; a missing asset says
    how to get it."""
    cfg = BACKBONE_CFGS[name]
    try:
        return asset_file(cfg.asset, cfg.weights_file)
    except AssetError as exc:
        raise BackboneError(
            f"no offline weights for {name!r}: {exc}\nFix: run `python -m fusion_lib assets fetch "
            f"{cfg.asset}`, pass weights='hub' when online, or weights=PATH."
        ) from None


def _build_timm(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, str, dict]:
    import timm

    override = _weights_override(name, weights)
    if weights == RANDOM:
        model, source = timm.create_model(name, pretrained=False), "random init"
    elif name in BACKBONE_CFGS and override is None and weights != "hub":
        model = timm.create_model(name, pretrained=False)
        path = _registry_weights(name)
        model.load_state_dict(_map_in_order(_load_state(path), model, name))
        source = f"registry: {path.name}"
    elif override is not None:
        model = timm.create_model(name, pretrained=False)
        state = _load_state(override)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            model.load_state_dict(_map_in_order(state, model, name))
        source = f"file: {override}"
    else:
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as exc:  # hub errors come in many types (HTTP, OS, HF)
            raise BackboneError(
                f"could not download pretrained weights for {name!r} from the timm hub ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}).\nFix: go online, or pass weights=PATH to a "
                f"state dict (or set FUSION_WEIGHTS_{name.upper()}); offline backbones: {', '.join(OFFLINE_BACKBONES)}"
            ) from None
        source = "timm hub"
    pre = model.pretrained_cfg
    meta = {
        "mean": tuple(pre.get("mean", IMAGENET_MEAN)),
        "std": tuple(pre.get("std", IMAGENET_STD)),
        "input_size": int(pre.get("input_size", (3, 224, 224))[-1]),
        "interpolation": pre.get("interpolation", "bilinear"),
        "crop_pct": float(pre.get("crop_pct", 0.875)),
    }
    return model, source, meta


def _build_squeezenet(weights: str | os.PathLike | None) -> tuple[nn.Module, str]:
    from torchvision.models import squeezenet1_1

    override = _weights_override("squeezenet1_1", weights)
    if weights == "hub":
        try:
            return squeezenet1_1(weights="DEFAULT"), "torchvision hub"
        except Exception as exc:
            raise BackboneError(
                f"could not download torchvision squeezenet1_1 weights: {exc}. "
                f"Offline, use the default registry weights."
            ) from None
    model = squeezenet1_1(weights=None)
    if weights == RANDOM:
        return model, "random init"
    if override is not None:
        model.load_state_dict(_load_state(override))
        return model, f"file: {override}"
    path = _registry_weights("squeezenet1_1")
    model.load_state_dict(_load_state(path))
    return model, f"registry: {path.name}"


def _port_module(cfg: BackboneCfg):
    return importlib.import_module(f"fusion_lib.data.backbones.{cfg.port}")


def _build_port(cfg: BackboneCfg, weights: str | os.PathLike | None) -> tuple[nn.Module, str]:
    """A port's architecture (``build()`` of its module) with its converted weights: the registry's, or a
    state dict given as ``weights``. A port has no hub copy of its own: its ``hub_name`` is timm's model."""
    if weights == "hub":
        hint = f"load_backbone({cfg.hub_name!r}, weights='hub')" if cfg.hub_name else "the registry weights"
        raise BackboneError(f"{cfg.name!r} is a port of an offline file and has no hub copy; use {hint}")
    model = _port_module(cfg).build()
    if weights == RANDOM:
        return model, "random init"
    override = _weights_override(cfg.name, weights)
    path = override if override is not None else _registry_weights(cfg.name)
    model.load_state_dict(_load_state(path))
    return model, (f"file: {override}" if override is not None else f"registry: {path.name}")


def _hub_weights_available(name: str) -> bool:
    """Whether timm's pretrained weights for ``name`` can be had: a local file given for it, timm's hub
    cache, or (unless ``HF_HUB_OFFLINE``) the Hugging Face hub answering for its weights file."""
    if _weights_override(name, None) is not None:
        return True
    from huggingface_hub import file_exists, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    pre = get_pretrained_cfg(name)
    repo = getattr(pre, "hf_hub_id", None) if pre is not None else None
    if not repo:
        return False
    if any(
        isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")
    ):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        return False
    try:
        return bool(file_exists(repo, "model.safetensors"))
    except Exception:  # no network, a proxy, a hub error: all mean "not reachable now"
        return False


def hub_or_offline(name: str) -> str:
    """``name``, or, when it is a hub model whose weights cannot be had here (Xception, Inception-v3), the
    offline port that stands in for it (``BackboneCfg.hub_name``), with a warning. The hub stays first."""
    stand_in = next((c.name for c in BACKBONE_CFGS.values() if c.hub_name == name), None)
    if stand_in is None or _hub_weights_available(name):
        return name
    warnings.warn(
        f"timm hub weights for {name!r} are unreachable; using the offline port {stand_in!r} "
        f"({BACKBONE_CFGS[stand_in].trained_on}) instead",
        stacklevel=2,
    )
    return stand_in


def count_gflops(model: nn.Module, input_size: int) -> float:
    """Multiply-accumulates (in G) of one forward pass on one image, the convention of the
    EfficientNet and SqueezeNet papers (torch's FLOP counter counts 2 per MAC)."""

    x = torch.zeros(1, 3, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def _build(
    name: str, cfg: BackboneCfg | None, weights: str | os.PathLike | None
) -> tuple[nn.Module | None, nn.Module, int, str, dict]:
    """(ImageNet classifier or None, features module, feature width, weights source, preprocessing)."""
    if cfg is None or cfg.library == "timm":
        net, source, meta = _build_timm(name, weights)
        # pre-logit width: VGG's head adds a 4096-d MLP after its 512 conv channels (num_features)
        return (
            net,
            _TimmFeatures(net),
            getattr(net, "head_hidden_size", None) or net.num_features,
            source,
            meta,
        )
    meta = {
        "mean": cfg.mean,
        "std": cfg.std,
        "input_size": cfg.input_size,
        "interpolation": cfg.interpolation,
        "crop_pct": cfg.crop_pct,
    }
    if cfg.library == "port":
        features, source = _build_port(cfg, weights)
        return None, features, features.feature_dim, source, meta
    net, source = _build_squeezenet(weights)
    return net, _SqueezeFeatures(net), 512, source, meta


def load_backbone(
    name: str, input_size: int | None = None, weights: str | os.PathLike | None = "auto"
) -> Backbone:
    """A frozen backbone by name.

    ``weights``: "auto" (registry copy for the offline backbones, hub for other timm models), "hub",
    "random" (the architecture initialised with seed 0: the control for probes of the weights), or a path
    to a state dict. ``input_size`` sets the size the features are extracted at
    (default: the model's own); GFLOPs are counted at that size.
    """
    _check_name(name)
    cfg = BACKBONE_CFGS.get(name)
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_SEED)  # a random init is the same every time; other weights overwrite it
        net, features, dim, source, meta = _build(name, cfg, weights)
    for module in (net, features):
        if module is None:
            continue
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
    size = int(input_size or meta["input_size"])
    if size < min_input_size(name):
        raise BackboneError(
            f"input_size {size} is too small for {name!r}; use at least {min_input_size(name)} pixels"
        )
    # frozen for good: the batch norms become part of the convolutions (checked on a random input)
    fold_batchnorm(features, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)))
    backbone = Backbone(
        name=name,
        model=features,
        imagenet_model=net,
        feature_dim=int(dim),
        input_size=size,
        mean=meta["mean"],
        std=meta["std"],
        interpolation=meta["interpolation"],
        crop_pct=meta["crop_pct"],
        weights=source,
        n_params=sum(p.numel() for p in (net or features).parameters()),
        imagenet_top1=cfg.imagenet_top1 if cfg is not None and source.startswith("registry") else None,
        native_input_size=int(meta["input_size"]),
    )
    backbone.gflops = count_gflops(features, size)
    return backbone


def imagenet_predictions(backbone: Backbone, device: str = "cpu") -> tuple[list[int], list[int]]:
    """(predicted, true) ImageNet classes on foolbox's 20 samples, at the backbone's native input size, with
    the classifier on ``device``."""

    if backbone.imagenet_model is None:
        raise BackboneError(
            f"{backbone.name!r} has no ImageNet classifier to check ({BACKBONE_CFGS[backbone.name].trained_on}); "
            "check its features with a linear probe instead (notebook 01)"
        )
    # the classifier's weights do not depend on the feature input size; only the transform does
    tf = backbone.eval_transform(backbone.native_input_size)
    samples = imagenet_samples()
    batch = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in samples])
    with torch.no_grad():
        logits = backbone.imagenet_model.to(device)(batch.to(device))
    return logits.argmax(1).tolist(), [label for _, label in samples]


def imagenet_sanity_check(name: str | Backbone) -> tuple[int, int]:
    """How many of foolbox's 20 ImageNet samples the backbone classifies correctly: (correct, total)."""
    backbone = load_backbone(name) if isinstance(name, str) else name
    pred, true = imagenet_predictions(backbone)
    return sum(int(p == t) for p, t in zip(pred, true)), len(true)


def backbone_table(
    names: str | Sequence[str] = "offline", input_size: int | None = None, sanity_check: bool = False
):
    """A pandas table of backbone metadata (and, optionally, the ImageNet sample check)."""

    rows = []
    for n in resolve_backbones(names):
        b = load_backbone(n, input_size=input_size)
        row = b.describe()
        if sanity_check and b.imagenet_model is None:
            row["imagenet_samples_correct"] = "no ImageNet head"
        elif sanity_check:
            correct, total = imagenet_sanity_check(b)
            row["imagenet_samples_correct"] = f"{correct}/{total}"
        rows.append(row)
    return pd.DataFrame(rows)


def default_input_size(name: str) -> int:
    """The backbone's native input size, without building it."""
    _check_name(name)
    cfg = BACKBONE_CFGS.get(name)
    if cfg is not None and cfg.library != "timm":
        return cfg.input_size
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def weights_identity(name: str, weights: str | os.PathLike | None = "auto") -> str:
    """What the weights are, without building the model: a pinned or computed sha256, the hub name, or
    the seeded random initialisation."""

    override = _weights_override(name, weights)
    if override is not None:
        return "sha256:" + sha256_file(override)
    if weights == "hub":
        return f"hub:{name}"
    if weights == RANDOM:  # the initialisation code of torch and timm draws the weights
        import timm

        return f"random:seed{RANDOM_SEED}:torch-{torch.__version__}:timm-{timm.__version__}"
    cfg = BACKBONE_CFGS.get(name)
    if cfg is not None:
        pinned = "sha256:" + next(iter(get_asset(cfg.asset).members.values()))
        # a port's converted file is named for its conversion version, which moves its features too
        return pinned + (f"+{cfg.weights_file}" if cfg.library == "port" else "")
    return f"hub:{name}"


def provenance_table(names: str | Sequence[str] = "all-offline"):
    """Where each offline backbone's weights come from: family, package, what they were trained on, licence
    and the published ImageNet top-1, as display text (a pandas table; hub models are left out)."""

    rows = []
    for n in resolve_backbones(names):
        cfg = BACKBONE_CFGS.get(n)
        if cfg is None:
            continue
        asset = get_asset(cfg.asset)
        top1 = "n/a (fine-tuned)" if cfg.imagenet_top1 is None else f"{cfg.imagenet_top1:.1f}"
        rows.append(
            {
                "backbone": n,
                "family": cfg.family,
                "package": f"{asset.package} ({asset.source})",
                "trained on": cfg.trained_on,
                "licence": cfg.licence,
                "imagenet_top1": top1,
            }
        )
    return pd.DataFrame(rows)
