"""Expert heads: one classifier per backbone on its cached features (linear probe or small MLP)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

EXPERT_KINDS = ("linear", "mlp")
T = TypeVar("T", np.ndarray, Tensor)


def floored_std(std: T, floor: float = 0.05) -> T:
    """Per-dimension stds (numpy array or tensor) floored at ``floor`` times their mean (see ``Standardize``)."""
    return std.clip(min=max(floor * float(std.mean()), 1e-6))


class Standardize(nn.Module):
    """Fixed per-dimension standardisation with train-split statistics.

    Backbone features live on very different scales (e.g. SqueezeNet vs EfficientNet); standardising
    them lets one learning rate suit every head. Each dimension's std is floored at ``floor`` times
    the mean std: a channel that is (almost) constant on the train split, such as a ReLU unit that
    never fires on small images, would otherwise blow up any unseen activation on val/test into a
    huge input (measured on digits: validation losses in the hundreds).
    """

    def __init__(self, train_features: np.ndarray | Tensor, floor: float = 0.05) -> None:
        super().__init__()
        x = torch.as_tensor(np.asarray(train_features), dtype=torch.float32)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"train_features must be a non-empty (n, d) array, got shape {tuple(x.shape)}")
        self.register_buffer("mean", x.mean(dim=0))
        self.register_buffer("std", floored_std(x.std(dim=0, unbiased=False), floor))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ExpertHead(nn.Module):
    """Standardise -> linear (or Linear-ReLU-Dropout-Linear) -> class logits."""

    def __init__(
        self,
        train_features: np.ndarray | Tensor,
        n_classes: int,
        kind: str = "linear",
        hidden: int = 256,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if kind not in EXPERT_KINDS:
            raise ValueError(f"unknown expert kind {kind!r}; valid kinds: {list(EXPERT_KINDS)}")
        if n_classes < 2:
            raise ValueError(f"an expert needs at least 2 classes, got {n_classes}")
        self.kind = kind
        self.norm = Standardize(train_features)
        dim = self.norm.mean.numel()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(dim, n_classes)
        else:
            self.net = nn.Sequential(
                nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
            )

    @property
    def in_features(self) -> int:
        return self.norm.mean.numel()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.norm(x))


def make_expert(
    train_features: np.ndarray, n_classes: int, kind: str = "linear", hidden: int = 256, dropout: float = 0.2
) -> ExpertHead:
    """Factory by name: ``kind`` is ``"linear"`` (a probe) or ``"mlp"`` (one hidden layer)."""
    return ExpertHead(train_features, n_classes, kind=kind, hidden=hidden, dropout=dropout)
