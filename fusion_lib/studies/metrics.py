"""Classification, diversity and calibration metrics on numpy arrays.

Predictions are integer class arrays ``(n,)``; probabilities are ``(n, n_classes)`` arrays whose
rows sum to one. Every function checks that its inputs are aligned and says what is wrong if not.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of class indices, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _aligned(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")
    if not any(lengths.values()):
        raise ValueError(f"arrays must not be empty, got {lengths}")


def _probs(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be a 2-d array (n, n_classes), got shape {probs.shape}")
    _aligned(probs=probs, y_true=y_true)
    if y_true.max() >= probs.shape[1] or y_true.min() < 0:
        raise ValueError(
            f"labels must lie in [0, {probs.shape[1]}), got range [{y_true.min()}, {y_true.max()}]"
        )
    return probs


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _aligned(y_true=y_true, y_pred=y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Counts ``(n_classes, n_classes)``: rows are true classes, columns predicted classes."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _aligned(y_true=y_true, y_pred=y_pred)
    n = int(max(y_true.max(), y_pred.max()) + 1) if n_classes is None else n_classes
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n:
        raise ValueError(f"class indices must lie in [0, {n}); pass n_classes to cover all labels")
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Accuracy within each true class (recall); NaN for classes with no examples."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of examples on which two classifiers predict the same class."""
    return accuracy(pred_a, pred_b)


def cohen_kappa(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Cohen's kappa between two classifiers: agreement corrected for chance agreement.

    Returns 1.0 when both classifiers predict one and the same constant class (chance agreement
    is already perfect, so kappa is undefined; we report the observed perfect agreement).
    """
    pred_a, pred_b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    _aligned(pred_a=pred_a, pred_b=pred_b)
    n = int(max(pred_a.max(), pred_b.max()) + 1)
    p_observed = float(np.mean(pred_a == pred_b))
    p_chance = (
        float(np.dot(np.bincount(pred_a, minlength=n), np.bincount(pred_b, minlength=n))) / len(pred_a) ** 2
    )
    if p_chance == 1.0:
        return 1.0
    return (p_observed - p_chance) / (1.0 - p_chance)


def double_fault(pred_a: np.ndarray, pred_b: np.ndarray, y_true: np.ndarray) -> float:
    """Fraction of examples that both classifiers get wrong (error overlap)."""
    pred_a, pred_b, y_true = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b"), _labels(y_true, "y_true")
    _aligned(pred_a=pred_a, pred_b=pred_b, y_true=y_true)
    return float(np.mean((pred_a != y_true) & (pred_b != y_true)))


def oracle_accuracy(preds: Mapping[str, np.ndarray] | Sequence[np.ndarray], y_true: np.ndarray) -> float:
    """Fraction of examples that at least one classifier gets right: the upper bound of selection."""
    arrays = list(preds.values()) if isinstance(preds, Mapping) else list(preds)
    if not arrays:
        raise ValueError("oracle_accuracy needs at least one prediction array")
    y_true = _labels(y_true, "y_true")
    if any(len(p) != len(y_true) for p in arrays):
        raise ValueError(
            f"every prediction array must have {len(y_true)} entries like y_true, "
            f"got lengths {[len(p) for p in arrays]}"
        )
    stacked = np.stack([_labels(p, "prediction") for p in arrays])
    return float(np.mean((stacked == y_true).any(axis=0)))


def log_loss(probs: np.ndarray, y_true: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class."""
    y_true = _labels(y_true, "y_true")
    probs = _probs(probs, y_true)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, None))))


def reliability_diagram(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Per confidence bin: bounds, example count, mean confidence and accuracy of the top-1 class.

    Bins are equal-width on [0, 1], right-closed like the standard ECE definition; empty bins are
    kept with count 0 and NaN confidence/accuracy so the frame always has ``n_bins`` rows.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y_true = _labels(y_true, "y_true")
    probs = _probs(probs, y_true)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins (lo, hi]; a confidence of exactly 0 cannot occur for a probability row
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": count,
            "confidence": np.where(count > 0, mean_conf, np.nan),
            "accuracy": np.where(count > 0, mean_acc, np.nan),
        }
    )


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE: count-weighted mean of ``|accuracy - confidence|`` over equal-width confidence bins."""
    table = reliability_diagram(probs, y_true, n_bins).query("count > 0")
    gap = (table["accuracy"] - table["confidence"]).abs()
    return float((gap * table["count"]).sum() / table["count"].sum())


def pairwise_matrix(
    preds: Mapping[str, np.ndarray], fn: Callable[[np.ndarray, np.ndarray], float]
) -> pd.DataFrame:
    """Square frame of ``fn(preds[a], preds[b])`` for every pair of named prediction arrays."""
    if not preds:
        raise ValueError("pairwise_matrix needs at least one named prediction array")
    names = list(preds)
    values = np.array([[fn(preds[a], preds[b]) for b in names] for a in names])
    return pd.DataFrame(values, index=pd.Index(names, name="model"), columns=pd.Index(names, name="model"))


def agreement_matrix(preds: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise agreement between named classifiers."""
    return pairwise_matrix(preds, agreement)


def kappa_matrix(preds: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise Cohen's kappa between named classifiers."""
    return pairwise_matrix(preds, cohen_kappa)


def double_fault_matrix(preds: Mapping[str, np.ndarray], y_true: np.ndarray) -> pd.DataFrame:
    """Pairwise double-fault rate (both wrong) between named classifiers; the diagonal is the error rate."""
    return pairwise_matrix(preds, lambda a, b: double_fault(a, b, y_true))


__all__ = [
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "agreement",
    "cohen_kappa",
    "double_fault",
    "oracle_accuracy",
    "log_loss",
    "reliability_diagram",
    "expected_calibration_error",
    "pairwise_matrix",
    "agreement_matrix",
    "kappa_matrix",
    "double_fault_matrix",
]
