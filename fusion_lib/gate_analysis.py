"""What a trained gate does: mean weight per class, each expert's favourite images, top-k trade-offs."""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

_TOPK = re.compile(r"^(accuracy|gflops_per_image)_top(\d+)$")


def _check(weights: np.ndarray, n: int | None = None) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"gate weights must be (n_images, n_experts), got shape {w.shape}")
    if n is not None and len(w) != n:
        raise ValueError(f"{len(w)} rows of gate weights but {n} labels; they must be aligned")
    return w


def gate_by_class(weights: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  expert_names: Sequence[str]) -> pd.DataFrame:
    """Mean gate weight of each expert over the images of each class (classes x experts)."""
    w = _check(weights, len(labels))
    if w.shape[1] != len(expert_names):
        raise ValueError(f"{w.shape[1]} gate columns but {len(expert_names)} expert names")
    labels = np.asarray(labels)
    rows = [w[labels == c].mean(0) if np.any(labels == c) else np.full(w.shape[1], np.nan)
            for c in range(len(class_names))]
    return pd.DataFrame(rows, index=pd.Index(class_names, name="class"),
                        columns=pd.Index(expert_names, name="expert"))


def favourite_images(weights: np.ndarray, k: int = 6) -> np.ndarray:
    """Row indices of the ``k`` images each expert gets the most weight on: (n_experts, k), best first."""
    w = _check(weights)
    if not 1 <= k <= len(w):
        raise ValueError(f"k must be between 1 and the number of images ({len(w)}), got {k}")
    # stable sort on the negated weights keeps ties in image order, so the choice is reproducible
    return np.argsort(-w, axis=0, kind="stable")[:k].T


def topk_curve(results: pd.DataFrame, n_experts: int) -> pd.DataFrame:
    """Accuracy against backbone compute for top-k gating, from ``run_experiment`` results.

    Dense gating (every expert) is k = n_experts; its rows are the method's plain accuracy and
    gflops_per_image. Returns (dataset, method, seed, k, accuracy, gflops_per_image).
    """
    parts = []
    for metric, value in [("accuracy", "accuracy"), ("gflops_per_image", "gflops_per_image")]:
        dense = results[results["metric"] == metric].assign(k=n_experts, what=value)
        parts.append(dense)
    m = results["metric"].str.extract(_TOPK)
    sparse = results[m[0].notna()].assign(what=m[0].dropna(), k=m[1].dropna().astype(int))
    parts.append(sparse)
    long = pd.concat(parts, ignore_index=True)
    gated = long.groupby(["dataset", "method"])["k"].transform("nunique") > 1  # methods that report top-k
    wide = long[gated].pivot_table(index=["dataset", "method", "seed", "k"], columns="what", values="value")
    return wide.reset_index().rename_axis(columns=None)[["dataset", "method", "seed", "k", "accuracy",
                                                          "gflops_per_image"]]


def gate_usage(weights: np.ndarray) -> dict[str, float]:
    """How spread the gate's decisions are: the mean of each image's largest weight, and the effective
    number of experts in use, exp(entropy of the mean weight vector) (1 = collapsed onto one expert,
    K = all used equally)."""
    w = _check(weights)
    mean_w = w.mean(0)
    nz = mean_w[mean_w > 0]
    return {"mean_max_weight": float(w.max(1).mean()), "effective_experts": float(np.exp(-(nz * np.log(nz)).sum()))}
