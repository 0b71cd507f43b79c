"""Paired comparisons of methods over seeds and test images, with 95% confidence intervals.

Every "A beats B" statement of the book goes through ``paired_difference``. Its statistic is the
accuracy difference in points (100 x the mean of ``correct_a - correct_b``), averaged over seeds.

What the interval covers: both sources of variation, the training seed and the test images. It is a
percentile interval of a hierarchical bootstrap (``bootstrap_means``): each replicate draws the seeds
with replacement and, independently, bootstrap counts for the test images, and takes the same draw for
both methods (paired). Images are identified by ``image_ids``: an image that several seeds were tested on
(a dataset's official test set) gets the same count in each of them, so shared images are resampled
jointly rather than as if every seed had brought new ones, and it counts once in ``n_images``.

Limits a reader should know:

* With one seed only the test images are resampled: the interval says nothing about retraining.
* With few seeds the seed level is somewhat narrow: a percentile bootstrap over S seeds sees (S-1)/S of
  their variance and only S distinct values, a known small-sample shortfall.
* Resampling both levels counts image-level noise that already shows in the seeds' spread a second time
  (the two-stage and "pigeonhole" bootstraps are known to be conservative for it), so when that noise
  dominates the interval errs on the wide side: up to about 1.4x (2 seeds) to 1.6x (5 seeds) the right
  width for seeds on disjoint images that differ by image noise alone. Simulated paired comparisons of
  5 seeds on one shared test set cover the true difference 95-98% of the time (tests/test_stats.py).

Each difference carries a two-sided bootstrap p-value (``bootstrap_p``) so that a family of comparisons
can be Holm-adjusted (``holm``), and a one-word outcome (``Difference.word``) against the
equivalence margin ``MARGIN``. Where one seed is compared, McNemar's exact test (a two-sided binomial test
on the discordant images) is reported beside it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

CONFIDENCE = 0.95
ALPHA = 0.05  # 1 - CONFIDENCE, written out so that p < ALPHA is exact at 0.05
MARGIN = 0.5  # points: the equivalence margin of an accuracy difference (chosen after results; see the book)
# Bootstrap replicates of every interval: with 2,000 the C2b bound moved by 0.05 points between
# bootstrap seeds and a p-value floored at 1/2,000 could not survive Holm's correction over 36 rows
N_BOOT = 10_000
VERDICT_WORDS = ("better", "worse", "equivalent", "inconclusive")


def dataset_stream(dataset: str) -> int:
    """The bootstrap seed of one dataset's statistics: a stable hash of its name, so that independent
    datasets resample independently (a pooled difference averages independent replicates), while every
    statistic on one dataset shares its draws."""
    return int.from_bytes(hashlib.blake2b(dataset.encode(), digest_size=8).digest(), "little")


def interval(mean: float, low: float, high: float, digits: int = 1, sign: bool = False) -> str:
    """An estimate with its interval, all in the same unit: ``"91.2 [90.1, 92.3]"``."""
    f = f"{'+' if sign else ''}.{digits}f"
    return f"{mean:{f}} [{low:{f}}, {high:{f}}]"


@dataclass(frozen=True)
class Difference:
    """A minus B in points with its 95% bootstrap interval and two-sided bootstrap ``p_value``.

    ``replicates`` (the bootstrap replicates of ``diff``) let differences on independent datasets be
    pooled (``pooled_difference``); ``p_mcnemar`` is set for a single seed.
    """

    diff: float
    low: float
    high: float
    n_images: int
    n_seeds: int
    p_mcnemar: float | None = None
    p_value: float = field(kw_only=True)
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False, kw_only=True)

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes zero."""
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        """``+1.23 [+0.45, +2.01]`` (points, 95% CI)."""
        return interval(self.diff, self.low, self.high, digits=2, sign=True)

    def word(self, margin: float = MARGIN, p_adjusted: float | None = None) -> str:
        """One of ``VERDICT_WORDS``.

        "equivalent" when the whole interval lies strictly inside (-margin, +margin), whatever the
        p-value; "better" ("worse") when the interval lies above (below) zero and ``p_adjusted``, if
        given (e.g. Holm-adjusted over the family), is below 0.05; else "inconclusive".
        """
        return interval_word(self.low, self.high, margin=margin, p_adjusted=p_adjusted)

    def p_equivalence(self, margin: float = MARGIN) -> float:
        """The TOST p-value of "inside ±``margin``" from the replicates (``equivalence_p``)."""
        if self.replicates is None:
            raise ValueError("p_equivalence needs the bootstrap replicates (from paired_difference)")
        return equivalence_p(self.replicates, margin)

    def verdict(self, a: str, b: str, *, margin: float = MARGIN, p_adjusted: float | None = None) -> str:
        """A sentence saying ``word`` for methods ``a`` and ``b``, with the difference and its interval."""
        return verdict_sentence(a, b, self.word(margin=margin, p_adjusted=p_adjusted), self.text(), margin)


