"""Mixture of experts over frozen backbones: p(y|x) = sum_k g_k(x) p_k(y|x).

One expert head per backbone (optionally plus one label-space expert per backbone) and a gate are
trained end to end by the negative log-likelihood of the mixed probabilities, with an optional
auxiliary cross-entropy per expert and an optional gate regulariser. At inference the gate can be
made top-k sparse: only the backbones of the chosen experts need to run, which is where compute is
saved, provided the gate itself does not read backbone features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion_lib.data.device import resolve_device
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.data.spec import DEFAULT_THUMBNAIL_SIZE
from fusion_lib.fusion.experts import (
    EXPERT_KINDS,
    Standardize,
    inputs_transformed,
    make_expert,
    shared_standardize,
)
from fusion_lib.fusion.gates import (
    GATES,
    FeatureGate,
    Gate,
    ThumbnailGate,
    gate_log_weights,
    make_gate,
    resize_thumbnails,
)
from fusion_lib.fusion.label_space import LabelSpaceHead
from fusion_lib.fusion.training import (
    Batch,
    InputMemo,
    TrainConfig,
    TrainHistory,
    fit_module,
    predict_in_batches,
    to_tensors,
)

REGULARIZERS = (None, "entropy", "load_balance")


@dataclass
class MoEConfig:
    """What mixture to build.

    ``gate``: one of ``GATES``; ``expert``: ``"linear"`` or ``"mlp"``; ``temperature``: gate softmax
    temperature (training and inference); ``aux_weight``: weight of the mean per-expert cross-entropy;
    ``regularizer``: ``None``, ``"entropy"`` (adds ``reg_weight`` x the mean per-image gate entropy:
    a positive weight sharpens routing, which suits top-k; a negative one keeps the gate soft, which
    counters a gate that grows overconfident once the experts fit the train split) or
    ``"load_balance"`` (KL of the mean gate from uniform, keeps every expert in use);
    ``label_experts``: add one label-space expert per backbone (needs class vectors);
    ``thumbnail_size``: resize the FeatureSet's thumbnails to this size (``None`` keeps them).
    """

    gate: str = "thumbnail"
    expert: str = "linear"
    expert_hidden: int = 256
    temperature: float = 1.0
    aux_weight: float = 0.1
    regularizer: str | None = None
    reg_weight: float = 0.01
    label_experts: bool = False
    thumbnail_size: int | None = None
    gate_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"unknown gate {self.gate!r}; valid gates: {list(GATES)}")
        if self.expert not in EXPERT_KINDS:
            raise ValueError(f"unknown expert kind {self.expert!r}; valid kinds: {list(EXPERT_KINDS)}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.regularizer!r}; valid: {list(REGULARIZERS)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class MixtureOfExperts(nn.Module):
    """Experts (each reading one backbone's features) mixed by a gate's per-image weights."""

    def __init__(
        self, experts: Sequence[nn.Module], expert_inputs: Sequence[int], gate: Gate, temperature: float = 1.0
    ) -> None:
        super().__init__()
        if len(experts) != len(expert_inputs) or len(experts) != gate.n_experts:
            raise ValueError(
                f"got {len(experts)} experts, {len(expert_inputs)} expert inputs and a gate "
                f"for {gate.n_experts} experts; all three must match"
            )
        self.experts = nn.ModuleList(experts)
        self.expert_inputs = list(expert_inputs)
        self.gate = gate
        self.temperature = temperature

    def transform_inputs(
        self, features: Sequence[Tensor], thumbnails: Tensor | None
    ) -> tuple[list[Tensor], Tensor | None]:
        """The inputs with every fixed transform applied once, for training inside
        ``inputs_transformed(self)``: each backbone's features standardised by the experts (and feature
        gate) that read them, the thumbnails centred for a thumbnail gate."""
        readers: list[list[Standardize]] = [[] for _ in features]
        for expert, i in zip(self.experts, self.expert_inputs):
            readers[i].append(expert.norm)
        if isinstance(self.gate, FeatureGate):
            for i, norm in enumerate(self.gate.norms):
                readers[i].append(norm)
        feats = [
            shared_standardize(r, f, f"backbone {i}'s features")
            for i, (r, f) in enumerate(zip(readers, features))
        ]
        if thumbnails is not None and isinstance(self.gate, ThumbnailGate):
            thumbnails = self.gate.centre.transform(thumbnails)
        return feats, thumbnails

    def forward(
        self, features: Sequence[Tensor], thumbnails: Tensor | None, top_k: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (log mixed probabilities (n, C), log gate weights (n, K), expert log-probabilities (n, K, C))."""
        log_w = gate_log_weights(self.gate(features, thumbnails), self.temperature, top_k)
        expert_logp = torch.stack(
            [F.log_softmax(e(features[i]), dim=1) for e, i in zip(self.experts, self.expert_inputs)], dim=1
        )
        return torch.logsumexp(log_w.unsqueeze(2) + expert_logp, dim=1), log_w, expert_logp


