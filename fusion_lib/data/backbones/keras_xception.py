"""Keras' ImageNet Xception (``keras.applications.Xception(include_top=False)``, frozen inside a Keras 3
kitchen-utensil classifier): the trunk, global-average-pooled to 2048-d.

timm's ``legacy_xception`` is the same network, but pads its max pools symmetrically, uses torch's
batch-norm epsilon and nests each separable convolution in a module of its own, which ``fold_bn`` cannot
fold. This module writes it out flat instead: each separable convolution is its depthwise and pointwise
``nn.Conv2d`` followed by its ``nn.BatchNorm2d`` (Keras' epsilon, 1e-3), and the stride-2 max pools pad as
TF's "same" (more at the bottom/right, with -inf).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from timm.layers import create_pool2d
from torch import nn

from fusion_lib.data.assets import AssetError
from fusion_lib.data.atomic import atomic_path
from fusion_lib.data.backbones.config import BACKBONE_CFGS

KERAS_FILE = "kitchenware_xception_model_val-acc_0.901.keras"
INNER = "xception"  # the trunk's name in the classifier's config
H5_LAYERS = "layers/functional/layers"  # where Keras 3 saves the trunk's layers (named by class, numbered)
BN_EPS = 1e-3


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _sepconv(cin: int, cout: int) -> list[nn.Module]:
    """Keras' ``SeparableConv2D`` (3x3 'same', no bias) and its batch norm: depthwise, pointwise, BN."""
    return [
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        _bn(cout),
    ]


class Block(nn.Module):
    """One Xception block: ``reps`` (ReLU, separable conv, BN), then for a strided block a 3x3 stride-2 max
    pool, plus the input through a 1x1 strided conv and BN where the shape changes. The entry block does
    not start with a ReLU; the exit block (728 -> 1024) widens at its last convolution, the others at their
    first."""

    def __init__(self, cin: int, cout: int, reps: int, first_relu: bool = True, grow_last: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(reps):
            a = cin if i == 0 else (cin if grow_last else cout)
            b = cout if (i == reps - 1 or not grow_last) else cin
            # not in place: the first ReLU's input is also the skip's
            layers += [nn.ReLU(inplace=i > 0)] if (i > 0 or first_relu) else []
            layers += _sepconv(a, b)
        self.strided = cin != cout
        if self.strided:
            layers.append(create_pool2d("max", 3, stride=2, padding="same"))
        self.rep = nn.Sequential(*layers)
        # registered after rep, as Keras lists them: the conversion follows this order
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False) if self.strided else None
        self.skip_bn = _bn(cout) if self.strided else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip_bn(self.skip(x)) if self.strided else x
        return self.rep(x) + skip


