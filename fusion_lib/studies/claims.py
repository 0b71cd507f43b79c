"""The paper's claims as paired comparisons: tables, forest plots and one word per claim.

- C1, performance and agreement vary across datasets: the agreement study, ``agreement.c1_verdict``.
- C2, per-image fusion of the backbones with a thumbnail gate, asked as two questions, never mixed.
  Does fusion help? The book's recipe ``moe_thumbnail`` against ``best_single``, the backbone best on
  validation. Does per-image adaptivity help? ``moe_thumbnail`` against ``best_fixed``, the strongest
  non-adaptive fusion on validation (averaging, calibrated averaging, static weights, the uniform
  mixture, stacking or concatenation).
- C3, label-space word vectors add to the blend: the multimodal study, ``label_study.c3_verdict``.

Every difference is ``ExperimentResult.compare``: accuracy points with a 95% interval from the
hierarchical bootstrap over seeds and test images (``fusion_lib.studies.stats``). A frame of comparisons
is one family: its p-values are Holm-adjusted over every row it holds, and each row gets one word,
``better``, ``worse``, ``equivalent`` (the interval lies inside the margin of
``stats.MARGIN`` points) or ``inconclusive``. A claim's deciding number is the equal-weight mean of its
difference over the datasets (``study.Study.pooled``), one test per claim, so it needs no further correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fusion_lib.studies.stats import (
    MARGIN,
    VERDICT_WORDS,
    Difference,
    family_words,
)

# C2's two questions: (method, baseline)
C2_QUESTIONS: dict[str, tuple[str, str]] = {
    "Does fusion help?": ("moe_thumbnail", "best_single"),
    "Does per-image adaptivity help?": ("moe_thumbnail", "best_fixed"),
}
# The comparisons notebook 03 reads (one Holm family): the two questions, what the strongest fixed
# fusion gains alone, the book's recipe against the fixed fusions it could be mistaken for, and the
# other gates against the strongest fixed fusion
C2_PAIRS: tuple[tuple[str, str], ...] = (
    *C2_QUESTIONS.values(),
    ("best_fixed", "best_single"),
    ("moe_thumbnail", "prob_avg"),
    ("moe_thumbnail", "moe_static"),
    ("moe_cheap_feature", "best_fixed"),
    ("moe_feature", "best_fixed"),
    ("moe_thumbnail_conf", "best_fixed"),
    ("moe_thumbnail_joint", "best_fixed"),
)
# A claim's word from its deciding difference's word
CLAIM_WORDS = {
    "better": "supported",
    "worse": "not supported",
    "equivalent": "equivalent",
    "inconclusive": "inconclusive",
}
COLOURS = {"better": "C2", "worse": "C3", "equivalent": "C0", "inconclusive": "C7"}


def comparison_row(dataset: str, method: str, baseline: str, d: Difference) -> dict:
    """One comparison as a table row (the verdict word is set once the family is known: ``adjust``)."""
    return {
        "dataset": dataset,
        "method": method,
        "baseline": baseline,
        "diff": d.diff,
        "low": d.low,
        "high": d.high,
        "p_value": d.p_value,
        "p_equivalence": d.p_equivalence(),
        "n_images": d.n_images,
        "n_seeds": d.n_seeds,
        "difference (points, 95% CI)": d.text(),
    }


def adjust(rows: list[dict], words: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The rows as one family (``stats.family_words``): Holm-adjusted superiority p-values (``p_holm``)
    and each row's word (``words`` renames them)."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["p_holm"], _, frame["verdict"] = family_words(
        frame["diff"], frame["p_value"], frame["p_equivalence"]
    )
    if words:
        frame["verdict"] = frame["verdict"].map(lambda w: words.get(w, w))
    return frame


@dataclass(frozen=True)
class PlannedVerdict:
    """A claim decided by a planned test: its word, the deciding difference, and how many of ``reseeds``
    reseeded bootstraps give the same word (``borderline`` when any does not)."""

    word: str
    difference: Difference
    agreeing: int
    reseeds: int

    @property
    def borderline(self) -> bool:
        return self.agreeing < self.reseeds

    def text(self) -> str:
        """``supported: +12.3 [+4.1, +20.5] % of the reference's errors (20 of 20 reseeds agree)``."""
        flag = ", borderline" if self.borderline else ""
        return (
            f"{self.word}: {self.difference.text()} % of the reference's errors "
            f"({self.agreeing} of {self.reseeds} reseeds agree{flag})"
        )


def claim_word(d: Difference) -> str:
    """A claim's one word from its deciding difference: supported, not supported, equivalent, inconclusive."""
    return CLAIM_WORDS[d.word()]


def _errorbar(ax, x: float, low: float, high: float, y: float, word: str, **kw) -> None:
    ax.errorbar(x, y, xerr=[[x - low], [high - x]], fmt="o", color=COLOURS[word], capsize=3, **kw)


