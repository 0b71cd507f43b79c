"""The label-space study over every dataset of a run: each dataset's inputs and results in one record.

A ``LabelRun`` holds what one dataset's label-space study reads and gives: its pool of features, its
experiment config (with the aliases its class names need), its class vectors and, once run, its
``LabelStudy``. ``LabelStudies`` holds one per dataset, in order (a ``runs.Runs``); the questions notebook 05 and the
own-images report ask of them are its methods: the tidy frames of every dataset (``frames``), C3's
comparisons as one Holm family and its pooled verdict, which datasets have too few classes for a
question, and the datasets that share their class names (and so their vectors).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.label_space import class_vectors
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_study import (
    C3_COMPARISONS,
    LabelStudy,
    c3_verdict,
    compare,
    run_label_study,
)
from fusion_lib.studies.runs import EXPERTS, Runs
from fusion_lib.studies.stats import Difference, family_words


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

    def c3_comparisons(self, pairs: Sequence[tuple[str, str]] = C3_COMPARISONS) -> pd.DataFrame:
        """C3's comparisons on every dataset (``label_study.compare``), worded as one Holm family
        (``stats.family_words``: ``p_holm``, ``word``)."""
        c3 = self.frame(lambda r: compare(r.result, pairs))
        c3["p_holm"], _, c3["word"] = family_words(c3["diff"], c3["p_value"], c3["p_equivalence"])
        return c3

    def c3_verdict(self) -> tuple[str, Difference, Difference]:
        """C3's word and its two deciding differences, pooled over the datasets (``label_study.c3_verdict``)."""
        return c3_verdict([r.result for r in self.runs])
