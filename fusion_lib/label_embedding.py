"""Label-space embedding: class names as word vectors, visual features projected into that space.

Each class name becomes the mean of its tokens' word vectors. Per backbone, a projection of the
visual features into word space is trained with a softmax over cosine similarities to the class
vectors and a learned temperature (DeViSE-style). Because classes are only points in word space,
classes never seen in training can still be predicted (zero-shot).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion_lib.experts import Standardize
from fusion_lib.device import resolve_device
from fusion_lib.feature_set import FeatureSet
from fusion_lib.training import TrainConfig, TrainHistory, fit_module, to_tensors

OFFLINE_WORD_VECTORS = "glove-6b-50d"
BLEND_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def load_vectors(name: str = OFFLINE_WORD_VECTORS) -> Any:
    """Gensim KeyedVectors: the offline GloVe 50-d asset, or any gensim-downloader model name (online)."""
    from fusion_lib.assets import load_word_vectors

    return load_word_vectors(name)


def tokenize(name: str) -> list[str]:
    """Lowercase and split on non-letters: ``"T-shirt/top"`` -> ``["t", "shirt", "top"]``."""
    return re.findall(r"[a-z]+", name.lower())


def class_words(name: str, aliases: Mapping[str, str]) -> list[str]:
    """The words whose vectors make up a class name; an alias may replace the whole name or one token."""
    tokens = tokenize(aliases.get(name, name))
    return [t for token in tokens for t in (tokenize(aliases[token]) if token in aliases else [token])]


def class_vectors(class_names: Sequence[str], vectors: Any, aliases: Mapping[str, str] | None = None) -> np.ndarray:
    """Unit-norm word vector per class ``(n_classes, dim)``: the mean of its tokens' vectors.

    ``vectors`` is gensim KeyedVectors (or any mapping word -> vector). A class whose name yields a
    word without a vector (or no word at all) is an error listing them; ``aliases`` maps a class
    name or a token to replacement text, e.g. ``{"0": "zero"}`` or ``{"tshirt": "t shirt"}``.
    """
    aliases = dict(aliases or {})
    rows, missing = [], {}
    for name in class_names:
        tokens = class_words(name, aliases)
        absent = [t for t in tokens if t not in vectors]
        if absent or not tokens:
            missing[name] = absent or ["<no letters>"]
            continue
        rows.append(np.mean([np.asarray(vectors[t], dtype=np.float64) for t in tokens], axis=0))
    if missing:
        detail = "; ".join(f"{name!r}: {words}" for name, words in missing.items())
        raise KeyError(
            f"no word vector for class names -> missing words {{{detail}}}. Pass aliases, e.g. "
            f"aliases={{{next(iter(missing))!r}: 'some known words'}}, mapping a class name or token to words "
            f"the vectors know."
        )
    mat = np.stack(rows)
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a class vector is all zeros, so cosine similarity is undefined; alias that class")
    return (mat / norms).astype(np.float32)


class LabelSpaceHead(nn.Module):
    """Standardise -> linear projection to word space -> scaled cosine similarity to every class vector."""

    def __init__(self, train_features: np.ndarray, class_vecs: np.ndarray, init_scale: float = 10.0) -> None:
        super().__init__()
        vecs = torch.as_tensor(np.asarray(class_vecs), dtype=torch.float32)
        if vecs.ndim != 2:
            raise ValueError(f"class_vecs must be (n_classes, dim), got shape {tuple(vecs.shape)}")
        self.norm = Standardize(train_features)
        self.proj = nn.Linear(self.norm.mean.numel(), vecs.shape[1])
        self.register_buffer("class_vecs", F.normalize(vecs, dim=1))
        # learned softmax temperature, kept positive through its log
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(init_scale))))

    def embed(self, x: Tensor) -> Tensor:
        """Unit-norm projection of features into word space."""
        return F.normalize(self.proj(self.norm(x)), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.log_scale.exp() * self.embed(x) @ self.class_vecs.T


def _masked_ce(logits: Tensor, labels: Tensor, allowed: Tensor | None) -> Tensor:
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return F.cross_entropy(logits, labels)


def fit_label_head(fs: FeatureSet, backbone: str, class_vecs: np.ndarray, seed: int = 0,
                   train: TrainConfig | None = None, train_classes: Sequence[int] | None = None
                   ) -> tuple[LabelSpaceHead, TrainHistory]:
    """Train one backbone's projection; with ``train_classes`` only those classes are seen and compete."""
    train = train or TrainConfig()
    if len(class_vecs) != fs.n_classes:
        raise ValueError(f"got {len(class_vecs)} class vectors for {fs.n_classes} classes")
    device = resolve_device(train.device)
    rows = {s: np.arange(len(fs.labels[s])) for s in ("train", "val")}
    allowed = None
    if train_classes is not None:
        seen = np.zeros(fs.n_classes, dtype=bool)
        seen[list(train_classes)] = True
        rows = {s: np.flatnonzero(seen[fs.labels[s]]) for s in rows}
        allowed = torch.as_tensor(seen, device=device)
        if len(rows["train"]) == 0:
            raise ValueError(f"no train examples in train_classes {list(train_classes)}")
    x_train = fs.features["train"][backbone][rows["train"]]
    torch.manual_seed(seed)
    head = LabelSpaceHead(x_train, class_vecs).to(device)
    data = {s: to_tensors([fs.features[s][backbone][r], fs.labels[s][r]], device) for s, r in rows.items()}
    history = fit_module(head, lambda m, b: _masked_ce(m(b[0]), b[1], allowed), data["train"],
                         data["val"] if len(rows["val"]) else None, train, seed=seed)
    return head, history