class XceptionFeatures(nn.Module):
    """Keras' Xception trunk, then the spatial mean of its last activation: (n, 3, s, s) -> (n, 2048),
    for s >= 71. Takes RGB scaled to [-1, 1]."""

    feature_dim = 2048

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, bias=False),
            _bn(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False),
            _bn(64),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            Block(64, 128, 2, first_relu=False),
            Block(128, 256, 2),
            Block(256, 728, 2),
            *(Block(728, 728, 3) for _ in range(8)),
            Block(728, 1024, 2, grow_last=True),
        )
        self.exit = nn.Sequential(
            *_sepconv(1024, 1536), nn.ReLU(inplace=True), *_sepconv(1536, 2048), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit(self.blocks(self.stem(x))).mean((2, 3))


def build() -> XceptionFeatures:
    """The architecture, randomly initialised."""
    return XceptionFeatures()


def _numbered(group, prefix: str) -> list:
    """The layers of one class: Keras 3 saves them as ``prefix``, ``prefix_1``, ... in the model's order."""
    names = [
        k for k in group if k == prefix or (k.startswith(prefix + "_") and k[len(prefix) + 1 :].isdigit())
    ]
    return [group[k] for k in sorted(names, key=lambda k: int(k[len(prefix) + 1 :] or 0))]


def _check_config(src: Path, config: dict) -> None:
    """The trunk is Keras' Xception: the layers this module writes out, with Keras' epsilon and pools."""
    inner = [layer for layer in config["config"]["layers"] if layer["config"].get("name") == INNER]
    if not inner:
        raise AssetError(f"{src}: no layer named {INNER!r} in the model's config")
    layers = inner[0]["config"]["layers"]
    count = {
        c: sum(la["class_name"] == c for la in layers)
        for c in ("Conv2D", "SeparableConv2D", "BatchNormalization")
    }
    eps = {la["config"]["epsilon"] for la in layers if la["class_name"] == "BatchNormalization"}
    pools = {
        (la["config"]["padding"], tuple(la["config"]["pool_size"]), tuple(la["config"]["strides"]))
        for la in layers
        if la["class_name"] == "MaxPooling2D"
    }
    if count != {"Conv2D": 6, "SeparableConv2D": 34, "BatchNormalization": 40} or eps != {BN_EPS}:
        raise AssetError(
            f"{src}: {INNER!r} is not Keras' Xception (layers {count}, batch-norm epsilon {eps})"
        )
    if pools != {("same", (3, 3), (2, 2))}:
        raise AssetError(f"{src}: {INNER!r} has max pools {pools}; expected 3x3 stride 2 'same'")


def convert(dest: Path) -> None:
    """The classifier's Xception trunk (Keras 3 zip: config.json, model.weights.h5) -> an
    ``XceptionFeatures`` state dict."""
    # h5py: imported where used, since only converting this port's Keras weights needs it
    import h5py

    src = dest / KERAS_FILE
    try:
        with zipfile.ZipFile(src) as zf:
            config = json.loads(zf.read("config.json"))
            weights = io.BytesIO(zf.read("model.weights.h5"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise AssetError(
            f"{src} is not a Keras 3 model archive (config.json, model.weights.h5): {exc}"
        ) from None
    _check_config(src, config)
    model = build()
    state: dict[str, torch.Tensor] = {}
    with h5py.File(weights, "r") as h5:
        if H5_LAYERS not in h5:
            raise AssetError(f"{src}: model.weights.h5 has no {H5_LAYERS!r}")
        group = h5[H5_LAYERS]
        # each class's layers in Keras order; this module registers its layers in the same order
        queues = {
            "conv": _numbered(group, "conv2d"),
            "sep": _numbered(group, "separable_conv2d"),
            "bn": _numbered(group, "batch_normalization"),
        }
        modules = list(model.named_modules())
        for i, (name, module) in enumerate(modules):
            if isinstance(module, nn.BatchNorm2d):
                # Keras' order: gamma, beta, moving mean, moving variance
                layer = queues["bn"].pop(0)["vars"]
                for j, key in enumerate(("weight", "bias", "running_mean", "running_var")):
                    state[f"{name}.{key}"] = torch.from_numpy(layer[str(j)][()])
                state[f"{name}.num_batches_tracked"] = torch.tensor(0)
            elif isinstance(module, nn.Conv2d) and module.groups > 1:  # depthwise, then its pointwise
                layer = queues["sep"].pop(0)["vars"]
                pointwise = modules[i + 1][0]
                # Keras: depthwise (kh, kw, in, 1), pointwise (1, 1, in, out); torch: (out, in/groups, kh, kw)
                state[f"{name}.weight"] = torch.from_numpy(np.transpose(layer["0"][()], (2, 3, 0, 1)))
                state[f"{pointwise}.weight"] = torch.from_numpy(np.transpose(layer["1"][()], (3, 2, 0, 1)))
            elif isinstance(module, nn.Conv2d) and f"{name}.weight" not in state:
                state[f"{name}.weight"] = torch.from_numpy(
                    np.transpose(queues["conv"].pop(0)["vars"]["0"][()], (3, 2, 0, 1))
                )
    left = {k: len(v) for k, v in queues.items() if v}
    expected = model.state_dict()
    wrong = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if left or wrong or len(state) != len(expected):
        raise AssetError(
            f"{src}: the trunk's weights do not fit Keras' Xception (unused: {left}; missing or misshapen: "
            f"{wrong[:5]})"
        )
    state = {k: v.contiguous() for k, v in state.items()}
    with atomic_path(dest / BACKBONE_CFGS["keras_xception"].weights_file) as tmp:
        torch.save(state, tmp)
