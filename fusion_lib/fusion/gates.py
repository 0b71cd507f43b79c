"""Gates of the mixture of experts: per-image weights over experts.

Every gate maps ``(features, thumbnails)`` to logits ``(n, n_experts)``; ``gate_weights`` turns them
into mixture weights with a softmax temperature and optional top-k sparsity. Cost is counted in
multiply-adds (MACs), the convention under which backbone GFLOPs are quoted (e.g. SqueezeNet 1.1 at
224px is 0.35 "GFLOPs"), so gate and backbone costs are directly comparable.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fusion_lib.data.checks import ParameterError
from fusion_lib.data.spec import DEFAULT_THUMBNAIL_SIZE
from fusion_lib.fusion.experts import FixedTransform, Standardize
from fusion_lib.fusion.training import count_macs as count_layer_macs

GATES = ("uniform", "static", "feature", "thumbnail")


class Gate(nn.Module):
    """Base class: subclasses set which inputs they read and implement ``forward``."""

    needs_features = False
    needs_thumbnails = False

    def __init__(self, n_experts: int) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"a gate needs at least one expert, got {n_experts}")
        self.n_experts = n_experts

    def forward(self, features: Sequence[Tensor], thumbnails: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def flops(self) -> int:
        """Multiply-adds per image of the gate's conv and linear layers."""
        return 0


def resize_thumbnails(thumbnails: Tensor, size: int) -> Tensor:
    """Thumbnails ``(n, 3, t, t)`` at the ``size`` a thumbnail gate takes (antialiased bilinear; unchanged
    when already that size): the one resize every gate, analysis and figure of the gate's view uses."""
    if thumbnails.shape[-1] == size:
        return thumbnails
    return nn.functional.interpolate(
        thumbnails, size=size, mode="bilinear", antialias=True, align_corners=False
    )


def _batch_size(features: Sequence[Tensor], thumbnails: Tensor | None) -> tuple[int, torch.device]:
    ref = thumbnails if thumbnails is not None else features[0]
    return len(ref), ref.device


class UniformGate(Gate):
    """Plain averaging: equal weight on every expert."""

    def forward(self, features: Sequence[Tensor], thumbnails: Tensor | None) -> Tensor:
        n, device = _batch_size(features, thumbnails)
        return torch.zeros(n, self.n_experts, device=device)


class StaticGate(Gate):
    """One learned weight per expert, the same for every image."""

    def __init__(self, n_experts: int) -> None:
        super().__init__(n_experts)
        self.logits = nn.Parameter(torch.zeros(n_experts))

    def forward(self, features: Sequence[Tensor], thumbnails: Tensor | None) -> Tensor:
        n, _ = _batch_size(features, thumbnails)
        return self.logits.expand(n, -1)


class FeatureGate(Gate):
    """A small MLP on the backbone features, each projected to ``proj_dim`` first.

    It reads every backbone's features, so with it every backbone must run: top-k saves no compute.
    """

    needs_features = True

    def __init__(
        self, train_features: Sequence[np.ndarray], n_experts: int, proj_dim: int = 16, hidden: int = 64
    ) -> None:
        super().__init__(n_experts)
        self.norms = nn.ModuleList(Standardize(f) for f in train_features)
        self.projections = nn.ModuleList(nn.Linear(n.mean.numel(), proj_dim) for n in self.norms)
        self.mlp = nn.Sequential(
            nn.ReLU(), nn.Linear(proj_dim * len(self.norms), hidden), nn.ReLU(), nn.Linear(hidden, n_experts)
        )

    def forward(self, features: Sequence[Tensor], thumbnails: Tensor | None) -> Tensor:
        if len(features) != len(self.projections):
            raise ValueError(
                f"FeatureGate was built for {len(self.projections)} backbones, got {len(features)}"
            )
        z = torch.cat([p(n(f)) for f, n, p in zip(features, self.norms, self.projections)], dim=1)
        return self.mlp(z)

    def flops(self) -> int:
        return sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))


class CentreThumbnails(FixedTransform):
    """Thumbnails in [0, 1] centred to ``(x - 0.5) / 0.25``: it keeps the gate's first ReLUs from starting
    half dead."""

    def transform(self, x: Tensor) -> Tensor:
        return (x - 0.5) / 0.25


