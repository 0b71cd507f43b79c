"""Label-space embedding: class names as word vectors, visual features projected into that space.

Each class name becomes the mean of its tokens' word vectors. Per backbone, a projection of the
visual features into word space is trained with a softmax over cosine similarities to the class
vectors and a learned temperature (DeViSE-style). Because classes are only points in word space,
classes never seen in training can still be predicted (zero-shot).

Zero-shot uses a closed-form map instead of the trained head, so that every way of holding classes
out (and a permutation null) is affordable: ridge regression of the standardised features of the
seen classes onto their class vectors (``fit_zero_shot_map``), scored by cosine similarity against
every class vector (``zero_shot_scores``). It is computed from per-class moments of the train split
(``ClassMoments``), so a held-out class's images never enter it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion_lib.data.assets import load_word_vectors
from fusion_lib.data.device import resolve_device
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.experts import Standardize, floored_std, inputs_transformed
from fusion_lib.fusion.training import (
    BLEND_GRID,
    TrainConfig,
    TrainHistory,
    fit_module,
    num_threads,
    to_tensors,
)

OFFLINE_WORD_VECTORS = "glove-6b-50d"
# Ridge penalty of the zero-shot map per train image, on standardised features (unit variance per
# dimension): set with the zero-shot study and never changed since; no held-out class may choose it.
ZERO_SHOT_RIDGE = 1.0


def load_vectors(name: str = OFFLINE_WORD_VECTORS) -> Any:
    """Gensim KeyedVectors: the offline GloVe 50-d asset, or any gensim-downloader model name (online)."""

    return load_word_vectors(name)


def tokenize(name: str) -> list[str]:
    """Lowercase and split on non-letters: ``"T-shirt/top"`` -> ``["t", "shirt", "top"]``."""
    return re.findall(r"[a-z]+", name.lower())


def class_words(name: str, aliases: Mapping[str, str]) -> list[str]:
    """The words whose vectors make up a class name; an alias may replace the whole name or one token."""
    tokens = tokenize(aliases.get(name, name))
    return [t for token in tokens for t in (tokenize(aliases[token]) if token in aliases else [token])]


def class_vectors(
    class_names: Sequence[str], vectors: Any, aliases: Mapping[str, str] | None = None
) -> np.ndarray:
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


def fit_label_head(
    fs: FeatureSet, backbone: str, class_vecs: np.ndarray, seed: int = 0, train: TrainConfig | None = None
) -> tuple[LabelSpaceHead, TrainHistory]:
    """Train one backbone's projection into word space on the train split (early-stopped on val)."""
    train = train or TrainConfig()
    if len(class_vecs) != fs.n_classes:
        raise ValueError(f"got {len(class_vecs)} class vectors for {fs.n_classes} classes")
    device = resolve_device(train.device)
    torch.manual_seed(seed)
    head = LabelSpaceHead(fs.features["train"][backbone], class_vecs).to(device)
    data = {}
    for s in ("train", "val"):
        x, y = to_tensors([fs.features[s][backbone], fs.labels[s]], device)
        data[s] = (head.norm.transform(x), y)
    with inputs_transformed(head):
        history = fit_module(
            head, lambda m, b: F.cross_entropy(m(b[0]), b[1]), data["train"], data["val"], train, seed=seed
        )
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

    def fit(self, fs: FeatureSet, seed: int = 0) -> "LabelSpaceModel":
        """Train a head on every backbone of ``fs``."""
        self.heads_: dict[str, LabelSpaceHead] = {}
        self.histories_: dict[str, TrainHistory] = {}
        for b in fs.backbones:
            self.heads_[b], self.histories_[b] = fit_label_head(fs, b, self.class_vecs, seed, self.train)
        return self

    def backbone_proba(self, fs: FeatureSet, split: str) -> dict[str, np.ndarray]:
        """Probabilities of each backbone's head."""
        return {b: head_proba(h, fs, split, b) for b, h in self.heads_.items()}

    def predict_proba(self, fs: FeatureSet, split: str) -> np.ndarray:
        """Mean probability over the backbones' heads."""
        return np.mean(list(self.backbone_proba(fs, split).values()), axis=0)


