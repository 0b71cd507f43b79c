"""Two-stage mixtures: experts trained on their own, then a gate trained on their out-of-fold outputs.

Trained jointly with its experts, a gate learns which expert has *memorised* a train image, not which
one is right on unseen images, and collapses onto one expert. Here the experts are the single-backbone
probes, temperature-scaled on validation (so no expert wins the gate by over-confidence). The gate is
fit on the experts' out-of-fold probabilities on the train split, by the mixture likelihood
``-log sum_k g_k(x) p_k(y | x)``, early-stopped on validation. Its weights are then shrunk towards
uniform over the experts that run, ``g = (1 - alpha) / K + alpha * gate``, with ``alpha`` chosen on
validation. The anchor ``alpha = 0`` falls back to is an ``Anchor``: a non-adaptive fusion given by its
probabilities (the caller picks the strongest non-adaptive fusion on validation likelihood, e.g.
plain or calibrated averaging, one static weight per expert, or stacking); without one it is calibrated
averaging, uniform weights over the calibrated experts. Several thumbnail sizes may be tried; the one with the best validation likelihood
is kept. Nothing is chosen on test data.

Gate inputs (``TwoStageConfig.gate``): ``static`` (one weight per expert), ``thumbnail`` (the paper's
mini-CNN), ``feature`` (an MLP on the backbone features), ``confidence`` (each expert's max probability
and entropy: the output-fuser idea of FoE) and ``thumbnail+confidence``. ``noisy_top_k=k`` trains the
gate sparse with noisy top-k gating and the importance and load losses of Shazeer et al. (2017).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from fusion_lib.data.device import resolve_device
from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.data.spec import DEFAULT_THUMBNAIL_SIZE
from fusion_lib.fusion.experts import inputs_transformed, shared_standardize
from fusion_lib.fusion.gates import (
    FeatureGate,
    StaticGate,
    ThumbnailGate,
    count_macs,
    resize_thumbnails,
    top_k_mask,
)
from fusion_lib.fusion.training import (
    BLEND_GRID,
    InputMemo,
    TrainConfig,
    fit_module,
    predict_in_batches,
    to_tensors,
)

GATE_INPUTS = ("static", "thumbnail", "feature", "confidence", "thumbnail+confidence")
_EPS = 1e-12


@dataclass(frozen=True)
class TwoStageConfig:
    """A two-stage mixture recipe.

    ``thumbnail_sizes``: sizes tried for a thumbnail gate (the best on validation is kept);
    ``calibrate``: temperature-scale every expert on validation first; ``shrink``: choose ``alpha``
    among ``alphas`` on validation (else ``alpha = 1``, the raw gate); ``noisy_top_k``: train sparse
    with noisy top-k gating (and run top-k at inference); ``balance_weight``: weight of each of the
    importance and load losses of noisy gating; ``confidence_hidden``: width of the confidence MLP;
    ``feature_backbones``: the backbones whose features a ``feature`` gate reads (None: every expert's;
    e.g. only the cheapest, which runs anyway, so that the gate adds no backbone to the bill);
    ``gate_channels``: the widths of a thumbnail gate's two convolutions (``ThumbnailGate.channels``).
    """

    gate: str = "thumbnail"
    thumbnail_sizes: tuple[int, ...] = (DEFAULT_THUMBNAIL_SIZE,)
    calibrate: bool = True
    shrink: bool = True
    alphas: tuple[float, ...] = BLEND_GRID
    noisy_top_k: int | None = None
    balance_weight: float = 0.1
    confidence_hidden: int = 32
    feature_backbones: tuple[str, ...] | None = None
    gate_channels: tuple[int, int] = (16, 32)

    def __post_init__(self) -> None:
        if self.gate not in GATE_INPUTS:
            raise ValueError(f"unknown two-stage gate {self.gate!r}; valid gates: {list(GATE_INPUTS)}")
        if not self.thumbnail_sizes:
            raise ValueError("thumbnail_sizes must list at least one size")
        for size in self.thumbnail_sizes:
            ThumbnailGate.check_size(size)
        if not self.alphas or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise ValueError(f"alphas must lie in [0, 1], got {self.alphas}")
        if self.noisy_top_k is not None and self.noisy_top_k < 1:
            raise ValueError(f"noisy_top_k must be >= 1 or None, got {self.noisy_top_k}")
        if self.feature_backbones is not None and (self.gate != "feature" or not self.feature_backbones):
            raise ValueError(
                f"feature_backbones (got {self.feature_backbones}) is a non-empty choice for gate='feature' only"
            )


@dataclass(frozen=True)
class Anchor:
    """A non-adaptive fusion a gate is shrunk towards: its class probabilities ``(n, C)`` on the
    validation and test splits, and the fixed weight it gives each expert ``(K,)`` (uniform for an
    average; the learned weights for a static gate), used for top-k inference and reported weights."""

    name: str
    probs: Mapping[str, np.ndarray]
    weights: np.ndarray

    def __post_init__(self) -> None:
        missing = [s for s in ("val", "test") if s not in self.probs]
        if missing:
            raise ValueError(f"anchor {self.name!r} lacks probabilities for split(s) {missing}")
        if self.weights.ndim != 1 or not np.isclose(self.weights.sum(), 1.0) or (self.weights < 0).any():
            raise ValueError(
                f"anchor {self.name!r}: weights must be a probability vector, got {self.weights}"
            )


# ---------------------------------------------------------------- experts: calibrated log-probabilities
def fit_temperature(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of ``softmax(log_probs / T)`` (temperature scaling)."""
    logp = torch.as_tensor(log_probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logp / np.exp(log_t), y))

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