def forest_plot(axes: Sequence, comparisons: pd.DataFrame, margin: float = MARGIN) -> None:
    """One panel per dataset: each pair's difference with its 95% CI, coloured by its word (green better,
    red worse, blue equivalent, grey inconclusive), zero and the equivalence margin marked."""
    datasets = list(dict.fromkeys(comparisons["dataset"]))
    if len(axes) < len(datasets):
        raise ValueError(f"need {len(datasets)} axes (one per dataset), got {len(axes)}")
    for ax, dataset in zip(axes, datasets):
        part = comparisons[comparisons["dataset"] == dataset].iloc[::-1]
        y = np.arange(len(part))
        for yi, (_, r) in zip(y, part.iterrows()):
            _errorbar(ax, r["diff"], r["low"], r["high"], yi, r["verdict"])
        ax.axvspan(-margin, margin, color="C0", alpha=0.08, linewidth=0)
        ax.axvline(0, color="black", linewidth=0.8)
        spec = ax.get_subplotspec()
        names = [f"{m} vs {b}" for m, b in zip(part["method"], part["baseline"])]
        ax.set_yticks(y, names if spec is None or spec.is_first_col() else [], fontsize=9)
        ax.set(title=dataset, xlabel="accuracy difference (points, 95% CI)")
        ax.grid(axis="x", alpha=0.3)


# C2 on each zoo of experts: the two questions, and how much room each zoo left (the oracle)
ZOO_QUESTIONS: dict[tuple[str, str], str] = {
    **{pair: question for question, pair in C2_QUESTIONS.items()},
    ("oracle", "best_single"): "Room left: the oracle over the best single",
    ("oracle", "best_fixed"): "Room left: the oracle over the best fixed fusion",
}
ZOO_PAIRS: tuple[tuple[str, str], ...] = tuple(ZOO_QUESTIONS)
ZOO_METHODS: tuple[str, ...] = tuple(dict.fromkeys(m for pair in ZOO_PAIRS for m in pair))
EFFECT_WORDS = {"better": "larger", "worse": "smaller"}


def zoo_forest_plot(axes: Sequence, comparisons: pd.DataFrame) -> None:
    """One panel per dataset: each pair's difference with its 95% CI on every zoo, zoos in colour; a filled
    marker is a verdict (better, worse or equivalent), a hollow one is inconclusive."""
    datasets = list(dict.fromkeys(comparisons["dataset"]))
    zoos = list(dict.fromkeys(comparisons["zoo"]))
    if len(axes) < len(datasets):
        raise ValueError(f"need {len(datasets)} axes (one per dataset), got {len(axes)}")
    for ax, dataset in zip(axes, datasets):
        part = comparisons[comparisons["dataset"] == dataset]
        labels = list(dict.fromkeys(f"{m} vs {b}" for m, b in zip(part["method"], part["baseline"])))[::-1]
        for z, zoo in enumerate(zoos):
            for _, r in part[part["zoo"] == zoo].iterrows():
                row = labels.index(f"{r['method']} vs {r['baseline']}")
                ax.errorbar(
                    r["diff"],
                    row + 0.18 * (1 - 2 * z) / max(1, len(zoos) - 1),
                    xerr=[[r["diff"] - r["low"]], [r["high"] - r["diff"]]],
                    fmt="o",
                    color=f"C{z}",
                    mfc=f"C{z}" if r["verdict"] != "inconclusive" else "white",
                    capsize=3,
                    label=zoo if row == 0 else None,
                )
        ax.axvspan(-MARGIN, MARGIN, color="grey", alpha=0.1, linewidth=0)
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


def zoo_verdict(comparisons: pd.DataFrame, effect: pd.DataFrame, high: str, low: str) -> pd.DataFrame:
    """C2 across zoos at a glance: one row per question (``ZOO_QUESTIONS``), how many datasets got each
    (Holm-adjusted) word on zoo ``high`` and on zoo ``low``, and on how many the difference is larger
    on ``high`` than on ``low`` (``diversity_effect``)."""

    def tally(part: pd.DataFrame) -> str:
        counts = part["verdict"].value_counts()
        return ", ".join(f"{counts[w]} {w}" for w in VERDICT_WORDS if w in counts) + f" (of {len(part)})"

    rows = []
    for (method, baseline), question in ZOO_QUESTIONS.items():
        pair = (comparisons["method"] == method) & (comparisons["baseline"] == baseline)
        grown = effect[(effect["method"] == method) & (effect["baseline"] == baseline)]
        rows.append(
            {
                "question": question,
                "comparison": f"{method} vs {baseline}",
                **{
                    f"{zoo} zoo": tally(comparisons[pair & (comparisons["zoo"] == zoo)])
                    for zoo in (high, low)
                },
                f"larger on {high}": f"{int((grown['verdict'] == 'larger').sum())} of {len(grown)}",
            }
        )
    return pd.DataFrame(rows).set_index(["question", "comparison"])


def zoo_table(comparisons: pd.DataFrame, effect: pd.DataFrame, high: str, low: str) -> pd.DataFrame:
    """The book's table of C2 across zoos: one row per dataset and comparison, each zoo's difference with
    its interval and word, and the diversity effect (``high`` minus ``low``)."""

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(
            comparison=frame["method"] + " vs " + frame["baseline"],
            shown=frame["difference (points, 95% CI)"] + " " + frame["verdict"],
        )

    wide = keyed(comparisons).pivot_table(
        index=["dataset", "comparison"], columns="zoo", values="shown", aggfunc="first", sort=False
    )
    wide = wide.reindex(columns=[low, high])
    wide[f"{high} − {low}"] = keyed(effect).set_index(["dataset", "comparison"])["shown"]
    return wide.rename_axis(columns=None)
