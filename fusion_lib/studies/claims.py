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
    from fusion_lib.studies.stats import Difference

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
            rows.append(_row(dataset, method, baseline, result.compare(method, baseline)))
    return pd.DataFrame(rows)


def _row(
    dataset: str, method: str, baseline: str, d: "Difference", words: tuple[str, str] = ("better", "worse")
) -> dict:
    """One comparison as a table row; the verdict says whether the interval lies above or below zero."""
    return {
        "dataset": dataset,
        "method": method,
        "baseline": baseline,
        "diff": d.diff,
        "low": d.low,
        "high": d.high,
        "n_images": d.n_images,
        "n_seeds": d.n_seeds,
        "difference (points, 95% CI)": d.text(),
        "verdict": words[0] if d.low > 0 else words[1] if d.high < 0 else "no difference",
    }


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


# C2 on each zoo of experts: does fusion help (against the best single backbone), does per-image
# adaptivity help (against fixed weights and plain averaging), and how much room there was (the oracle)
ZOO_PAIRS: tuple[tuple[str, str], ...] = (
    ("moe_thumbnail", "best_single"),
    ("moe_thumbnail", "prob_avg"),
    ("moe_thumbnail", "moe_static"),
    ("stacking", "prob_avg"),
    ("oracle", "best_single"),
    ("oracle", "prob_avg"),
)
ZOO_METHODS: tuple[str, ...] = tuple(dict.fromkeys(m for pair in ZOO_PAIRS for m in pair))


def zoo_comparisons(
    results: Mapping[str, Mapping[str, "ExperimentResult"]], pairs: Sequence[tuple[str, str]] = ZOO_PAIRS
) -> pd.DataFrame:
    """``results[zoo][dataset]``: ``compare_pairs`` of every zoo, with a ``zoo`` column."""
    return pd.concat(
        [compare_pairs(by_dataset, pairs).assign(zoo=zoo) for zoo, by_dataset in results.items()],
        ignore_index=True,
    )


def diversity_effect(
    results: Mapping[str, Mapping[str, "ExperimentResult"]],
    high: str,
    low: str,
    pairs: Sequence[tuple[str, str]] = ZOO_PAIRS,
) -> pd.DataFrame:
    """Per dataset and pair: how much larger ``method - baseline`` is on zoo ``high`` than on zoo ``low``
    (points), with a paired 95% interval. Both zoos are tested on the same images of the same seeds, so the
    difference of differences is paired image by image."""
    from fusion_lib.studies.stats import paired_difference

    rows = []
    for dataset, hi in results[high].items():
        lo = results[low][dataset]
        if hi.seeds != lo.seeds or any(
            not np.array_equal(hi.labels[s]["test"], lo.labels[s]["test"]) for s in hi.seeds
        ):
            raise ValueError(f"{dataset}: zoos {high!r} and {low!r} were not tested on the same images")
        for method, baseline in pairs:
            gain = {
                zoo: [a.astype(int) - b for a, b in zip(r.correct(method), r.correct(baseline))]
                for zoo, r in ((high, hi), (low, lo))
            }
            d = paired_difference(gain[high], gain[low])
            rows.append(_row(dataset, method, baseline, d, ("larger", "smaller")))
    return pd.DataFrame(rows)