@dataclass
class ExpertOutputs:
    """Per-split expert log-probabilities ``(n, K, C)``; the train split holds out-of-fold outputs."""

    names: list[str]
    log_probs: dict[str, np.ndarray]
    temperatures: np.ndarray = field(default_factory=lambda: np.ones(0))

    def probs(self, split: str) -> np.ndarray:
        return np.exp(self.log_probs[split])


def expert_outputs(
    fs: FeatureSet,
    probes: Mapping[str, Mapping[str, np.ndarray]],
    oof_train: Mapping[str, np.ndarray],
    calibrate: bool = True,
) -> ExpertOutputs:
    """Stack the probes' val/test probabilities and out-of-fold train probabilities, temperature-scaled
    on validation when ``calibrate``."""
    names = list(probes)
    missing = sorted(set(names) - set(oof_train))
    if missing:
        raise ValueError(f"out-of-fold train probabilities missing for {missing}")
    raw = {
        "train": {b: oof_train[b] for b in names},
        **{s: {b: probes[b][s] for b in names} for s in ("val", "test")},
    }
    temps = np.array(
        [fit_temperature(np.log(raw["val"][b] + _EPS), fs.labels["val"]) if calibrate else 1.0 for b in names]
    )
    out = {}
    for s in SPLITS:
        logp = np.stack([np.log(raw[s][b] + _EPS) / t for b, t in zip(names, temps)], axis=1)
        out[s] = (logp - np.logaddexp.reduce(logp, axis=2, keepdims=True)).astype(np.float32)
    return ExpertOutputs(names, out, temps)


def confidence_inputs(log_probs: np.ndarray) -> np.ndarray:
    """Per expert: max probability and normalised entropy, ``(n, 2K)``."""
    p = np.exp(log_probs)
    entropy = -(p * log_probs).sum(axis=2) / np.log(p.shape[2])
    return np.concatenate([p.max(axis=2), entropy], axis=1).astype(np.float32)


# ---------------------------------------------------------------- the gate network
class _ConfidenceNet(nn.Module):
    def __init__(self, n_experts: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * n_experts, hidden), nn.ReLU(), nn.Linear(hidden, n_experts))

    def forward(self, conf: Tensor) -> Tensor:
        return self.net(conf)


class _GateNet(nn.Module):
    """Sum of the logits of the chosen input branches."""

    def __init__(
        self,
        kind: str,
        n_experts: int,
        train_features: list[np.ndarray],
        thumbnail_size: int,
        confidence_hidden: int,
        gate_channels: Sequence[int],
    ) -> None:
        super().__init__()
        parts = kind.split("+")
        self.thumb = ThumbnailGate(n_experts, thumbnail_size, gate_channels) if "thumbnail" in parts else None
        self.feat = FeatureGate(train_features, n_experts) if "feature" in parts else None
        self.conf = _ConfidenceNet(n_experts, confidence_hidden) if "confidence" in parts else None
        self.static = StaticGate(n_experts) if kind == "static" else None
        self.thumbnail_size = thumbnail_size

    def forward(self, thumbs: Tensor, conf: Tensor, feats: list[Tensor]) -> Tensor:
        logits = 0
        if self.thumb is not None:
            logits = logits + self.thumb([], thumbs)
        if self.feat is not None:
            logits = logits + self.feat(feats, None)
        if self.conf is not None:
            logits = logits + self.conf(conf)
        if self.static is not None:
            logits = logits + self.static(feats, thumbs)
        return logits

    def flops(self) -> int:
        total = 0
        if self.thumb is not None:
            total += count_macs(self.thumb, torch.zeros(1, 3, self.thumbnail_size, self.thumbnail_size))
        if self.feat is not None:
            total += self.feat.flops()
        if self.conf is not None:
            total += sum(
                m.in_features * m.out_features for m in self.conf.modules() if isinstance(m, nn.Linear)
            )
        return total


