"""Paired comparisons of two methods on the same test images, with 95% confidence intervals.

Every "A beats B" statement of the book goes through ``paired_difference``. Its statistic is the
accuracy difference in points (100 x the mean of ``correct_a - correct_b``), averaged over seeds. The
interval is a paired, seed-stratified percentile bootstrap: each replicate resamples, within every
seed, that seed's test images with replacement, and takes the same images for both methods. Where
one seed is compared, McNemar's exact test (a two-sided binomial test on the discordant images) is
reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95


def interval(mean: float, low: float, high: float, digits: int = 1, sign: bool = False) -> str:
    """An estimate with its interval, all in the same unit: ``"91.2 [90.1, 92.3]"``."""
    f = f"{'+' if sign else ''}.{digits}f"
    return f"{mean:{f}} [{low:{f}}, {high:{f}}]"


@dataclass(frozen=True)
class Difference:
    """Accuracy of A minus accuracy of B in points, with its paired 95% bootstrap interval."""

    diff: float
    low: float
    high: float
    n_images: int
    n_seeds: int
    p_mcnemar: float | None = None

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes zero."""
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        """``+1.23 [+0.45, +2.01]`` (points, 95% CI)."""
        return interval(self.diff, self.low, self.high, digits=2, sign=True)

    def verdict(self, a: str, b: str) -> str:
        """A sentence: which method is better, or that the data cannot tell them apart."""
        if self.low > 0:
            return f"{a} beats {b} by {self.text()} points"
        if self.high < 0:
            return f"{a} trails {b}: {self.text()} points"  # signed A - B, so no "by -x"
        return f"{a} and {b} are not distinguishable: {self.text()} points"


def _as_seeds(values: Sequence[np.ndarray] | np.ndarray, what: str) -> list[np.ndarray]:
    arrays = [
        np.asarray(v, dtype=np.float64).ravel()
        for v in ([values] if isinstance(values, np.ndarray) and values.ndim == 1 else values)
    ]
    if not arrays or any(len(a) == 0 for a in arrays):
        raise ValueError(f"{what} needs at least one seed with at least one test image")
    return arrays


def bootstrap_means(
    values: Sequence[np.ndarray] | np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """The ``n_boot`` bootstrap replicates of the mean over seeds of per-seed means, resampling within
    each seed. Two calls with the same ``seed`` and equal per-seed sizes resample the same images, so
    their replicates are paired (for a statistic of several per-image scores, e.g. a harmonic mean)."""
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a 95% interval, got {n_boot}")
    per_seed = _as_seeds(values, "values")
    rng = np.random.default_rng(seed)
    stats = np.zeros(n_boot)
    for v in per_seed:
        idx = rng.integers(0, len(v), size=(n_boot, len(v)))
        stats += v[idx].mean(axis=1)
    return stats / len(per_seed)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap replicates."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _bootstrap(per_seed: list[np.ndarray], n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean over seeds of per-seed means, resampling within each seed."""
    return percentile_interval(bootstrap_means(per_seed, n_boot=n_boot, seed=seed))


def paired_difference(
    correct_a: Sequence[np.ndarray] | np.ndarray,
    correct_b: Sequence[np.ndarray] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Difference:
    """Accuracy difference A - B in points over the same test images, with a paired 95% CI.

    ``correct_a`` and ``correct_b`` hold one boolean array per seed (or a single array for one seed),
    aligned image by image: entry i of seed s is whether the method got that seed's test image i right.
    """
    a, b = _as_seeds(correct_a, "correct_a"), _as_seeds(correct_b, "correct_b")
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        raise ValueError(
            f"correct_a and correct_b must be paired: got seeds of sizes {[len(x) for x in a]} "
            f"and {[len(y) for y in b]}"
        )
    deltas = [100.0 * (x - y) for x, y in zip(a, b)]
    low, high = _bootstrap(deltas, n_boot, seed)
    p = None
    if len(a) == 1:
        wins, losses = int(((a[0] > 0) & (b[0] == 0)).sum()), int(((a[0] == 0) & (b[0] > 0)).sum())
        p = 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5).pvalue)
    diff = float(np.mean([d.mean() for d in deltas]))
    return Difference(diff, low, high, n_images=sum(len(x) for x in a), n_seeds=len(a), p_mcnemar=p)


def bootstrap_mean_ci(
    values: Sequence[np.ndarray] | np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds of per-seed means, with a seed-stratified 95% bootstrap CI.

    Use it for one method's accuracy (pass 100 x correctness for points) or any per-image score.
    """
    per_seed = _as_seeds(values, "values")
    low, high = _bootstrap(per_seed, n_boot, seed)
    return float(np.mean([v.mean() for v in per_seed])), low, high