def verdict_sentence(a: str, b: str, word: str, text: str, margin: float = MARGIN) -> str:
    """``a`` against ``b`` in words: ``word`` (one of ``VERDICT_WORDS``) with the difference ``text``."""
    return {
        "better": f"{a} beats {b} by {text} points",
        "worse": f"{a} trails {b}: {text} points",  # signed A - B, so no "by -x"
        "equivalent": f"{a} and {b} are equivalent within ±{margin:g} points: {text} points",
        "inconclusive": f"{a} and {b} are not distinguishable (inconclusive): {text} points",
    }[word]


def interval_word(low: float, high: float, *, margin: float = MARGIN, p_adjusted: float | None = None) -> str:
    """``Difference.word`` from a 95% interval (and an adjusted p-value), for any measured difference."""
    if -margin < low and high < margin:
        return "equivalent"
    passes = p_adjusted is None or p_adjusted < ALPHA
    if low > 0 and passes:
        return "better"
    if high < 0 and passes:
        return "worse"
    return "inconclusive"


def _as_seeds(values: Sequence[np.ndarray] | np.ndarray, what: str) -> list[np.ndarray]:
    arrays = [
        np.asarray(v, dtype=np.float64).ravel()
        for v in ([values] if isinstance(values, np.ndarray) and values.ndim == 1 else values)
    ]
    if not arrays or any(len(a) == 0 for a in arrays):
        raise ValueError(f"{what} needs at least one seed with at least one test image")
    return arrays


def _as_ids(image_ids: Sequence[np.ndarray] | np.ndarray | None, sizes: list[int]) -> list[np.ndarray]:
    """Per seed, int64 image ids checked against the seeds' sizes; None gives every seed its own images."""
    if image_ids is None:
        starts = np.cumsum([0, *sizes])
        return [np.arange(s, s + n, dtype=np.int64) for s, n in zip(starts, sizes)]
    single = isinstance(image_ids, np.ndarray) and image_ids.ndim == 1
    ids = [np.asarray(i).ravel() for i in ([image_ids] if single else image_ids)]
    if len(ids) != len(sizes):
        raise ValueError(f"image_ids has {len(ids)} arrays but the values have {len(sizes)} seeds")
    for s, (i, n) in enumerate(zip(ids, sizes)):
        if len(i) != n:
            raise ValueError(f"image_ids of seed {s} has {len(i)} ids for {n} values")
        if not np.issubdtype(i.dtype, np.integer):
            raise ValueError(f"image_ids of seed {s} must be integers, got dtype {i.dtype}")
        if len(np.unique(i)) != n:
            raise ValueError(f"image_ids of seed {s} repeat an id: each test image once per seed")
    return [i.astype(np.int64) for i in ids]


@dataclass(frozen=True)
class _Draws:
    """One hierarchical resampling plan, shared by every statistic over the same seeds and images."""

    positions: list[np.ndarray]  # per seed, the column of each of its images in ``counts``
    counts: np.ndarray  # (n_boot, n_union) uint8 bootstrap counts of the union of images
    totals: np.ndarray  # (n_boot, n_seeds) total count of each seed's images, all > 0
    seed_weights: np.ndarray  # (n_boot, n_seeds) share of the replicate's seed draws on each seed


_DRAWS: OrderedDict[tuple, _Draws] = OrderedDict()
_DRAWS_BYTES = 400 << 20  # memo budget: a notebook compares many methods on one dataset's images at a time
_CHUNK = 1 << 22  # elements of a block of counts drawn or converted at once, to bound temporary memory
_REDRAWS = 100


