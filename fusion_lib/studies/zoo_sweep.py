"""Diversity as a dose-response: many zoos of experts, drawn rather than chosen, and how the gains of
fusion and of per-image adaptivity grow with the zoo's diversity, its strength held fixed.

Two zoos cannot separate diversity from strength: the diverse zoo of the book is also its weakest.
Here ``draw_zoos`` draws many zoos of equal size at random from the candidate backbones (nothing is
chosen on any result), ``run_sweep`` runs the few methods the question needs on each zoo (every
backbone's probes are fit once per seed and shared by every zoo through the fit cache), and
``regress`` fits each gain on mean double fault (diversity) with mean expert accuracy (strength) and a
dataset indicator as covariates, by least squares over zoos, with a bootstrap over zoos for the slope.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.stats import N_BOOT, percentile_interval

SWEEP_METHODS = ("best_single", "best_fixed", "moe_thumbnail", "oracle")
GAINS = {  # a zoo's gain (points) -> (method, reference)
    "fusion gain": ("moe_thumbnail", "best_single"),
    "adaptivity gain": ("moe_thumbnail", "best_fixed"),
    "oracle headroom": ("oracle", "best_single"),
}
COVARIATES = ("mean double fault", "mean expert accuracy")


def draw_zoos(candidates: Sequence[str], n: int, size: int, seed: int) -> list[tuple[str, ...]]:
    """``n`` distinct zoos of ``size`` backbones, drawn uniformly without replacement from every subset of
    ``candidates`` with ``numpy.random.default_rng(seed)`` (all of them when there are at most ``n``)."""
    subsets = list(itertools.combinations(candidates, size))
    if not subsets:
        raise ValueError(f"no zoo of {size} backbones among {len(candidates)} candidates")
    if len(subsets) <= n:
        return subsets
    picks = np.random.default_rng(seed).choice(len(subsets), size=n, replace=False)
    return [subsets[i] for i in sorted(picks)]


def _zoo_row(result, zoo: Sequence[str]) -> dict[str, float]:
    acc = {m: 100 * float(np.mean([c.mean() for c in result.correct(m)])) for m in result.methods}
    pairs = list(itertools.combinations(zoo, 2))
    double_fault = np.mean(
        [
            np.mean((~a.astype(bool)) & (~b.astype(bool)))
            for x, y in pairs
            for a, b in zip(result.correct(f"single:{x}"), result.correct(f"single:{y}"))
        ]
    )
    row = {gain: acc[m] - acc[ref] for gain, (m, ref) in GAINS.items()}
    row["mean double fault"] = 100 * float(double_fault)
    row["mean expert accuracy"] = float(np.mean([acc[f"single:{b}"] for b in zoo]))
    return row


def run_sweep(
    pool: FeatureSet, config: ExperimentConfig, zoos: Sequence[Sequence[str]], progress: bool = True
) -> pd.DataFrame:
    """One row per zoo: its gains and covariates in points (means over ``config.seeds``' test images)."""
    rows = []
    for zoo in tqdm(zoos, desc=f"{pool.dataset} zoos", disable=not progress):
        methods = [f"single:{b}" for b in zoo] + list(SWEEP_METHODS)
        if config.data is None:  # the pool as given, restricted to the zoo
            result = run_experiment(
                replace(config, methods=methods), feature_set=pool.subset_backbones(list(zoo)), progress=False
            )
        else:
            data = replace(config.data, backbones=tuple(zoo))
            result = run_experiment(
                replace(config, data=data, methods=methods), feature_set=pool, progress=False
            )
        rows.append({"dataset": pool.dataset, "zoo": " + ".join(zoo), **_zoo_row(result, zoo)})
    return pd.DataFrame(rows)


def regress(sweep: pd.DataFrame, gain: str, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """Least squares of ``gain`` on the covariates (and one indicator per dataset after the first) over
    the zoos: the slope of mean double fault (points of gain per point of double fault) with a 95%
    percentile interval from ``n_boot`` resamplings of the zoos within each dataset, and R²."""
    datasets = sorted(sweep["dataset"].unique())

    def design(frame: pd.DataFrame) -> np.ndarray:
        cols = [np.ones(len(frame))] + [frame[c].to_numpy(float) for c in COVARIATES]
        cols += [(frame["dataset"] == d).to_numpy(float) for d in datasets[1:]]
        return np.column_stack(cols)

    x, y = design(sweep), sweep[gain].to_numpy(float)
    if len(sweep) < x.shape[1] + 2:
        raise ValueError(f"{len(sweep)} zoos cannot fit {x.shape[1]} coefficients; draw more zoos")
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - np.sum((y - x @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(sweep["dataset"].to_numpy() == d) for d in datasets]
    slopes = np.empty(n_boot)
    for i in range(n_boot):
        rows = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
        slopes[i] = np.linalg.lstsq(x[rows], y[rows], rcond=None)[0][1]
    low, high = percentile_interval(slopes)
    return {
        "gain": gain,
        "slope": float(coef[1]),
        "low": low,
        "high": high,
        "r2": float(r2),
        "zoos": len(sweep),
    }


def slope_table(sweep: pd.DataFrame, gains: Sequence[str] = tuple(GAINS)) -> pd.DataFrame:
    """``regress`` for each gain: its double-fault slope with the 95% interval, and R²."""
    return pd.DataFrame([regress(sweep, g) for g in gains]).set_index("gain")
