"""The label-space study over every dataset of a run: each dataset's inputs and results in one record.

A ``LabelRun`` holds what one dataset's label-space study reads and gives: its pool of features, its
experiment config (with the aliases its class names need), its class vectors and, once run, its
``LabelStudy``. ``LabelStudies`` holds one per dataset, in order (a ``runs.Runs``); the questions notebook 05 and the
own-images report ask of them are its methods: the tidy frames of every dataset (``frames``), the class
names' words and similarities, every head's and fusion's accuracy with its interval, the blend and gate
weights, C3's comparisons as one Holm family and its pooled verdict, which datasets have too few classes
for a question, and the datasets that share their class names (and so their vectors). ``ZeroShots`` is
the zero-shot study of the datasets that have enough classes for one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.fusion.label_space import class_vectors
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_study import (
    C3_COMPARISONS,
    FAMILIES,
    FUSION_METHODS,
    MIN_SPACE_CLASSES,
    MIN_ZERO_SHOT_CLASSES,
    N_HELD_OUT,
    ZERO_SHOT_MEASURES,
    LabelStudy,
    ZeroShotStudy,
    accuracy_ci,
    c3_verdict,
    class_name_table,
    compare,
    cosine_matrix,
    run_label_study,
    run_zero_shot,
)
from fusion_lib.studies.runs import EXPERTS, Runs
from fusion_lib.studies.stats import Difference, family_words, interval


@dataclass(frozen=True)
class LabelRun:
    """One dataset of the label-space study: what it reads and, once run, its ``study``."""

    dataset: str
    pool: FeatureSet
    config: ExperimentConfig
    class_vecs: np.ndarray
    study: LabelStudy | None = None

    @property
    def zoo(self) -> str:
        """The label-space study reads the profile's own experts."""
        return EXPERTS

    @property
    def result(self) -> LabelStudy:
        """The run's ``LabelStudy`` (``LabelStudies.run`` makes it)."""
        if self.study is None:
            raise ValueError(f"{self.dataset}: the label study has not run yet; call LabelStudies.run()")
        return self.study