def _counts_times(counts: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``counts @ columns`` in float32, a block of images at a time to bound the converted copy."""
    step = max(1, _CHUNK // len(counts))
    out = np.zeros((len(counts), columns.shape[1]), dtype=np.float32)
    for start in range(0, counts.shape[1], step):
        out += counts[:, start : start + step].astype(np.float32) @ columns[start : start + step]
    return out


def _draw_counts(rng: np.random.Generator, n_rows: int, n_union: int) -> np.ndarray:
    """Bootstrap counts: each row draws ``n_union`` images with replacement from ``n_union``.

    uint8 keeps the memo small; an image drawn over 255 times in one replicate has probability far below
    anything a computer will ever see (counts are about Poisson(1)).
    """
    out = np.empty((n_rows, n_union), dtype=np.uint8)
    step = max(1, _CHUNK // n_union)
    for start in range(0, n_rows, step):
        rows = min(step, n_rows - start)
        flat = rng.integers(0, n_union, size=(rows, n_union)) + (np.arange(rows) * n_union)[:, None]
        out[start : start + rows] = np.bincount(flat.ravel(), minlength=rows * n_union).reshape(rows, n_union)
    return out


def _draws(ids: list[np.ndarray], n_boot: int, seed: int) -> _Draws:
    digest = hashlib.blake2b(digest_size=16)
    for i in ids:
        digest.update(len(i).to_bytes(8, "little") + i.tobytes())
    key = (n_boot, seed, digest.hexdigest())
    if key in _DRAWS:
        _DRAWS.move_to_end(key)
        return _DRAWS[key]
    union = np.unique(np.concatenate(ids))
    positions = [np.searchsorted(union, i) for i in ids]
    member = np.zeros((len(union), len(ids)), dtype=np.float32)
    for s, p in enumerate(positions):
        member[p, s] = 1.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    seed_weights = (picks[:, :, None] == np.arange(len(ids))).mean(axis=1)
    counts = _draw_counts(rng, n_boot, len(union))
    totals = _counts_times(counts, member)
    # A seed whose images all drew zero has no mean in that replicate: redraw that replicate's image
    # counts (a bootstrap conditioned on every seed keeping an image), which only small seeds ever need.
    for _ in range(_REDRAWS):
        empty = np.flatnonzero((totals == 0).any(axis=1))
        if not len(empty):
            break
        counts[empty] = _draw_counts(rng, len(empty), len(union))
        totals[empty] = _counts_times(counts[empty], member)
    else:
        raise ValueError(
            f"cannot resample: seeds of sizes {[len(i) for i in ids]} among {len(union)} distinct images "
            "keep drawing no image at all; pool such tiny seeds first"
        )
    _DRAWS[key] = draws = _Draws(positions, counts, totals, seed_weights)
    while len(_DRAWS) > 1 and sum(d.counts.nbytes for d in _DRAWS.values()) > _DRAWS_BYTES:
        _DRAWS.popitem(last=False)
    return draws


def bootstrap_means(
    values: Sequence[np.ndarray] | np.ndarray,
    *,
    image_ids: Sequence[np.ndarray] | np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> np.ndarray:
    """The ``n_boot`` hierarchical bootstrap replicates of the mean over seeds of per-seed image means.

    ``values``: one 1-D array per seed (or one array for one seed). ``image_ids``: per seed, an int id
    per value; equal ids are the same test image in different seeds and get the same bootstrap count in
    each replicate. None: every seed has its own images. A replicate draws S seeds from the S with
    replacement and averages, over the drawn seeds, each seed's count-weighted image mean. Two calls with
    the same ``seed``, ``n_boot`` and ids (without ids: the same per-seed sizes) make the same draws, so
    their replicates are paired (for a statistic of several per-image scores, e.g. a harmonic mean).

    A replicate in which some seed drew none of its images is redrawn (so the bootstrap is conditioned on
    every seed keeping an image; only seeds of a handful of images ever need it). The draws are memoised
    (about n_boot x distinct images bytes each), so many statistics over the same images draw once.
    """
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a 95% interval, got {n_boot}")
    per_seed = _as_seeds(values, "values")
    draws = _draws(_as_ids(image_ids, [len(v) for v in per_seed]), n_boot, seed)
    centre = np.array([v.mean() for v in per_seed])
    # Centred values keep the float32 products accurate whatever the values' offset.
    deviations = np.zeros((draws.counts.shape[1], len(per_seed)), dtype=np.float32)
    for s, (v, p) in enumerate(zip(per_seed, draws.positions)):
        deviations[p, s] = v - centre[s]
    means = centre + _counts_times(draws.counts, deviations) / draws.totals
    return (means * draws.seed_weights).sum(axis=1)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap replicates."""
    tail = ALPHA / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_p(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the statistic is zero".

    Twice the smaller share of replicates on either side of zero (``<= 0`` or ``>= 0``), capped at 1 and
    floored at 1 / n_boot, since the replicates cannot resolve a smaller p.
    """
    r = np.asarray(replicates)
    tail = min(np.mean(r <= 0), np.mean(r >= 0))
    return float(min(1.0, max(2 * tail, 1 / len(r))))


def equivalence_p(replicates: np.ndarray, margin: float) -> float:
    """Bootstrap p-value of two one-sided tests (TOST) that the statistic lies inside ±``margin``: the
    larger share of replicates at or beyond either bound, floored at 1 / n_boot. Below 0.025 exactly
    when the 95% percentile interval lies inside the margin (up to ties at the bounds)."""
    r = np.asarray(replicates)
    return float(max(np.mean(r <= -margin), np.mean(r >= margin), 1 / len(r)))


def family_words(
    diffs: Sequence[float], p_superiority: Sequence[float], p_equivalence: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The words of a family of comparisons, both of its questions under one correction.

    The two-sided superiority p-values and the TOST equivalence p-values of every comparison form one
    Holm family; a comparison is "equivalent" when its adjusted TOST p is below 0.025 (2.5% a side, the
    reading of a 95% interval inside the margin), else "better" / "worse" (by the sign of ``diffs``) when
    its adjusted superiority p is below 0.05, else "inconclusive". Deciding equivalence on the unadjusted
    interval and superiority after Holm, as the book once did, gave the two words different error rates.
    Returns the adjusted superiority and equivalence p-values and the words, in the input order.
    """
    n = len(diffs)
    if len(p_superiority) != n or len(p_equivalence) != n:
        raise ValueError(
            f"family_words needs one p of each kind per comparison: got {n} differences, "
            f"{len(p_superiority)} superiority and {len(p_equivalence)} equivalence p-values"
        )
    adjusted = holm([*p_superiority, *p_equivalence]) if n else np.array([])
    sup, eq = adjusted[:n], adjusted[n:]
    words = [
        "equivalent" if e < ALPHA / 2 else ("better" if d > 0 else "worse") if p < ALPHA else "inconclusive"
        for d, p, e in zip(diffs, sup, eq)
    ]
    return sup, eq, words


def paired_difference(
    correct_a: Sequence[np.ndarray] | np.ndarray,
    correct_b: Sequence[np.ndarray] | np.ndarray,
    *,
    image_ids: Sequence[np.ndarray] | np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    relative: bool = False,
) -> Difference:
    """Accuracy difference A - B in points over the same test images, with a paired 95% CI; with
    ``relative``, A's error reduction in percent of B's errors, ``100 (acc_A - acc_B) / (1 - acc_B)``
    with accuracies averaged over seeds, both bootstrapped on the same draws and divided per replicate
    (a margin in points means something else where B errs on 3% of the images than on 20%).

    ``correct_a`` and ``correct_b`` hold one boolean array per seed (or a single array for one seed),
    aligned image by image: entry i of seed s is whether the method got that seed's test image i right.
    ``image_ids`` identify the images across seeds (see ``bootstrap_means``); ``n_images`` counts the
    distinct ones.
    """
    a, b = _as_seeds(correct_a, "correct_a"), _as_seeds(correct_b, "correct_b")
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        raise ValueError(
            f"correct_a and correct_b must be paired: got seeds of sizes {[len(x) for x in a]} "
            f"and {[len(y) for y in b]}"
        )
    deltas = [100.0 * (x - y) for x, y in zip(a, b)]
    reps = bootstrap_means(deltas, image_ids=image_ids, n_boot=n_boot, seed=seed)
    estimate = float(np.mean([d.mean() for d in deltas]))
    if relative:
        errors_b = [100.0 * (1.0 - y) for y in b]  # the same draws as the deltas': the same ids and seed
        reps = (
            100.0
            * reps
            / np.maximum(bootstrap_means(errors_b, image_ids=image_ids, n_boot=n_boot, seed=seed), 1e-9)
        )
        mean_errors = float(np.mean([e.mean() for e in errors_b]))
        if mean_errors == 0:
            raise ValueError(
                "B makes no error on these test images, so a reduction of its errors is undefined: compare "
                "in points (relative=False), or test on more or harder images"
            )
        estimate = 100.0 * estimate / mean_errors
    low, high = percentile_interval(reps)
    p = None
    if len(a) == 1:
        wins, losses = int(((a[0] > 0) & (b[0] == 0)).sum()), int(((a[0] == 0) & (b[0] > 0)).sum())
        p = 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5).pvalue)
    n_images = sum(len(x) for x in a)
    if image_ids is not None:
        n_images = len(np.unique(np.concatenate(_as_ids(image_ids, [len(x) for x in a]))))
    return Difference(
        estimate,
        low,
        high,
        n_images=n_images,
        n_seeds=len(a),
        p_mcnemar=p,
        p_value=bootstrap_p(reps),
        replicates=reps,
    )


