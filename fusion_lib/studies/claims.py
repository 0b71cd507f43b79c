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
difference over the datasets (``pooled``), one test per claim, so it needs no further correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fusion_lib.studies.by_dataset import ByDataset
from fusion_lib.studies.runner import ExperimentResult
from fusion_lib.studies.seed_run import ANCHORS, NON_ADAPTIVE
from fusion_lib.studies.stats import (
    MARGIN,
    VERDICT_WORDS,
    Difference,
    family_words,
    paired_difference,
    pooled_difference,
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


def _row(dataset: str, method: str, baseline: str, d: Difference) -> dict:
    """One comparison as a table row (the verdict word is set once the family is known: ``_adjust``)."""
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


def _adjust(rows: list[dict], words: Mapping[str, str] | None = None) -> pd.DataFrame:
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


def compare_pairs(
    results: ByDataset[ExperimentResult], pairs: Sequence[tuple[str, str]] = C2_PAIRS
) -> pd.DataFrame:
    """One row per dataset and (method, baseline) pair that both ran: the paired difference in points
    with its 95% interval, the bootstrap p-value and its Holm adjustment over every row, and a word."""
    rows = [
        _row(dataset, method, baseline, result.compare(method, baseline))
        for dataset, result in results.items()
        for method, baseline in pairs
        if method in result.methods and baseline in result.methods
    ]
    return _adjust(rows)


def pooled(
    results: ByDataset[ExperimentResult],
    method: str,
    baseline: str,
    *,
    relative: bool = False,
    offset: int = 0,
) -> Difference:
    """``method`` minus ``baseline`` averaged over the datasets with equal weight (independent datasets:
    their bootstrap replicates combine), the deciding number of a claim; ``relative`` and ``offset`` as
    for ``ExperimentResult.compare``."""
    missing = [d for d, r in results.items() if method not in r.methods or baseline not in r.methods]
    if missing or not results:
        raise ValueError(
            f"{method} vs {baseline} needs both methods run on every dataset; missing on {missing}"
        )
    return pooled_difference(
        [r.compare(method, baseline, relative=relative, offset=offset) for r in results.values()]
    )


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


def planned_verdicts(
    results: ByDataset[ExperimentResult],
    pairs: Sequence[tuple[str, str]],
    margin: float,
    reseeds: int = 20,
) -> dict[tuple[str, str], PlannedVerdict]:
    """Each (method, baseline) pair's word from its pooled relative error reduction with the equivalence
    ``margin`` (percent of the baseline's errors), checked against ``reseeds`` bootstraps whose every
    dataset stream is shifted by 1..reseeds: a word that any of them changes is borderline. The loop runs
    reseed by reseed, so that every pair reuses one reseed's draws (memoised by ``stats``)."""
    words: dict[tuple[str, str], list[str]] = {pair: [] for pair in pairs}
    planned: dict[tuple[str, str], Difference] = {}
    for k in range(reseeds + 1):
        for method, baseline in pairs:
            d = pooled(results, method, baseline, relative=True, offset=k)
            if k == 0:
                planned[(method, baseline)] = d
            words[(method, baseline)].append(CLAIM_WORDS[d.word(margin=margin)])
    return {
        pair: PlannedVerdict(w[0], planned[pair], sum(x == w[0] for x in w[1:]), reseeds)
        for pair, w in words.items()
    }


def planned_verdict(
    results: ByDataset[ExperimentResult], method: str, baseline: str, margin: float, reseeds: int = 20
) -> PlannedVerdict:
    """One pair's ``planned_verdicts``."""
    return planned_verdicts(results, [(method, baseline)], margin, reseeds)[(method, baseline)]


def claim_word(d: Difference) -> str:
    """A claim's one word from its deciding difference: supported, not supported, equivalent, inconclusive."""
    return CLAIM_WORDS[d.word()]


def question_table(
    results: ByDataset[ExperimentResult],
    comparisons: pd.DataFrame,
    questions: Mapping[str, tuple[str, str]] = C2_QUESTIONS,
) -> pd.DataFrame:
    """Datasets as rows (and the pooled estimate last), one column per question: the difference with its
    95% interval and its word (Holm-adjusted within ``comparisons``; the pooled row is one test each)."""
    table: dict[str, dict[str, str]] = {}
    for question, (method, baseline) in questions.items():
        part = comparisons[(comparisons["method"] == method) & (comparisons["baseline"] == baseline)]
        col = {r["dataset"]: f"{r['difference (points, 95% CI)']} {r['verdict']}" for _, r in part.iterrows()}
        d = pooled(results, method, baseline)
        col["pooled"] = f"{d.text()} {d.word()}"
        table[f"{question} {method} − {baseline}"] = col
    return pd.DataFrame(table).rename_axis("dataset")


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


def zoo_comparisons(
    results: Mapping[str, ByDataset[ExperimentResult]], pairs: Sequence[tuple[str, str]] = ZOO_PAIRS
) -> pd.DataFrame:
    """``results[zoo][dataset]``: every zoo's comparisons, with a ``zoo`` column, Holm-adjusted as one family."""
    rows = [
        {**_row(dataset, m, b, r.compare(m, b)), "zoo": zoo}
        for zoo, by_dataset in results.items()
        for dataset, r in by_dataset.items()
        for m, b in pairs
        if m in r.methods and b in r.methods
    ]
    return _adjust(rows)


def diversity_effect(
    results: Mapping[str, ByDataset[ExperimentResult]],
    high: str,
    low: str,
    pairs: Sequence[tuple[str, str]] = ZOO_PAIRS,
) -> pd.DataFrame:
    """Per dataset and pair: how much larger ``method - baseline`` is on zoo ``high`` than on zoo ``low``
    (points), with a 95% interval. Both zoos are tested on the same images of the same seeds, so the
    difference of differences is paired image by image; Holm-adjusted over the rows, words larger /
    smaller / equivalent / inconclusive."""
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
            d = paired_difference(gain[high], gain[low], image_ids=hi.test_ids, seed=hi.stream)
            rows.append(_row(dataset, method, baseline, d))
    return _adjust(rows, EFFECT_WORDS)


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


def validation_choices(results: ByDataset[ExperimentResult]) -> pd.DataFrame:
    """Per dataset, what each seed's validation split chose: the strongest fixed fusion (``best_fixed``)
    and the anchor the book's gate is shrunk towards, as "name ×seeds" counts."""

    def counts(result: ExperimentResult, method: str, metric: str, names: Sequence[str]) -> str:
        m = result.metrics
        picked = (
            m[(m["method"] == method) & (m["metric"] == metric)]["value"].astype(int).map(lambda i: names[i])
        )
        return ", ".join(f"{name} ×{n}" for name, n in picked.value_counts().items())

    return pd.DataFrame(
        {
            dataset: {
                "strongest fixed fusion (best_fixed)": counts(
                    r, "best_fixed", "chosen_fixed_index", NON_ADAPTIVE
                ),
                "anchor of moe_thumbnail": counts(r, "moe_thumbnail", "anchor_index", ANCHORS),
            }
            for dataset, r in results.items()
        }
    ).T.rename_axis("dataset")