class LabelStudies(Runs[LabelRun]):
    """One ``LabelRun`` per dataset, in the order given (``runs.Runs``), and the questions of C3."""

    @classmethod
    def prepare(cls, pools: Iterable[tuple[str, FeatureSet, ExperimentConfig]], vectors: Any) -> LabelStudies:
        """Each (dataset, pool, config) with its class vectors from ``vectors`` (through the config's
        aliases)."""
        return cls(
            LabelRun(name, pool, config, class_vectors(pool.class_names, vectors, config.aliases))
            for name, pool, config in pools
        )

    def run(self, progress: bool = False) -> LabelStudies:
        """The same, with every dataset's ``LabelStudy`` (``label_study.run_label_study``)."""
        return LabelStudies(
            replace(r, study=run_label_study(r.pool, r.class_vecs, r.config, progress=progress))
            for r in self.runs
        )

    def splits(self) -> pd.DataFrame:
        """Classes, images per split and whether the test split is fixed, per dataset."""
        rows = [
            {
                "dataset": r.dataset,
                "classes": r.pool.n_classes,
                "train / val / test per seed": " / ".join(f"{len(r.pool.labels[s]):,}" for s in SPLITS),
                "test split": "official, fixed" if r.pool.fixed_test else "drawn per seed",
            }
            for r in self.runs
        ]
        return pd.DataFrame(rows).set_index("dataset")

    def groups(self) -> dict[tuple[str, ...], list[LabelRun]]:
        """The runs grouped by identical class names (they share their class vectors)."""
        groups: dict[tuple[str, ...], list[LabelRun]] = {}
        for r in self.runs:
            groups.setdefault(tuple(r.pool.class_names), []).append(r)
        return groups

    def with_classes(self, need: int, why: str) -> tuple[LabelStudies, list[str]]:
        """The runs with at least ``need`` classes, and a line for each other dataset saying that it is
        skipped and why (``why`` a question needs ``need`` classes)."""
        few = [r for r in self.runs if r.pool.n_classes < need]
        notes = [f"{r.dataset}: skipped ({r.pool.n_classes} classes; {why}, so it needs {need})" for r in few]
        return self.without(r.dataset for r in few), notes

    def word_tables(self, vectors: Any) -> dict[str, pd.DataFrame]:
        """Per group of datasets sharing their class names, a caption naming the aliases used and the table
        of each class's tokens, the words that got a vector and their nearest words
        (``label_study.class_name_table``)."""
        out = {}
        for names, runs in self.groups().items():
            aliases = runs[0].config.aliases
            caption = f"{_members(runs)}: aliases used {aliases or 'none'}"
            out[caption] = class_name_table(list(names), runs[0].class_vecs, vectors, aliases).set_index(
                "class"
            )
        return out

    def alias_effects(self, vectors: Any) -> tuple[pd.DataFrame, list[str]]:
        """What each alias changes: for every aliased class, the words used, their nearest words and the
        most similar other class, without and with the aliases; and a note for a variant that cannot be
        built (a word with no vector at all, so the alias is required), or "no aliases apply"."""
        rows, notes = [], []
        for names, runs in self.groups().items():
            aliases, members = runs[0].config.aliases, _members(runs)
            for variant, used in (("without aliases", {}), ("with aliases", aliases)):
                if not aliases:
                    continue
                try:
                    vecs = class_vectors(list(names), vectors, used)
                except KeyError as err:
                    notes.append(f"{members} {variant}: {err}")
                    continue
                sim = cosine_matrix(vecs, names)
                table = class_name_table(list(names), vecs, vectors, used)
                for i, name in enumerate(names):
                    if not [k for k in aliases if k == name or k in table["tokens"][i].split()]:
                        continue
                    other = sim.loc[name].drop(name)
                    rows.append(
                        {
                            "datasets": members,
                            "class": name,
                            "variant": variant,
                            "words used": table["words used"][i],
                            "nearest words": table["nearest words"][i],
                            "most similar other class": f"{other.idxmax()} ({other.max():.2f})",
                        }
                    )
        columns = ["datasets", "class", "variant", "words used", "nearest words", "most similar other class"]
        if not rows:
            notes.append("no aliases apply")
        return pd.DataFrame(rows, columns=columns).set_index(["datasets", "class", "variant"]), notes

    def class_similarities(self) -> dict[str, pd.DataFrame]:
        """The cosine matrix of each group's class vectors, keyed by the group's datasets."""
        return {
            _members(runs): cosine_matrix(runs[0].class_vecs, names) for names, runs in self.groups().items()
        }

    # --- accuracies, differences and weights ------------------------------------------------------------

    def expert_accuracy(self, backbones: Sequence[str]) -> pd.DataFrame:
        """Test accuracy with its 95% CI of every single-backbone head of ``FAMILIES`` (visual probe,
        label-space head, random-vector head) on ``backbones``, and of each family's average, per
        dataset; ``backbone`` shortened."""

        def one(r: LabelRun) -> pd.DataFrame:
            info = r.result.accuracy[["model", "family", "backbone"]].drop_duplicates()
            info = info[info["family"].isin(FAMILIES) & info["backbone"].isin([*backbones, "average"])]
            return accuracy_ci(r.result, info["model"].tolist()).merge(info, on="model")

        out = self.frame(one)
        return out.assign(backbone=out["backbone"].map(short_name))

    def expert_table(self, ci: pd.DataFrame, backbones: Sequence[str]) -> pd.DataFrame:
        """``expert_accuracy``'s ``ci`` with the experts as rows and (dataset, family) as columns."""
        return (
            ci.pivot(index="backbone", columns=["dataset", "family"], values="text")
            .reindex(
                index=expert_rows(backbones), columns=pd.MultiIndex.from_product([self.datasets, FAMILIES])
            )
            .rename_axis(index="backbone", columns=["dataset", "test accuracy, % [95% CI]"])
        )

    def head_differences(self, backbones: Sequence[str]) -> pd.DataFrame:
        """Each label-space head against the visual probe and the random-vector head of its backbone, and
        the label-space average against probability averaging and the random-vector average (points, 95%
        CI): (model, against) rows, one column per dataset."""
        pairs = [(f"label:{b}", f"{p}:{b}") for b in backbones for p in ("probe", "random")]
        pairs += [("label_space", "prob_avg"), ("label_space", "random_space")]
        diffs = self.frame(lambda r: compare(r.result, pairs))
        return (
            diffs.assign(a=diffs["a"].map(short_name), b=diffs["b"].map(short_name))
            .pivot(index=["a", "b"], columns="dataset", values="text")
            .reindex(columns=self.datasets)
            .rename_axis(index=["model", "against"], columns="difference, points [95% CI]")
        )

    def fusion_accuracy(self, methods: Sequence[str] = FUSION_METHODS) -> pd.DataFrame:
        """Test accuracy with its 95% CI of every fusion of ``methods``, per dataset."""
        return self.frame(lambda r: accuracy_ci(r.result, list(methods)))

    def fusion_table(self, ci: pd.DataFrame, methods: Sequence[str] = FUSION_METHODS) -> pd.DataFrame:
        """``fusion_accuracy``'s ``ci`` with the fusions as rows and the datasets as columns."""
        wide = ci.pivot(index="model", columns="dataset", values="text")
        return wide.loc[list(methods), self.datasets].rename_axis(columns="test accuracy, % [95% CI]")

    def blend_weights(self) -> pd.DataFrame:
        """The blend weights chosen on validation, per dataset (rows) and seed, for the word vectors and for
        the random-vector control."""
        (blends,) = self.frames("blend")
        long = blends.melt(
            id_vars=["dataset", "seed"],
            value_vars=["weight", "weight_random"],
            var_name="blend",
            value_name="w",
        )
        long = long.replace({"blend": {"weight": "blend_label", "weight_random": "blend_random"}})
        wide = long.pivot_table(index="dataset", columns=["blend", "seed"], values="w", sort=False)
        return wide.loc[self.datasets].round(1)

    def gate_shares(self) -> list[str]:
        """A sentence per (dataset, mixture): the mean weight of its most-used expert and, for the mixture
        with label experts, the label experts' total share (means over seeds)."""
        (gates,) = self.frames("gates")
        lines = []
        per_seed = gates.assign(label=gates["expert"].str.startswith("label:"))
        for (name, model), g in per_seed.groupby(["dataset", "model"], sort=False):
            top = g.groupby("seed")["weight"].max()
            line = f"{name} {model}: the most-used expert takes {top.mean():.2f} of the weight on average over seeds"
            if model == "moe_thumbnail_label":
                line += f"; the label experts together take {g[g['label']].groupby('seed')['weight'].sum().mean():.3f}"
            lines.append(line)
        return lines

    # --- C3 ---------------------------------------------------------------------------------------------

    def c3_comparisons(self, pairs: Sequence[tuple[str, str]] = C3_COMPARISONS) -> pd.DataFrame:
        """C3's comparisons on every dataset (``label_study.compare``), worded as one Holm family
        (``stats.family_words``: ``p_holm``, ``word``)."""
        c3 = self.frame(lambda r: compare(r.result, pairs))
        c3["p_holm"], _, c3["word"] = family_words(c3["diff"], c3["p_value"], c3["p_equivalence"])
        return c3

    def c3_verdict(self) -> tuple[str, Difference, Difference]:
        """C3's word and its two deciding differences, pooled over the datasets (``label_study.c3_verdict``)."""
        return c3_verdict([r.result for r in self.runs])

    def c3_summary(self, c3: pd.DataFrame) -> dict[str, str]:
        """What a text cites of C3: its ``word``, its two deciding differences (``gain``: the blend against
        the visual fusion, ``words``: word vectors against random ones) and the number of comparisons
        read (``n-read``, the rows of ``c3``, from ``c3_comparisons``)."""
        word, gain, words = self.c3_verdict()
        return {"word": word, "gain": gain.text(), "words": words.text(), "n-read": str(len(c3))}

    def c3_table(self, c3: pd.DataFrame) -> pd.DataFrame:
        """``c3_comparisons`` with the comparisons as rows and the datasets as columns."""
        return (
            c3.assign(shown=c3["text"] + " " + c3["word"])
            .pivot(index=["a", "b"], columns="dataset", values="shown")
            .reindex(index=list(C3_COMPARISONS), columns=self.datasets)
            .rename_axis(index=["model", "against"], columns="difference, points [95% CI], word (Holm)")
        )

    # --- the datasets a question can use ----------------------------------------------------------------

    def plane_runs(self) -> tuple[LabelStudies, list[str]]:
        """The datasets the label-space picture can show, and a line for each other one (too few classes)
        saying why it is left out."""
        return self.with_classes(
            MIN_SPACE_CLASSES, "the picture's plane is the class vectors' first two principal components"
        )

    def zero_shots(self, seeds_for: Callable[[str], Sequence[int]], max_splits: int) -> ZeroShots:
        """The zero-shot study (``label_study.run_zero_shot``, on ``seeds_for(dataset)`` and at most
        ``max_splits`` held-out triples) of every dataset with enough classes to hold some out and see
        two, and a line for each other dataset saying why it has none."""
        kept, skipped = self.with_classes(
            MIN_ZERO_SHOT_CLASSES,
            f"zero-shot holds {N_HELD_OUT} classes out and fits its map on at least 2 others",
        )
        studies = [
            run_zero_shot(r.pool, r.class_vecs, seeds_for(r.dataset), max_splits=max_splits, progress=False)
            for r in kept.runs
        ]
        return ZeroShots(tuple(studies), tuple(skipped))