@torch.no_grad()
def head_proba(head: nn.Module, fs: FeatureSet, split: str, backbone: str) -> np.ndarray:
    """Class probabilities of a trained head on one split."""
    device = next(head.parameters()).device
    (x,) = to_tensors([fs.features[split][backbone]], device)
    return torch.softmax(head(x), dim=1).cpu().numpy()


@dataclass
class LabelSpaceModel:
    """One label-space head per backbone; ``predict_proba`` averages their probabilities."""

    class_vecs: np.ndarray
    train: TrainConfig | None = None

    def fit(self, fs: FeatureSet, seed: int = 0, train_classes: Sequence[int] | None = None) -> "LabelSpaceModel":
        """Train a head on every backbone of ``fs``."""
        self.heads_: dict[str, LabelSpaceHead] = {}
        self.histories_: dict[str, TrainHistory] = {}
        for b in fs.backbones:
            self.heads_[b], self.histories_[b] = fit_label_head(fs, b, self.class_vecs, seed, self.train, train_classes)
        return self

    def backbone_proba(self, fs: FeatureSet, split: str) -> dict[str, np.ndarray]:
        """Probabilities of each backbone's head."""
        return {b: head_proba(h, fs, split, b) for b, h in self.heads_.items()}

    def predict_proba(self, fs: FeatureSet, split: str) -> np.ndarray:
        """Mean probability over the backbones' heads."""
        return np.mean(list(self.backbone_proba(fs, split).values()), axis=0)


def blend(p_visual: np.ndarray, p_label: np.ndarray, weight: float) -> np.ndarray:
    """Convex blend ``(1 - weight) * p_visual + weight * p_label``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")
    return (1.0 - weight) * p_visual + weight * p_label


def choose_blend_weight(p_visual_val: np.ndarray, p_label_val: np.ndarray, y_val: np.ndarray,
                        grid: Sequence[float] = BLEND_GRID) -> float:
    """The grid weight with the best validation accuracy; ties go to the lower validation NLL."""
    if len(p_visual_val) != len(y_val) or len(p_label_val) != len(y_val):
        raise ValueError(f"validation probabilities ({len(p_visual_val)}, {len(p_label_val)}) and labels "
                         f"({len(y_val)}) must have the same length")
    idx = np.arange(len(y_val))

    def key(w: float) -> tuple[float, float]:
        p = blend(p_visual_val, p_label_val, w)
        return (-float(np.mean(p.argmax(1) == y_val)), -float(np.mean(np.log(p[idx, y_val] + 1e-12))))

    return float(min(grid, key=key))


def zero_shot(fs: FeatureSet, class_vecs: np.ndarray, held_out: Sequence[int | str], seed: int = 0,
              train: TrainConfig | None = None) -> pd.DataFrame:
    """Hold ``held_out`` classes out of training; score test images of those classes among all classes.

    Returns one row per backbone plus ``"mean"`` (averaged probabilities) with columns
    ``top1`` and ``top5`` (the true class within the 1 / 5 best of all classes) and ``top1_unseen``
    (among the held-out classes only).
    """
    held = [fs.class_names.index(c) if isinstance(c, str) else int(c) for c in held_out]
    if not held or len(set(held)) == fs.n_classes or any(not 0 <= c < fs.n_classes for c in held):
        raise ValueError(f"held_out must name some but not all of the {fs.n_classes} classes {fs.class_names}")
    seen = [c for c in range(fs.n_classes) if c not in held]
    model = LabelSpaceModel(class_vecs, train).fit(fs, seed, train_classes=seen)
    rows = np.flatnonzero(np.isin(fs.labels["test"], held))
    if len(rows) == 0:
        raise ValueError("the test split has no examples of the held-out classes")
    y = fs.labels["test"][rows]
    probs = {b: p[rows] for b, p in model.backbone_proba(fs, "test").items()}
    probs["mean"] = np.mean(list(probs.values()), axis=0)
    k = min(5, fs.n_classes)
    out = []
    for name, p in probs.items():
        topk = np.argsort(-p, axis=1)[:, :k]
        unseen_pred = np.asarray(held)[p[:, held].argmax(1)]
        out.append({"model": name, "top1": float(np.mean(topk[:, 0] == y)),
                    "top5": float(np.mean((topk == y[:, None]).any(1))),
                    "top1_unseen": float(np.mean(unseen_pred == y)), "n_test": len(y)})
    return pd.DataFrame(out)