def zoo_forest_plot(axes: Sequence, comparisons: pd.DataFrame) -> None:
    """One panel per dataset: each pair's difference with its 95% CI on every zoo, zoos in colour; a filled
    marker excludes zero, a hollow one does not."""
    datasets = list(dict.fromkeys(comparisons["dataset"]))
    zoos = list(dict.fromkeys(comparisons["zoo"]))
    if len(axes) < len(datasets):
        raise ValueError(f"need {len(datasets)} axes (one per dataset), got {len(axes)}")
    for ax, dataset in zip(axes, datasets):
        part = comparisons[comparisons["dataset"] == dataset]
        labels = list(dict.fromkeys(f"{m} vs {b}" for m, b in zip(part["method"], part["baseline"])))[::-1]
        for z, zoo in enumerate(zoos):
            for _, r in part[part["zoo"] == zoo].iterrows():
                y = labels.index(f"{r['method']} vs {r['baseline']}") + 0.18 * (1 - 2 * z) / max(
                    1, len(zoos) - 1
                )
                ax.errorbar(
                    r["diff"],
                    y,
                    xerr=[[r["diff"] - r["low"]], [r["high"] - r["diff"]]],
                    fmt="o",
                    color=f"C{z}",
                    mfc=f"C{z}" if r["verdict"] != "no difference" else "white",
                    capsize=3,
                    label=zoo if labels.index(f"{r['method']} vs {r['baseline']}") == 0 else None,
                )
        ax.axvline(0, color="black", linewidth=0.8)
        # every panel lists the same comparisons: name them once per row of panels
        spec = ax.get_subplotspec()
        ax.set_yticks(range(len(labels)), labels if spec is None or spec.is_first_col() else [], fontsize=9)
        ax.set(title=dataset, xlabel="accuracy difference (points, 95% CI)")
        ax.grid(axis="x", alpha=0.3)
    # above the panels, where it covers no interval whatever the data
    handles, names = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(
        handles, names, title="zoo", fontsize=9, loc="lower center", ncol=len(zoos), bbox_to_anchor=(0.5, 1.0)
    )


def zoo_verdict(comparisons: pd.DataFrame, effect: pd.DataFrame, high: str, low: str) -> str:
    """C2 across zoos in three sentences, counting datasets: does fusion help (the book's gate against the
    best single backbone), does per-image weighting help (against plain averaging and fixed weights), each
    on both zoos, and do the oracle's room and the gate's gain grow from zoo ``low`` to zoo ``high``."""

    def wins(method: str, baseline: str) -> str:
        counts = []
        for zoo in (high, low):
            part = comparisons[
                (comparisons["zoo"] == zoo)
                & (comparisons["method"] == method)
                & (comparisons["baseline"] == baseline)
            ]
            counts.append(f"{int((part['verdict'] == 'better').sum())} of {len(part)}")
        return f"on {counts[0]} datasets with the {high} zoo and {counts[1]} with the {low} one"

    def grows(method: str, baseline: str) -> str:
        part = effect[(effect["method"] == method) & (effect["baseline"] == baseline)]
        return f"{int((part['verdict'] == 'larger').sum())} of {len(part)}"

    return (
        f"Does fusion help? moe_thumbnail beats the best single backbone {wins('moe_thumbnail', 'best_single')}. "
        f"Does per-image weighting help? It beats prob_avg {wins('moe_thumbnail', 'prob_avg')}, and moe_static "
        f"{wins('moe_thumbnail', 'moe_static')}. From the {low} to the {high} zoo, the oracle's gain over the "
        f"best single backbone grows significantly on {grows('oracle', 'best_single')} datasets (over averaging "
        f"on {grows('oracle', 'prob_avg')}), and the gate's gain over the best single on "
        f"{grows('moe_thumbnail', 'best_single')} (over averaging on {grows('moe_thumbnail', 'prob_avg')})."
    )


def zoo_table(comparisons: pd.DataFrame, effect: pd.DataFrame, high: str, low: str) -> pd.DataFrame:
    """The book's table of C2 across zoos: one row per dataset and comparison, each zoo's difference with
    its interval, and the diversity effect (``high`` minus ``low``)."""

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(comparison=frame["method"] + " vs " + frame["baseline"])

    wide = keyed(comparisons).pivot_table(
        index=["dataset", "comparison"],
        columns="zoo",
        values="difference (points, 95% CI)",
        aggfunc="first",
        sort=False,
    )
    wide = wide.reindex(columns=[low, high])
    wide[f"{high} - {low}"] = keyed(effect).set_index(["dataset", "comparison"])[
        "difference (points, 95% CI)"
    ]
    return wide.rename_axis(columns=None)