class ThumbnailGate(Gate):
    """The paper's miniature CNN on a ``t x t`` RGB thumbnail.

    A 4x4 stride-4 patch convolution, a 3x3 stride-2 convolution (each with ReLU), global average
    pooling and a linear layer give one logit per expert. The two strides divide the size by 8, so
    ``t`` must be a multiple of 8 (at least 8). The patch stem rather than a 3x3 stem keeps the gate
    about three times faster to train on CPU at equal accuracy and lower cost.
    """

    needs_thumbnails = True
    STRIDE = 8  # the patch stem's 4 times the second convolution's 2

    @classmethod
    def check_size(cls, size: Any) -> int:
        """``size`` as an int if the gate can take it (a multiple of ``STRIDE``, at least ``STRIDE``);
        else a ``ParameterError`` that names the rule. Every other check of a gate's size calls this."""
        if (
            isinstance(size, bool)
            or not isinstance(size, (int, np.integer))
            or size < cls.STRIDE
            or size % cls.STRIDE
        ):
            raise ParameterError(
                f"thumbnail_size {size!r} does not fit the thumbnail gate: its strides (4, then 2) need a "
                f"multiple of {cls.STRIDE}, at least {cls.STRIDE} (e.g. 16, 32, 64)"
            )
        return int(size)

    def __init__(
        self, n_experts: int, thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE, channels: Sequence[int] = (16, 32)
    ) -> None:
        super().__init__(n_experts)
        self.check_size(thumbnail_size)
        if len(channels) != 2:
            raise ValueError(f"channels must list 2 widths (patch stem, second conv), got {list(channels)}")
        self.thumbnail_size = int(thumbnail_size)
        self.centre = CentreThumbnails()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels[0], kernel_size=4, stride=4),
            nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(channels[1], n_experts)

    def forward(self, features: Sequence[Tensor], thumbnails: Tensor | None) -> Tensor:
        if thumbnails is None:
            raise ValueError("ThumbnailGate needs thumbnails; the FeatureSet has none for this split")
        if tuple(thumbnails.shape[1:]) != (3, self.thumbnail_size, self.thumbnail_size):
            raise ValueError(
                f"ThumbnailGate expects thumbnails of shape (n, 3, {self.thumbnail_size}, {self.thumbnail_size}), "
                f"got {tuple(thumbnails.shape)}; build the gate with the FeatureSet's thumbnail size"
            )
        x = self.features(self.centre(thumbnails))
        return self.head(x.mean(dim=(2, 3)))

    def flops(self) -> int:
        return count_macs(self, torch.zeros(1, 3, self.thumbnail_size, self.thumbnail_size))


def count_macs(gate: Gate, thumbnail: Tensor | None = None, features: Sequence[Tensor] = ()) -> int:
    """Exact multiply-adds per image of every Conv2d and Linear layer of ``gate``."""
    with torch.no_grad():
        return count_layer_macs(gate, lambda: gate(list(features), thumbnail))


def make_gate(
    kind: str,
    n_experts: int,
    train_features: Sequence[np.ndarray] = (),
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
    **kwargs,
) -> Gate:
    """Factory by name: one of ``GATES``. The feature gate needs the train features of each backbone."""
    if kind == "uniform":
        return UniformGate(n_experts)
    if kind == "static":
        return StaticGate(n_experts)
    if kind == "feature":
        if not train_features:
            raise ValueError("the feature gate needs train_features (one array per backbone)")
        return FeatureGate(train_features, n_experts, **kwargs)
    if kind == "thumbnail":
        return ThumbnailGate(n_experts, thumbnail_size, **kwargs)
    raise ValueError(f"unknown gate {kind!r}; valid gates: {list(GATES)}")


def top_k_mask(logits: Tensor, top_k: int | None) -> Tensor:
    """Boolean ``(n, n_experts)`` mask of the experts that run: the ``top_k`` largest logits, or all."""
    n_experts = logits.shape[-1]
    if top_k is None:
        return torch.ones_like(logits, dtype=torch.bool)
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k must be in [1, {n_experts}] (the number of experts), got {top_k}")
    # ties resolved by torch.topk's order, so exactly k experts run per image
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(top_k, dim=-1).indices, True)


def gate_log_weights(logits: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """Log of the mixture weights: log-softmax of ``logits / temperature`` over the top-k experts."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits / temperature
    if top_k is not None:
        scaled = scaled.masked_fill(~top_k_mask(logits, top_k), float("-inf"))
    return torch.log_softmax(scaled, dim=-1)


def gate_weights(logits: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """Mixture weights: softmax of ``logits / temperature``; with ``top_k`` keep the k largest, renormalised."""
    return gate_log_weights(logits, temperature, top_k).exp()