class MoE:
    """Estimator wrapper: ``fit(fs, seed)`` then per-split probabilities, gate weights and compute."""

    def __init__(
        self,
        config: MoEConfig | None = None,
        train: TrainConfig | None = None,
        class_vecs: np.ndarray | None = None,
    ) -> None:
        self.config = config or MoEConfig()
        self.train = train or TrainConfig()
        if self.config.label_experts and class_vecs is None:
            raise ValueError(
                "label_experts=True needs class_vecs (see fusion_lib.fusion.label_space.class_vectors)"
            )
        self.class_vecs = class_vecs
        self.device = resolve_device(self.train.device)

    # -- data -------------------------------------------------------------------------------
    def _thumbnails(self, fs: FeatureSet, split: str) -> np.ndarray | None:
        if not self.model_.gate.needs_thumbnails:
            return None
        if split not in fs.thumbnails:
            raise ValueError(
                f"the thumbnail gate needs thumbnails, but the FeatureSet has none for split {split!r}"
            )
        return fs.thumbnails[split]

    def _inputs(self, fs: FeatureSet, split: str, with_labels: bool) -> Batch:
        missing = sorted(set(self.backbones_) - set(fs.backbones))
        if missing:
            raise ValueError(
                f"this MoE was fit on backbones {self.backbones_}; the FeatureSet lacks {missing}"
            )
        arrays = [fs.features[split][b] for b in self.backbones_]
        thumbs = self._thumbnails(fs, split)
        if thumbs is not None:
            arrays.append(thumbs)
        if with_labels:
            arrays.append(fs.labels[split])
        tensors = to_tensors(arrays, self.device)
        if thumbs is not None and self._resize_to is not None:
            b = len(self.backbones_)
            tensors = tensors[:b] + (resize_thumbnails(tensors[b], self._resize_to),) + tensors[b + 1 :]
        return tensors

    def _split_batch(self, batch: Batch) -> tuple[list[Tensor], Tensor | None]:
        b = len(self.backbones_)
        return list(batch[:b]), (batch[b] if self.model_.gate.needs_thumbnails else None)

    # -- training ---------------------------------------------------------------------------
    def _build(self, fs: FeatureSet) -> MixtureOfExperts:
        cfg = self.config
        train_feats = [fs.features["train"][b] for b in self.backbones_]
        experts: list[nn.Module] = [
            make_expert(f, fs.n_classes, cfg.expert, cfg.expert_hidden) for f in train_feats
        ]
        inputs = list(range(len(train_feats)))
        self.expert_names = list(self.backbones_)
        if cfg.label_experts:
            experts += [LabelSpaceHead(f, self.class_vecs) for f in train_feats]
            inputs += list(range(len(train_feats)))
            self.expert_names += [f"label:{b}" for b in self.backbones_]
        stored = fs.thumbnail_size if fs.thumbnails else DEFAULT_THUMBNAIL_SIZE
        size = cfg.thumbnail_size or stored
        self._resize_to = size if size != stored else None
        gate = make_gate(cfg.gate, len(experts), train_feats, thumbnail_size=size, **cfg.gate_kwargs)
        return MixtureOfExperts(experts, inputs, gate, cfg.temperature).to(self.device)

    def _loss(self, model: nn.Module, batch: Batch) -> Tensor:
        feats, thumbs = self._split_batch(batch)
        labels = batch[-1]
        log_mix, log_w, expert_logp = model(feats, thumbs)
        loss = F.nll_loss(log_mix, labels)
        cfg = self.config
        if cfg.aux_weight:
            per_expert = -expert_logp.gather(2, labels[:, None, None].expand(-1, expert_logp.shape[1], 1))
            loss = loss + cfg.aux_weight * per_expert.mean()
        if cfg.regularizer == "entropy":
            loss = loss + cfg.reg_weight * -(log_w.exp() * log_w).sum(1).mean()
        elif cfg.regularizer == "load_balance":
            mean_w = log_w.exp().mean(0)
            loss = loss + cfg.reg_weight * (mean_w * torch.log(mean_w * len(mean_w) + 1e-12)).sum()
        return loss

    def _val_nll(self, model: nn.Module, batch: Batch) -> float:
        feats, thumbs = self._split_batch(batch)
        return float(F.nll_loss(model(feats, thumbs)[0], batch[-1]))

    def fit(self, fs: FeatureSet, seed: int = 0) -> "MoE":
        """Train experts and gate jointly on the train split, early-stopping on validation NLL."""
        self.backbones_ = list(fs.backbones)
        self._memo = InputMemo()
        torch.manual_seed(seed)
        self.model_ = self._build(fs)
        train = self._transformed(self._inputs(fs, "train", with_labels=True))
        val = self._inputs(fs, "val", with_labels=True) if len(fs.labels.get("val", ())) else None
        with inputs_transformed(self.model_):
            self.history_: TrainHistory = fit_module(
                self.model_,
                self._loss,
                train,
                None if val is None else self._transformed(val),
                self.train,
                seed,
                val_fn=self._val_nll,
            )
        return self

    def _transformed(self, batch: Batch) -> Batch:
        feats, thumbs = self.model_.transform_inputs(*self._split_batch(batch))
        return (*feats, *([] if thumbs is None else [thumbs]), batch[-1])

    # -- inference --------------------------------------------------------------------------
    def _forward(self, fs: FeatureSet, split: str, top_k: int | None) -> tuple[Tensor, Tensor, Tensor]:
        """The model's outputs on ``split``, computed once per split and top-k of ``fs``."""
        self._check_fitted()

        def compute() -> tuple[Tensor, Tensor, Tensor]:
            inputs = self._inputs(fs, split, with_labels=False)
            return predict_in_batches(lambda b: self.model_(*self._split_batch(b), top_k=top_k), inputs)

        return self.__dict__.setdefault("_memo", InputMemo()).get((split, top_k), (fs,), compute)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("this MoE is not fitted yet; call fit(feature_set, seed) first")

    def predict_proba(self, fs: FeatureSet, split: str, top_k: int | None = None) -> np.ndarray:
        """Mixed class probabilities (n, C); with ``top_k`` only the k highest-weighted experts are mixed."""
        return self._forward(fs, split, top_k)[0].exp().cpu().numpy()

    def predict(self, fs: FeatureSet, split: str, top_k: int | None = None) -> np.ndarray:
        """Predicted class per image."""
        return self.predict_proba(fs, split, top_k).argmax(1)

    def gate_weights(self, fs: FeatureSet, split: str, top_k: int | None = None) -> np.ndarray:
        """Per-image gate weights (n, K) over ``expert_names``."""
        return self._forward(fs, split, top_k)[1].exp().cpu().numpy()

    def expert_proba(self, fs: FeatureSet, split: str) -> np.ndarray:
        """Per-expert class probabilities (n, K, C) in the order of ``expert_names``."""
        return self._forward(fs, split, None)[2].exp().cpu().numpy()

    # -- cost -------------------------------------------------------------------------------
    @property
    def gate_params(self) -> int:
        """Trainable parameters of the gate."""
        self._check_fitted()
        return self.model_.gate.n_params()

    @property
    def gate_flops(self) -> int:
        """Multiply-adds per image of the gate (same convention as backbone GFLOPs)."""
        self._check_fitted()
        return self.model_.gate.flops()

    def expected_gflops(self, fs: FeatureSet, split: str, top_k: int | None = None) -> float:
        """Mean backbone GFLOPs per image that must run, plus the gate's cost.

        Under top-k only the backbones of the chosen experts run; a gate that reads backbone
        features (the feature gate) needs every backbone, so it saves nothing.
        """
        self._check_fitted()
        missing = [b for b in self.backbones_ if b not in fs.backbone_gflops]
        if missing:
            raise ValueError(f"FeatureSet.backbone_gflops has no cost for {missing}")
        cost = np.array([fs.backbone_gflops[b] for b in self.backbones_])
        gate_gflops = self.gate_flops / 1e9
        if top_k is None or self.model_.gate.needs_features:
            return float(cost.sum() + gate_gflops)
        # the experts kept are those whose top-k log weight is finite (the others are masked to -inf)
        chosen = torch.isfinite(self._forward(fs, split, top_k)[1]).cpu().numpy()
        runs = np.zeros((len(chosen), len(self.backbones_)), dtype=bool)
        for k, i in enumerate(self.model_.expert_inputs):
            runs[:, i] |= chosen[:, k]
        return float((runs @ cost).mean() + gate_gflops)