def _members(runs: Sequence[LabelRun]) -> str:
    return ", ".join(r.dataset for r in runs)


def expert_rows(backbones: Sequence[str]) -> list[str]:
    """The rows of the expert table and figure: the experts (short names), then their average."""
    return [short_name(b) for b in backbones] + ["average"]


@dataclass(frozen=True)
class ZeroShots:
    """The zero-shot studies of the datasets that have enough classes (none where no dataset has), and a
    line for each dataset skipped."""

    studies: tuple[ZeroShotStudy, ...]
    skipped: tuple[str, ...] = ()

    @property
    def datasets(self) -> list[str]:
        return [z.dataset for z in self.studies]

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Every study's ``ZeroShotStudy.summary`` in one frame (empty without a study); bootstrapped once."""
        if not self.studies:
            return pd.DataFrame()
        return pd.concat([z.summary() for z in self.studies], ignore_index=True)

    def notes(self) -> list[str]:
        """A line per study (its held-out triples, seeds and training images per seed), then the skipped."""
        return [
            f"{z.dataset}: {len(z.splits)} held-out triples over seeds {z.seeds}; {z.n_train:,} train images per seed"
            for z in self.studies
        ] + list(self.skipped)

    def table(self) -> pd.DataFrame:
        """Each measure in % with its 95% CI, chance, the shuffled-vectors null and the permutation p-value,
        per dataset."""
        zs = self.summary
        pct = zs[["estimate", "low", "high", "chance", "null_mean", "null_low", "null_high"]] * 100
        shown = pd.DataFrame(
            {
                "dataset": zs["dataset"],
                "measure": zs["measure"].map(ZERO_SHOT_MEASURES),
                "% [95% CI]": [interval(*r) for r in pct[["estimate", "low", "high"]].to_numpy()],
                "chance, %": pct["chance"].map("{:.1f}".format),
                "shuffled vectors, % (mean [95% range])": [
                    interval(*r) for r in pct[["null_mean", "null_low", "null_high"]].to_numpy()
                ],
                "p (permutation)": zs["p_value"].map("{:.3f}".format),
            }
        )
        return shown.set_index(["dataset", "measure"])

    def text(self) -> str:
        """Sentences on the result, with the numbers of the first study's dataset."""
        name = self.studies[0].dataset
        first = self.summary[self.summary["dataset"] == name].set_index("measure")

        def pct(measure: str, stat: str = "estimate") -> str:
            return f"{100 * float(first.loc[measure, stat]):.1f}"

        return (
            f"On {name}, the held-out class is ranked first among the three held-out classes for "
            f"{pct('zsl_top1')}% of its images (95% CI {pct('zsl_top1', 'low')} to {pct('zsl_top1', 'high')}%), "
            f"against {pct('zsl_top1', 'null_mean')}% with shuffled class vectors (permutation p = "
            f"{float(first.loc['zsl_top1', 'p_value']):.3f}). Among all classes, the unseen images are "
            f"recognised {pct('gzsl_unseen')}% of the time, and the harmonic mean of seen and unseen accuracy "
            f"is {pct('harmonic')}% (95% CI {pct('harmonic', 'low')} to {pct('harmonic', 'high')}%)."
        )

    def per_model(self) -> pd.DataFrame:
        """Each measure in % per dataset and model (every backbone's map, and their mean)."""
        per_model = pd.concat(
            {z.dataset: 100 * z.per_model() for z in self.studies}, names=["dataset", "model"]
        )
        return per_model.rename(index=short_name, level="model").rename(columns=ZERO_SHOT_MEASURES).round(1)