class _Noisy(nn.Module):
    """Noisy top-k gating: a clean gate and a noise-scale gate of the same kind (Shazeer et al., 2017)."""

    def __init__(self, clean: _GateNet, noise: _GateNet) -> None:
        super().__init__()
        self.clean, self.noise = clean, noise

    def forward(self, thumbs: Tensor, conf: Tensor, feats: list[Tensor]) -> tuple[Tensor, Tensor]:
        return self.clean(thumbs, conf, feats), F.softplus(self.noise(thumbs, conf, feats)) + 1e-2


def _cv_squared(x: Tensor) -> Tensor:
    return x.var() / (x.mean() ** 2 + 1e-10) if len(x) > 1 else x.new_zeros(())


def _load(clean: Tensor, noisy: Tensor, std: Tensor, k: int) -> Tensor:
    """Smooth estimate of how many images each expert receives (Shazeer et al., appendix A)."""
    top = noisy.topk(min(k + 1, noisy.shape[1]), dim=1).values
    in_top = noisy >= top[:, k - 1 : k]
    threshold = torch.where(in_top, top[:, -1:], top[:, k - 1 : k])
    return torch.distributions.Normal(0.0, 1.0).cdf((clean - threshold) / std).sum(0)


# ---------------------------------------------------------------- the estimator
class TwoStageMoE:
    """``fit(fs, experts, seed)``, then mixed probabilities, gate weights and compute per split."""

    def __init__(self, config: TwoStageConfig | None = None, train: TrainConfig | None = None) -> None:
        self.config = config or TwoStageConfig()
        self.train = train or TrainConfig()
        self.device = resolve_device(self.train.device)

    # -- inputs ---------------------------------------------------------------------------------
    def _inputs(self, fs: FeatureSet, experts: ExpertOutputs, split: str, size: int) -> tuple[Tensor, ...]:
        thumbs = (
            torch.as_tensor(fs.thumbnails[split])
            if "thumbnail" in self.config.gate
            else torch.zeros(len(fs.labels[split]), 0)
        )
        if "thumbnail" in self.config.gate:
            thumbs = resize_thumbnails(thumbs, size)
        conf = confidence_inputs(experts.log_probs[split])
        feats = [fs.features[split][b] for b in self.feature_backbones(experts)]
        y = fs.labels[split]
        target = experts.log_probs[split][np.arange(len(y)), :, y]  # log p_k(y | x): (n, K)
        return (thumbs.to(self.device), *to_tensors([conf, target, *feats], self.device))

    @staticmethod
    def _unpack(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        return batch[0], batch[1], batch[2], list(batch[3:])

    # -- training -------------------------------------------------------------------------------
    def _loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        thumbs, conf, target, feats = self._unpack(batch)
        k = self.config.noisy_top_k
        if k is None:
            log_w = torch.log_softmax(model(thumbs, conf, feats), dim=1)
            return -torch.logsumexp(log_w + target, dim=1).mean()
        clean, std = model(thumbs, conf, feats)
        noisy = clean + torch.randn_like(clean) * std if model.training else clean
        log_w = torch.log_softmax(noisy.masked_fill(~top_k_mask(noisy, k), float("-inf")), dim=1)
        loss = -torch.logsumexp(log_w + target, dim=1).mean()
        if model.training and self.config.balance_weight:
            importance = log_w.exp().sum(0)
            load = _load(clean, noisy, std, k)
            loss = loss + self.config.balance_weight * (_cv_squared(importance) + _cv_squared(load))
        return loss

    def feature_backbones(self, experts: ExpertOutputs) -> list[str]:
        """The backbones whose features the gate reads (none unless it is a feature gate)."""
        if self.config.gate != "feature":
            return []
        chosen = list(self.config.feature_backbones or experts.names)
        unknown = sorted(set(chosen) - set(experts.names))
        if unknown:
            raise ValueError(f"feature_backbones {unknown} are not experts; experts: {experts.names}")
        return chosen

    def _transformed(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """``batch`` with the gate's fixed transforms applied once, for training inside
        ``inputs_transformed(self.model_)`` (a noisy gate's two nets read the same inputs alike)."""
        thumbs, conf, target, feats = self._unpack(batch)
        nets = [self.model_.clean, self.model_.noise] if isinstance(self.model_, _Noisy) else [self.model_]
        if nets[0].thumb is not None:
            thumbs = nets[0].thumb.centre.transform(thumbs)
        if nets[0].feat is not None:
            feats = [
                shared_standardize([net.feat.norms[i] for net in nets], f, f"the gate's feature input {i}")
                for i, f in enumerate(feats)
            ]
        return (thumbs, conf, target, *feats)

    def _build(self, fs: FeatureSet, experts: ExpertOutputs, size: int) -> nn.Module:
        cfg, n = self.config, len(experts.names)
        feats = [fs.features["train"][b] for b in self.feature_backbones(experts)]

        def net() -> _GateNet:
            return _GateNet(cfg.gate, n, feats, size, cfg.confidence_hidden, cfg.gate_channels)

        return (net() if cfg.noisy_top_k is None else _Noisy(net(), net())).to(self.device)

    def fit(
        self, fs: FeatureSet, experts: ExpertOutputs, seed: int = 0, anchor: Anchor | None = None
    ) -> "TwoStageMoE":
        """Fit the gate on out-of-fold train outputs for each thumbnail size; keep the best on validation.
        ``anchor``: the fusion ``alpha = 0`` stands for (default: calibrated averaging)."""
        k = self.config.noisy_top_k
        if k is not None and k > len(experts.names):
            raise ValueError(f"noisy_top_k={k} exceeds the number of experts ({len(experts.names)})")
        n = len(experts.names)
        if anchor is not None and anchor.weights.shape != (n,):
            raise ValueError(f"anchor {anchor.name!r} weighs {anchor.weights.shape[0]} experts, not {n}")
        self.anchor_ = anchor or Anchor(
            "prob_avg_cal", {s: experts.probs(s).mean(1) for s in ("val", "test")}, np.full(n, 1.0 / n)
        )
        sizes = self.sizes
        if len(sizes) > 1:
            return self.adopt_best([self.for_size(s).fit(fs, experts, seed, anchor) for s in sizes])
        torch.manual_seed(seed)
        self._memo = InputMemo()
        self.model_, self.size_ = self._build(fs, experts, sizes[0]), sizes[0]
        train = self._transformed(self._inputs(fs, experts, "train", self.size_))
        val = self._transformed(self._inputs(fs, experts, "val", self.size_))
        with inputs_transformed(self.model_):
            fit_module(self.model_, self._loss, train, val, self.train, seed)
        self.alpha_, self.val_nll_ = self._choose_alpha(fs, experts)
        self.names_ = list(experts.names)
        return self

    @property
    def sizes(self) -> tuple[int, ...]:
        """The thumbnail sizes this recipe fits a gate for (one size for gates without a thumbnail)."""
        cfg = self.config
        return cfg.thumbnail_sizes if "thumbnail" in cfg.gate else cfg.thumbnail_sizes[:1]

    def for_size(self, size: int) -> "TwoStageMoE":
        """An unfitted copy of this recipe for one thumbnail size (each size is fit on its own, so a
        single-size recipe's fit can be shared; see ``fusion_lib.studies.seed_run.SeedRun``)."""
        return TwoStageMoE(replace(self.config, thumbnail_sizes=(size,)), self.train)

    def adopt_best(self, fits: Sequence["TwoStageMoE"]) -> "TwoStageMoE":
        """Become the fitted single-size mixture with the lowest validation NLL (the first on ties)."""
        best = min(fits, key=lambda m: m.val_nll_)
        self.model_, self.size_, self.alpha_, self.val_nll_, self.anchor_ = (
            best.model_,
            best.size_,
            best.alpha_,
            best.val_nll_,
            best.anchor_,
        )
        self.names_ = list(best.names_)
        return self

    def _choose_alpha(self, fs: FeatureSet, experts: ExpertOutputs) -> tuple[float, float]:
        alphas = self.config.alphas if self.config.shrink else (1.0,)
        y = fs.labels["val"]
        scores = []
        for a in alphas:
            p = self._mix(fs, experts, "val", self.config.noisy_top_k, a)
            scores.append(float(-np.log(p[np.arange(len(y)), y] + _EPS).mean()))
        i = int(np.argmin(scores))  # ties: the first, i.e. the smaller alpha (closer to averaging)
        return float(alphas[i]), scores[i]

    # -- inference ------------------------------------------------------------------------------
    def _logits(self, fs: FeatureSet, experts: ExpertOutputs, split: str) -> Tensor:
        """The gate's logits on ``split``, computed once per split of these inputs: choosing alpha, the
        probabilities, the weights, top-k and the compute all read them."""
        memo = self.__dict__.setdefault("_memo", InputMemo())
        return memo.get(split, (fs, experts), lambda: self._compute_logits(fs, experts, split))

    def _compute_logits(self, fs: FeatureSet, experts: ExpertOutputs, split: str) -> Tensor:
        inputs = self._inputs(fs, experts, split, self.size_)

        def fn(batch: tuple[Tensor, ...]) -> Tensor:
            thumbs, conf, _, feats = self._unpack(batch)
            out = self.model_(thumbs, conf, feats)
            return out[0] if isinstance(out, tuple) else out

        return predict_in_batches(fn, inputs)

    def _weights(
        self, fs: FeatureSet, experts: ExpertOutputs, split: str, top_k: int | None, alpha: float
    ) -> np.ndarray:
        """``alpha`` times the gate's weights plus ``1 - alpha`` times the anchor's, both over the
        experts that run (the anchor's weights renormalised over them under top-k)."""
        logits = self._logits(fs, experts, split)
        mask = top_k_mask(logits, top_k)
        w = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
        fixed = mask.float() * torch.as_tensor(self.anchor_.weights, dtype=w.dtype, device=w.device)
        fixed = fixed / fixed.sum(1, keepdim=True).clamp_min(_EPS)
        return ((1 - alpha) * fixed + alpha * w).cpu().numpy()

    def _mix(
        self, fs: FeatureSet, experts: ExpertOutputs, split: str, top_k: int | None, alpha: float
    ) -> np.ndarray:
        if top_k is None and split in self.anchor_.probs:
            # soft gating: the anchor contributes its own probabilities (e.g. uncalibrated averaging)
            gate = self._weights(fs, experts, split, None, 1.0)
            mixed = np.einsum("nk,nkc->nc", gate, experts.probs(split))
            return (1 - alpha) * self.anchor_.probs[split] + alpha * mixed
        w = self._weights(fs, experts, split, top_k, alpha)
        return np.einsum("nk,nkc->nc", w, experts.probs(split))

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(
                "this TwoStageMoE is not fitted yet; call fit(feature_set, experts, seed) first"
            )

    def default_top_k(self, top_k: int | None) -> int | None:
        """Top-k at inference: the one asked for, else the one a noisy gate was trained with."""
        return self.config.noisy_top_k if top_k is None else top_k

    def predict_proba(
        self,
        fs: FeatureSet,
        experts: ExpertOutputs,
        split: str,
        top_k: int | None = None,
        alpha: float | None = None,
    ) -> np.ndarray:
        """Mixed class probabilities ``(n, C)`` with the chosen ``alpha`` (or the one given: 0 is the
        anchor alone, 1 the raw gate)."""
        self._check_fitted()
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        return self._mix(
            fs, experts, split, self.default_top_k(top_k), self.alpha_ if alpha is None else alpha
        )

    def gate_weights(
        self, fs: FeatureSet, experts: ExpertOutputs, split: str, top_k: int | None = None
    ) -> np.ndarray:
        """Per-image mixture weights ``(n, K)`` after shrinkage."""
        self._check_fitted()
        return self._weights(fs, experts, split, self.default_top_k(top_k), self.alpha_)

    # -- cost -----------------------------------------------------------------------------------
    @property
    def gate_flops(self) -> int:
        """Multiply-adds per image of the gate at inference (the noise branch does not run)."""
        self._check_fitted()
        clean = self.model_.clean if isinstance(self.model_, _Noisy) else self.model_
        return clean.flops()

    @property
    def needs_all_backbones(self) -> bool:
        """A gate that reads every expert's features or outputs needs every backbone to run first."""
        cfg = self.config
        return cfg.gate in ("confidence", "thumbnail+confidence") or (
            cfg.gate == "feature" and cfg.feature_backbones is None
        )

    def expected_gflops(
        self, fs: FeatureSet, experts: ExpertOutputs, split: str, top_k: int | None = None
    ) -> float:
        """Mean backbone GFLOPs per image that must run, plus the gate's."""
        self._check_fitted()
        cost = np.array([fs.backbone_gflops[b] for b in self.names_])
        top_k = self.default_top_k(top_k)
        gate = self.gate_flops / 1e9
        if top_k is None or self.needs_all_backbones:
            return float(cost.sum() + gate)
        runs = top_k_mask(self._logits(fs, experts, split), top_k).cpu().numpy()
        read = [self.names_.index(b) for b in self.config.feature_backbones or ()]
        runs[:, read] = True  # the backbones the gate reads run on every image
        return float((runs @ cost).mean() + gate)
