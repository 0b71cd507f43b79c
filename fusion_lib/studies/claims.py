"""The paper's claims as paired comparisons: tables, a forest plot and one-line verdicts.

C1: performance and agreement vary across datasets (the agreement study).
C2: a thumbnail mini-CNN gate is enough for a good per-image fusion (this module's default pairs).
C3: label-space word vectors add to the blend (the multimodal study).

Every verdict comes from ``fusion_lib.studies.stats.paired_difference`` through ``ExperimentResult.compare``:
a method beats its baseline only when the paired 95% interval of the difference excludes zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from fusion_lib.studies.runner import ExperimentResult

# (method, baseline): the book's recipe against plain and calibrated averaging, fixed weights, the best
# single backbone, and the control recipes against the book's
C2_PAIRS: tuple[tuple[str, str], ...] = (
    ("moe_thumbnail", "prob_avg"),
    ("moe_thumbnail", "prob_avg_cal"),
    ("moe_thumbnail", "moe_static"),
    ("moe_thumbnail", "best_single"),
    ("moe_thumbnail_joint", "prob_avg"),
    ("moe_thumbnail_noisy", "prob_avg"),
    ("moe_feature", "moe_thumbnail"),
    ("moe_confidence", "moe_thumbnail"),
    ("moe_thumbnail_conf", "moe_thumbnail"),
    ("stacking", "prob_avg"),
)


def compare_pairs(
    results: Mapping[str, "ExperimentResult"], pairs: Sequence[tuple[str, str]] = C2_PAIRS
) -> pd.DataFrame:
    """One row per dataset and (method, baseline) pair that both ran: the paired difference in points,
    its 95% CI, the number of test images and seeds, and whether the interval excludes zero."""
    rows = []
    for dataset, result in results.items():
        for method, baseline in pairs:
            if method not in result.methods or baseline not in result.methods:
                continue
            d = result.compare(method, baseline)
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "baseline": baseline,
                    "diff": d.diff,
                    "low": d.low,
                    "high": d.high,
                    "n_images": d.n_images,
                    "n_seeds": d.n_seeds,
                    "difference (points, 95% CI)": d.text(),
                    "verdict": "better" if d.low > 0 else "worse" if d.high < 0 else "no difference",
                }
            )
    return pd.DataFrame(rows)


def forest_plot(axes: Sequence, comparisons: pd.DataFrame) -> None:
    """One panel per dataset: each pair's difference with its 95% CI, zero marked."""
    datasets = list(dict.fromkeys(comparisons["dataset"]))
    if len(axes) < len(datasets):
        raise ValueError(f"need {len(datasets)} axes (one per dataset), got {len(axes)}")
    for ax, dataset in zip(axes, datasets):
        part = comparisons[comparisons["dataset"] == dataset].iloc[::-1]
        y = np.arange(len(part))
        for yi, (_, r) in zip(y, part.iterrows()):
            colour = {"better": "C2", "worse": "C3", "no difference": "C7"}[r["verdict"]]
            ax.errorbar(
                r["diff"],
                yi,
                xerr=[[r["diff"] - r["low"]], [r["high"] - r["diff"]]],
                fmt="o",
                color=colour,
                capsize=3,
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [f"{m} vs {b}" for m, b in zip(part["method"], part["baseline"])], fontsize=8)
        ax.set(title=dataset, xlabel="accuracy difference (points, paired 95% CI)")
        ax.grid(axis="x", alpha=0.3)


def verdict(comparisons: pd.DataFrame, method: str, baseline: str) -> str:
    """A sentence over every dataset: ``method`` against ``baseline`` with each difference and CI."""
    part = comparisons[(comparisons["method"] == method) & (comparisons["baseline"] == baseline)]
    if part.empty:
        raise ValueError(f"no comparison of {method} with {baseline}; run both methods")
    words = {"better": "better", "worse": "worse", "no difference": "not distinguishable"}
    per = [
        f"{r['dataset']} {r['difference (points, 95% CI)']} points ({words[r['verdict']]})"
        for _, r in part.iterrows()
    ]
    return f"{method} vs {baseline}: " + "; ".join(per)
