"""Shared test helpers: the planted feature-set factory, a tiny CIFAR-10 on disk and the ``assets`` marker."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from fusion_lib.data.feature_set import FeatureSet


def planted_feature_set(
    signal: Mapping[str, float],
    *,
    n_classes: int = 3,
    dim: int = 8,
    sizes: Sequence[int] = (300, 150, 150),
    seed: int = 0,
    costs: Mapping[str, float] | None = None,
    class_names: Sequence[str] | None = None,
    thumb_size: int = 8,
    fixed_test: bool = True,
) -> FeatureSet:
    """A FeatureSet whose answers are known: backbone ``b``'s features are its class means, drawn with
    scale ``signal[b]`` (0: the backbone sees nothing), plus unit Gaussian noise; labels are uniform over
    ``n_classes``; thumbnails are black; each row's index is its position."""
    rng = np.random.default_rng(seed)
    means = {b: s * rng.normal(size=(n_classes, dim)) for b, s in signal.items()}
    feats, labels = {}, {}
    for split, n in zip(("train", "val", "test"), sizes):
        y = rng.integers(0, n_classes, n)
        feats[split] = {b: (m[y] + rng.normal(size=(n, dim))).astype(np.float32) for b, m in means.items()}
        labels[split] = y.astype(np.int64)
    thumbs = {s: np.zeros((len(y), 3, thumb_size, thumb_size), np.float32) for s, y in labels.items()}
    names = list(class_names) if class_names else [f"c{i}" for i in range(n_classes)]
    return FeatureSet(
        "planted",
        list(signal),
        names,
        feats,
        labels,
        thumbs,
        dict(costs) if costs else {b: 1.0 for b in signal},
        {s: np.arange(len(y)) for s, y in labels.items()},
        fixed_test=fixed_test,
    )


@pytest.fixture(scope="session")
def make_planted():
    """The factory ``planted_feature_set``, for tests and module-scoped fixtures."""
    return planted_feature_set


@pytest.fixture
def cifar10_pickles(tmp_path: Path) -> Path:
    """A tiny CIFAR-10 in torchvision's python pickles under ``tmp_path`` (the root to load it from): five
    training batches of 20 random images and a test batch of 30, labelled ``i % 10``, classes c0..c9.
    Returns the batch folder, for tests that read or change its files."""
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 20) for i in range(1, 6)] + [("test_batch", 30)]:
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [i % 10 for i in range(n)],
        }
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return base
