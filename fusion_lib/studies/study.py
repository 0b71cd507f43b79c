"""One study over every dataset and zoo of a run: the dataset and the zoo are columns, not dict keys.

A ``Study`` holds one ``StudyRun`` per (dataset, zoo): the ``ExperimentResult`` of the methods run there
and the pool of features it drew its seeds from. ``Study.metrics`` is the tidy frame of all of them
(``dataset, zoo, method, seed, metric, value``), and the questions a chapter asks of the runs are its
methods: the paired comparisons of C2 as one Holm family (``compare_pairs``), a claim's pooled difference
(``pooled``) and planned verdict (``planned_verdicts``), the diversity effect between two zoos, the
validation choices, the share of the averaging-to-oracle gap closed, how the gates use and route to their
experts. Notebook 03, notebook 06 and the own-images report (a one-dataset study) read the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Mapping

import numpy as np
import pandas as pd

from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.claims import (
    C2_PAIRS,
    C2_QUESTIONS,
    CLAIM_WORDS,
    EFFECT_WORDS,
    ZOO_PAIRS,
    PlannedVerdict,
    adjust,
    claim_word,
    comparison_row,
)
from fusion_lib.studies.frontier import experiment_points, pareto_mask
from fusion_lib.studies.gate_analysis import disagreement_table, gap_closed, routing_auc
from fusion_lib.studies.registry import SINGLE_PREFIX
from fusion_lib.studies.runner import ExperimentResult
from fusion_lib.studies.runs import EXPERTS, Runs, StudyRun
from fusion_lib.studies.seed_run import ANCHORS, NON_ADAPTIVE
from fusion_lib.studies.stats import Difference, paired_difference, pooled_difference


class Study(Runs[StudyRun[ExperimentResult]]):
    """Every experiment run of a study, one per dataset and zoo (``runs.Runs``), and the C2 questions."""

    @classmethod
    def of(
        cls,
        datasets: Sequence[str],
        run: Callable[[str], tuple[ExperimentResult, FeatureSet]],
        zoo: str = EXPERTS,
    ) -> Study:
        """``run(dataset)``'s (result, pool) for each of ``datasets``, as one zoo's study."""
        return cls(StudyRun(name, zoo, *run(name)) for name in datasets)

    @property
    def methods(self) -> list[str]:
        """Every method run somewhere in the study, in the order first run."""
        return list(dict.fromkeys(m for r in self.runs for m in r.result.methods))

    def result(self, dataset: str) -> ExperimentResult:
        """The ``ExperimentResult`` on ``dataset`` (of a one-zoo study)."""
        return self.get(dataset).result

    @property
    def metrics(self) -> pd.DataFrame:
        """Every run's metrics in one tidy frame: ``dataset, zoo, method, seed, metric, value``."""
        frames = [r.result.metrics.assign(dataset=r.dataset, zoo=r.zoo) for r in self.runs]
        columns = ["dataset", "zoo", "method", "seed", "metric", "value"]
        return pd.concat(frames, ignore_index=True)[columns]

    def result_tables(self, baseline: str = "best_fixed") -> dict[str, pd.DataFrame]:
        """Per run, a caption naming its dataset, seeds and test images, and its table of every method
        against ``baseline`` (``ExperimentResult.table``, backbone names shortened)."""
        out = {}
        for run in self.runs:
            result = run.result
            n_test = len(result.labels[result.seeds[0]]["test"])
            caption = f"**{run.dataset}**: {len(result.seeds)} seeds x {n_test:,} test images"
            out[caption] = result.table(baseline).rename(index=short_name)
        return out

    def best_fusion(self, dataset: str) -> tuple[str, float, float, float]:
        """The fusion run on ``dataset`` with the best mean validation accuracy (never a single backbone, one
        fit on validation, nor the oracle: ``ExperimentResult.best_on_validation``), and its test accuracy
        with its 95% CI in points."""
        result = self.result(dataset)
        fusions = [m for m in result.methods if not m.startswith(SINGLE_PREFIX) and m != "best_single"]
        best = result.best_on_validation(fusions)
        return (best, *result.accuracy_ci(best))

    # --- C2: paired comparisons, pooled claims, planned verdicts -------------------------------------

    def compare_pairs(self, pairs: Sequence[tuple[str, str]] = C2_PAIRS) -> pd.DataFrame:
        """One row per run and (method, baseline) pair that both ran there: the paired difference in
        points with its 95% interval, the bootstrap p-value and its Holm adjustment over every row (one
        family, all zoos together), and a word; ``zoo`` says where each row ran."""
        rows = [
            {**comparison_row(r.dataset, m, b, r.result.compare(m, b)), "zoo": r.zoo}
            for r in self.runs
            for m, b in pairs
            if m in r.result.methods and b in r.result.methods
        ]
        return adjust(rows)

    def pooled(self, method: str, baseline: str, *, relative: bool = False, offset: int = 0) -> Difference:
        """``method`` minus ``baseline`` averaged over the datasets with equal weight (independent datasets:
        their bootstrap replicates combine), the deciding number of a claim; ``relative`` and ``offset`` as
        for ``ExperimentResult.compare``."""
        runs = self.one_zoo("a pooled difference")
        missing = [
            r.dataset for r in runs if method not in r.result.methods or baseline not in r.result.methods
        ]
        if missing:
            raise ValueError(
                f"{method} vs {baseline} needs both methods run on every dataset; missing on {missing}"
            )
        return pooled_difference(
            [r.result.compare(method, baseline, relative=relative, offset=offset) for r in runs]
        )

    def frontier(self) -> pd.DataFrame:
        """Every method's and every best subset average's point of each run (``frontier.experiment_points``:
        GFLOPs per image, test accuracy with its CI, backbones shortened), with ``on_frontier``: whether
        it is on that run's Pareto frontier of accuracy against compute."""

        def one(run: StudyRun[ExperimentResult]) -> pd.DataFrame:
            short = {b: short_name(b) for b in run.pool.backbones}
            points = experiment_points(run.result, run.pool, short)
            return points.assign(on_frontier=pareto_mask(points["gflops"], points["accuracy"]))

        return self.frame(one)

    def c2_summary(self, comparisons: pd.DataFrame) -> dict[str, str]:
        """What a text cites of C2: each question's pooled word and difference (``fusion-word``,
        ``fusion-number``, ``adapt-word``, ``adapt-number``) and the number of comparisons read (``n-read``,
        the rows of ``comparisons``)."""
        values = {}
        for key, (a, b) in zip(("fusion", "adapt"), C2_QUESTIONS.values()):
            d = self.pooled(a, b)
            values[f"{key}-word"] = claim_word(d)
            values[f"{key}-number"] = d.text()
        values["n-read"] = str(len(comparisons))
        return values

    def planned_verdicts(
        self, pairs: Sequence[tuple[str, str]], margin: float, reseeds: int = 20
    ) -> dict[tuple[str, str], PlannedVerdict]:
        """Each (method, baseline) pair's word from its pooled relative error reduction with the
        equivalence ``margin`` (percent of the baseline's errors), checked against ``reseeds`` bootstraps
        whose every dataset stream is shifted by 1..reseeds: a word that any of them changes is
        borderline. The loop runs reseed by reseed, so that every pair reuses one reseed's draws
        (memoised by ``stats``)."""
        words: dict[tuple[str, str], list[str]] = {pair: [] for pair in pairs}
        planned: dict[tuple[str, str], Difference] = {}
        for k in range(reseeds + 1):
            for method, baseline in pairs:
                d = self.pooled(method, baseline, relative=True, offset=k)
                if k == 0:
                    planned[(method, baseline)] = d
                words[(method, baseline)].append(CLAIM_WORDS[d.word(margin=margin)])
        return {
            pair: PlannedVerdict(w[0], planned[pair], sum(x == w[0] for x in w[1:]), reseeds)
            for pair, w in words.items()
        }

    def question_table(
        self,
        comparisons: pd.DataFrame,
        questions: Mapping[str, tuple[str, str]] = C2_QUESTIONS,
        pooled: bool = True,
    ) -> pd.DataFrame:
        """Datasets as rows (and, with ``pooled``, the pooled estimate last), one column per question: the
        difference with its 95% interval and its word (Holm-adjusted within ``comparisons``; the pooled
        row is one test each)."""
        table: dict[str, dict[str, str]] = {}
        for question, (method, baseline) in questions.items():
            part = comparisons[(comparisons["method"] == method) & (comparisons["baseline"] == baseline)]
            col = {
                r["dataset"]: f"{r['difference (points, 95% CI)']} {r['verdict']}" for _, r in part.iterrows()
            }
            if pooled:
                d = self.pooled(method, baseline)
                col["pooled"] = f"{d.text()} {d.word()}"
            table[f"{question} {method} − {baseline}"] = col
        return pd.DataFrame(table).rename_axis("dataset")

    def diversity_effect(
        self, high: str, low: str, pairs: Sequence[tuple[str, str]] = ZOO_PAIRS
    ) -> pd.DataFrame:
        """Per dataset and pair: how much larger ``method - baseline`` is on zoo ``high`` than on zoo
        ``low`` (points), with a 95% interval. Both zoos are tested on the same images of the same seeds,
        so the difference of differences is paired image by image; Holm-adjusted over the rows, words
        larger / smaller / equivalent / inconclusive."""
        lows = {r.dataset: r.result for r in self.zoo(low).runs}
        rows = []
        for run in self.zoo(high).runs:
            hi, lo = run.result, lows[run.dataset]
            if hi.seeds != lo.seeds or any(
                not np.array_equal(hi.labels[s]["test"], lo.labels[s]["test"]) for s in hi.seeds
            ):
                raise ValueError(
                    f"{run.dataset}: zoos {high!r} and {low!r} were not tested on the same images"
                )
            for method, baseline in pairs:
                gain = {
                    zoo: [a.astype(int) - b for a, b in zip(r.correct(method), r.correct(baseline))]
                    for zoo, r in ((high, hi), (low, lo))
                }
                d = paired_difference(gain[high], gain[low], image_ids=hi.test_ids, seed=hi.stream)
                rows.append(comparison_row(run.dataset, method, baseline, d))
        return adjust(rows, EFFECT_WORDS)

    def validation_choices(self) -> pd.DataFrame:
        """Per dataset, what each seed's validation split chose: the strongest fixed fusion
        (``best_fixed``) and the anchor the book's gate is shrunk towards, as "name ×seeds" counts."""

        def counts(result: ExperimentResult, method: str, metric: str, names: Sequence[str]) -> str:
            m = result.metrics
            chosen = m[(m["method"] == method) & (m["metric"] == metric)]["value"].astype(int)
            return ", ".join(
                f"{name} ×{n}" for name, n in chosen.map(lambda i: names[i]).value_counts().items()
            )

        return pd.DataFrame(
            {
                r.dataset: {
                    "strongest fixed fusion (best_fixed)": counts(
                        r.result, "best_fixed", "chosen_fixed_index", NON_ADAPTIVE
                    ),
                    "anchor of moe_thumbnail": counts(r.result, "moe_thumbnail", "anchor_index", ANCHORS),
                }
                for r in self.one_zoo("validation choices")
            }
        ).T.rename_axis("dataset")

    # --- how the gates use their experts ---------------------------------------------------------------

    def gap_closed(self, methods: Sequence[str]) -> pd.DataFrame:
        """Per dataset and seed, the share of the averaging-to-oracle gap each of ``methods`` (those run)
        closes (``gate_analysis.gap_closed``)."""
        self.one_zoo("the gap closed")

        def one(run: StudyRun[ExperimentResult]) -> pd.DataFrame:
            m = run.result.metrics
            return gap_closed(m[m["metric"] == "accuracy"], [x for x in methods if x in run.result.methods])

        return self.frame(one)

    def mean_metrics(self, metrics: Sequence[str]) -> pd.DataFrame:
        """The mean over seeds of each of ``metrics``, one row per dataset and method that reports any,
        one column per metric (in the order given)."""
        m = self.metrics
        m = m[m["metric"].isin(list(metrics))]
        wide = m.pivot_table(index=["dataset", "method"], columns="metric", values="value", sort=False)
        return wide.reindex(columns=list(metrics)).reset_index()

    def routing_aucs(self, seed: int, train: TrainConfig) -> pd.DataFrame:
        """How well each gate input predicts that each expert is right (``gate_analysis.routing_auc``, fit
        with ``train``) on ``seed``'s split, per dataset, experts shortened."""
        auc = self.frame(lambda run: routing_auc(run.pool.draw(seed), run.result.experts[seed], seed, train))
        return auc.assign(expert=auc["expert"].map(short_name))

    def routing(self, methods: Sequence[str]) -> pd.DataFrame:
        """How each of ``methods`` (the gated ones run) routes on the test images where the experts
        disagree (``gate_analysis.disagreement_table``), per dataset."""
        self.one_zoo("routing")
        return self.frame(
            lambda r: disagreement_table(r.result, [m for m in methods if m in r.result.methods])
        )