def random_class_vectors(n_classes: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in random directions ``(n_classes, dim)``: class vectors that carry no word meaning."""
    vecs = np.random.default_rng(seed).normal(size=(n_classes, dim))
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def blend(p_visual: np.ndarray, p_label: np.ndarray, weight: float) -> np.ndarray:
    """Convex blend ``(1 - weight) * p_visual + weight * p_label``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")
    return (1.0 - weight) * p_visual + weight * p_label


def choose_blend_weight(
    p_visual_val: np.ndarray, p_label_val: np.ndarray, y_val: np.ndarray, grid: Sequence[float] = BLEND_GRID
) -> float:
    """The grid weight with the best validation accuracy; ties go to the lower validation NLL."""
    if len(p_visual_val) != len(y_val) or len(p_label_val) != len(y_val):
        raise ValueError(
            f"validation probabilities ({len(p_visual_val)}, {len(p_label_val)}) and labels "
            f"({len(y_val)}) must have the same length"
        )
    idx = np.arange(len(y_val))

    def key(w: float) -> tuple[float, float]:
        p = blend(p_visual_val, p_label_val, w)
        return (-float(np.mean(p.argmax(1) == y_val)), -float(np.mean(np.log(p[idx, y_val] + 1e-12))))

    return float(min(grid, key=key))


# Per-class Gram matrices are kept only while they fit in this many bytes (C * D * D float32): ten
# classes of 1,408-d features take 79 MB, but a hundred classes of VGG-16's 4,096-d features would take 6.7 GB.
CLASS_GRAMS_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class ClassMoments:
    """Per-class sufficient statistics of one backbone's features: ``counts`` ``(C,)`` and ``sums``
    ``(C, D)`` (float64), and either uncentred Gram matrices ``grams`` ``(C, D, D)`` (float32, half
    the memory and time; they are summed in float64) or, where those would exceed
    ``CLASS_GRAMS_MAX_BYTES``, the float32 ``rows`` and their ``labels``, from which each split's Gram
    matrix is computed. Either way a split's Gram matrix is made from the seen classes' rows alone."""

    counts: np.ndarray
    sums: np.ndarray
    grams: np.ndarray | None = None
    rows: np.ndarray | None = None
    labels: np.ndarray | None = None

    @classmethod
    def of(cls, features: np.ndarray, labels: np.ndarray, n_classes: int) -> "ClassMoments":
        """The moments of ``features`` ``(n, D)`` grouped by ``labels`` in ``0..n_classes-1``."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(labels):
            raise ValueError(f"features {x.shape} must be (n, D) with one row per label ({len(labels)})")
        labels = np.asarray(labels)
        by_class = [x[labels == c] for c in range(n_classes)]
        counts = np.array([len(r) for r in by_class], dtype=np.float64)
        sums = np.stack([r.sum(0) for r in by_class])
        dim = x.shape[1]
        if n_classes * dim * dim * 4 > CLASS_GRAMS_MAX_BYTES:
            return cls(counts, sums, rows=x.astype(np.float32), labels=labels)
        grams = np.empty((n_classes, dim, dim), dtype=np.float32)
        for c, r in enumerate(by_class):
            r32 = r.astype(np.float32)
            np.matmul(r32.T, r32, out=grams[c])
        return cls(counts, sums, grams=grams)

    def seen_gram(self, seen: np.ndarray) -> np.ndarray:
        """The uncentred Gram matrix ``(D, D)`` (float64) of the ``seen`` classes' rows."""
        if self.grams is None:
            r = self.rows[np.isin(self.labels, seen)]
            return (r.T @ r).astype(np.float64)
        gram = self.grams[seen[0]].astype(np.float64)
        for c in seen[1:]:  # in place: a (D, D) matrix per class, no stacked copy
            gram += self.grams[c]
        return gram


@dataclass(frozen=True)
class ZeroShotMap:
    """Standardise -> linear map to weights over the seen classes' vectors.

    An image's word-space embedding is ``seen_weights(x) @ class_vecs[seen]``: the ridge regression of
    the standardised features onto the class vector of their (seen) class. The weights do not depend
    on the class vectors, so the same map serves any assignment of vectors to classes (the
    permutation null refits nothing).
    """

    seen: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def seen_weights(self, features: np.ndarray) -> np.ndarray:
        """``(n, len(seen))`` weights of each image's embedding over the seen classes' vectors."""
        # ((x - mean) / std) @ coef folded into one float32 product with the raw features
        scaled = (self.coef / self.std[:, None]).astype(np.float32)
        offset = self.intercept - (self.mean / self.std) @ self.coef
        return np.asarray(features, dtype=np.float32) @ scaled + offset.astype(np.float32)


def fit_zero_shot_map(
    moments: ClassMoments, seen: Sequence[int], ridge: float = ZERO_SHOT_RIDGE
) -> ZeroShotMap:
    """Ridge regression of the seen classes' standardised train features onto their class vectors.

    Only the ``seen`` classes' moments enter (standardisation included), so images of any other
    class cannot change the map. ``ridge`` is the penalty per train image.
    """
    seen = np.asarray(sorted(set(int(c) for c in seen)))
    if len(seen) < 2 or seen.min() < 0 or seen.max() >= len(moments.counts):
        raise ValueError(
            f"seen must name at least 2 of the {len(moments.counts)} classes, got {seen.tolist()}"
        )
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    counts, sums = moments.counts[seen], moments.sums[seen]
    n = counts.sum()
    if np.any(counts == 0):
        raise ValueError(f"seen classes {seen[counts == 0].tolist()} have no train images")
    mean = sums.sum(0) / n
    gram = moments.seen_gram(seen)
    gram -= n * np.outer(mean, mean)  # centred
    std = floored_std(np.sqrt(np.clip(np.diag(gram) / n, 0.0, None)))
    gram /= std[:, None]
    gram /= std[None, :]
    gram[np.diag_indices_from(gram)] += ridge * n
    # X^T Y with Y the one-hot seen class of each image: the centred, standardised class sums
    xty = ((sums - counts[:, None] * mean) / std).T
    # float32 Cholesky in torch (one thread): the ridge keeps the system well conditioned, and this is
    # the main cost of a zero-shot split (measured 3x faster than scipy's solver on a busy 2-core CPU)
    with num_threads(1):
        chol = torch.linalg.cholesky(torch.from_numpy(gram.astype(np.float32)))
        coef = torch.cholesky_solve(torch.from_numpy(xty.astype(np.float32)), chol).double().numpy()
    return ZeroShotMap(seen, mean, std, coef, counts / n)


def cosine_scores(weights: np.ndarray, class_vecs: np.ndarray, seen: Sequence[int]) -> np.ndarray:
    """Cosine similarity of each embedding ``weights @ unit[seen]`` to every unit class vector ``unit``.

    ``weights`` is ``(n, S)`` from ``ZeroShotMap.seen_weights``; ``class_vecs`` ``(C, dim)`` or a
    stack ``(P, C, dim)`` of vector assignments; returns ``(n, C)`` or ``(n, P, C)``. Computed in the
    span of the seen vectors (one matrix product for the whole stack), so many assignments cost
    little more than one.
    """
    v = np.asarray(class_vecs, dtype=np.float32)
    single = v.ndim == 2
    v = (v[None] if single else v) / np.linalg.norm(v, axis=-1, keepdims=True)
    vs = v[:, list(seen)]  # (P, S, dim)
    n_perm, n_seen, n_classes = len(v), vs.shape[1], v.shape[1]
    w = np.asarray(weights, dtype=np.float32)
    dots = w @ (vs @ np.swapaxes(v, 1, 2)).transpose(1, 0, 2).reshape(n_seen, -1)  # (n, P*C)
    gram = (vs @ np.swapaxes(vs, 1, 2)).transpose(1, 0, 2).reshape(n_seen, -1)  # (S, P*S)
    sq = np.einsum("nps,ns->np", (w @ gram).reshape(len(w), n_perm, n_seen), w)  # squared norms
    out = dots.reshape(len(w), n_perm, n_classes)
    out /= np.sqrt(np.maximum(sq, 1e-24))[..., None]
    return out[:, 0] if single else out


def zero_shot_scores(
    fs: FeatureSet,
    class_vecs: np.ndarray,
    held_out: Sequence[int | str],
    split: str = "test",
    ridge: float = ZERO_SHOT_RIDGE,
) -> dict[str, np.ndarray]:
    """Cosine scores ``(n, C)`` of one split's images against every class vector, per backbone and
    their ``"mean"``, by maps fitted on the train images of the classes not in ``held_out``."""
    held = [fs.class_names.index(c) if isinstance(c, str) else int(c) for c in held_out]
    if not held or len(set(held)) >= fs.n_classes - 1 or any(not 0 <= c < fs.n_classes for c in held):
        raise ValueError(
            f"held_out must name some of the {fs.n_classes} classes {fs.class_names}, leaving at least 2 seen"
        )
    if len(class_vecs) != fs.n_classes:
        raise ValueError(f"got {len(class_vecs)} class vectors for {fs.n_classes} classes")
    seen = [c for c in range(fs.n_classes) if c not in held]
    out = {}
    for b in fs.backbones:
        moments = ClassMoments.of(fs.features["train"][b], fs.labels["train"], fs.n_classes)
        zmap = fit_zero_shot_map(moments, seen, ridge)
        out[b] = cosine_scores(zmap.seen_weights(fs.features[split][b]), class_vecs, seen)
    out["mean"] = np.mean([out[b] for b in fs.backbones], axis=0)
    return out