def pooled_difference(diffs: Sequence[Difference]) -> Difference:
    """The equal-weight mean of differences measured on independent datasets.

    Its replicates are the mean of the inputs' replicates (independent datasets resample independently),
    which give its interval and ``p_value``; ``n_images`` and ``n_seeds`` are summed.
    """
    if not diffs:
        raise ValueError("pooled_difference needs at least one difference")
    lengths = [None if d.replicates is None else len(d.replicates) for d in diffs]
    if None in lengths or len(set(lengths)) != 1:
        raise ValueError(
            f"pooled_difference needs every difference to carry bootstrap replicates of one length "
            f"(from paired_difference with one n_boot); got lengths {lengths}"
        )
    reps = np.mean([d.replicates for d in diffs], axis=0)
    low, high = percentile_interval(reps)
    return Difference(
        float(np.mean([d.diff for d in diffs])),
        low,
        high,
        n_images=sum(d.n_images for d in diffs),
        n_seeds=sum(d.n_seeds for d in diffs),
        p_value=bootstrap_p(reps),
        replicates=reps,
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order (monotone in the raw p, capped at 1)."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if np.isnan(p).any():
        raise ValueError("holm: a p-value is NaN")
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def bootstrap_mean_ci(
    values: Sequence[np.ndarray] | np.ndarray,
    *,
    image_ids: Sequence[np.ndarray] | np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds of per-seed means, with a hierarchical 95% bootstrap CI
    (seeds and test images, see ``bootstrap_means``).

    Use it for one method's accuracy (pass 100 x correctness for points) or any per-image score.
    """
    per_seed = _as_seeds(values, "values")
    low, high = percentile_interval(bootstrap_means(per_seed, image_ids=image_ids, n_boot=n_boot, seed=seed))
    return float(np.mean([v.mean() for v in per_seed])), low, high


def score_table(
    correct: Mapping[str, Sequence[np.ndarray]],
    baseline: str | None = None,
    *,
    image_ids: Sequence[np.ndarray] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """The one table of results every study reports: a row per model, in order.

    ``correct[model]`` holds one boolean array per seed, aligned image by image across the models
    (``image_ids`` identify the images, see ``bootstrap_means``). Columns: test ``accuracy`` in points
    with its 95% CI (``low``, ``high``) and ``text``; given a ``baseline`` (one of the models), every
    other model's paired difference to it (``paired_difference``): ``diff``, ``diff_low``,
    ``diff_high``, ``p_value``, ``p_mcnemar`` (one seed), ``p_holm`` (the superiority p Holm-adjusted
    over the models compared, with their equivalence p-values in the family: ``family_words``),
    ``difference`` as text and its ``word``; the baseline's own row has NaN and "".
    """
    if baseline is not None and baseline not in correct:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(correct)}")
    rows = []
    for model, per_seed in correct.items():
        acc, low, high = bootstrap_mean_ci(
            [100.0 * c for c in per_seed], image_ids=image_ids, n_boot=n_boot, seed=seed
        )
        rows.append(
            {"model": model, "accuracy": acc, "low": low, "high": high, "text": interval(acc, low, high, 2)}
        )
    table = pd.DataFrame(rows)
    if baseline is None:
        return table
    others = [m for m in correct if m != baseline]
    diffs = {
        m: paired_difference(correct[m], correct[baseline], image_ids=image_ids, n_boot=n_boot, seed=seed)
        for m in others
    }
    sup, eq, words = family_words(
        [d.diff for d in diffs.values()],
        [d.p_value for d in diffs.values()],
        [d.p_equivalence() for d in diffs.values()],
    )
    adjusted, worded = dict(zip(others, sup)), dict(zip(others, words))
    compared = pd.DataFrame(
        [
            {
                "model": m,
                "diff": d.diff,
                "diff_low": d.low,
                "diff_high": d.high,
                "p_value": d.p_value,
                "p_mcnemar": np.nan if d.p_mcnemar is None else d.p_mcnemar,
                "p_holm": adjusted[m],
                "difference": d.text(),
                "word": worded[m],
            }
            for m, d in diffs.items()
        ],
        columns=[
            "model",
            "diff",
            "diff_low",
            "diff_high",
            "p_value",
            "p_mcnemar",
            "p_holm",
            "difference",
            "word",
        ],
    )
    out = table.merge(compared, on="model", how="left")
    return out.fillna({"difference": "", "word": ""})
