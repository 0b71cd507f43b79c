"""The runs of a study, one per dataset and zoo: the dataset and the zoo are columns, not dict keys.

``Runs`` is the collection every study over several datasets shares (the experiment's ``study.Study``,
the label-space ``label_studies.LabelStudies``, the agreement ``agreement.AgreementStudies``): records
that each name their ``dataset`` and ``zoo``, in order, with the selections and the one
loop-and-concatenate (``frame``) the questions of a chapter are built on. ``StudyRun`` is the record of
the experiment and agreement studies: one result and the pool of features its seeds were drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import pandas as pd

from fusion_lib.data.feature_set import FeatureSet

# The zoo of a study that compares none: the profile's (or the folder's) own experts
EXPERTS = "experts"


class Keyed(Protocol):
    """A record of one run: which dataset and which zoo of experts it ran on."""

    @property
    def dataset(self) -> str: ...

    @property
    def zoo(self) -> str: ...


R = TypeVar("R")
K = TypeVar("K", bound=Keyed)
S = TypeVar("S", bound="Runs")


@dataclass(frozen=True)
class StudyRun(Generic[R]):
    """A study's result on one dataset with one zoo of experts, and the pool its seeds were drawn from."""

    dataset: str
    zoo: str
    result: R
    pool: FeatureSet


class Runs(Generic[K]):
    """One record per (dataset, zoo), in the order given (datasets within zoos as the profile lists
    them); the methods that select runs return the same kind of collection, which may be empty (every
    dataset skipped by a question), while the questions themselves need a run."""

    def __init__(self, runs: Iterable[K]) -> None:
        self.runs: tuple[K, ...] = tuple(runs)
        keys = [(r.dataset, r.zoo) for r in self.runs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"each (dataset, zoo) runs once in a study; repeated: {repeated}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(datasets={self.datasets}, zoos={self.zoos})"

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))

    @property
    def zoos(self) -> list[str]:
        return list(dict.fromkeys(r.zoo for r in self.runs))

    def zoo(self: S, name: str) -> S:
        """The runs of zoo ``name``."""
        if name not in self.zoos:
            raise ValueError(f"no zoo {name!r} in this study; its zoos are {self.zoos}")
        return type(self)(r for r in self.runs if r.zoo == name)

    def without(self: S, datasets: Iterable[str]) -> S:
        """The same, less the runs on ``datasets`` (e.g. those a question cannot use)."""
        dropped = set(datasets)
        return type(self)(r for r in self.runs if r.dataset not in dropped)

    def one_zoo(self, what: str) -> tuple[K, ...]:
        """The runs, where they are of a single zoo; ``what`` (a question that reads one zoo) is refused
        otherwise."""
        if len(self.zoos) > 1:
            raise ValueError(f"{what} reads one zoo; this study has {self.zoos}: pick one with .zoo(name)")
        return self.runs

    def get(self, dataset: str, zoo: str | None = None) -> K:
        """The run on ``dataset`` (with ``zoo``; None: the study's only zoo)."""
        runs = self.one_zoo(f"get({dataset!r})") if zoo is None else self.runs
        for r in runs:
            if r.dataset == dataset and (zoo is None or r.zoo == zoo):
                return r
        raise KeyError(
            f"no run on {dataset!r}, zoo {zoo!r}; the datasets are {self.datasets}, zoos {self.zoos}"
        )

    def frame(self, fn: Callable[[K], pd.DataFrame]) -> pd.DataFrame:
        """``fn(run)``'s tables of every run stacked into one, with a ``dataset`` column (the last; and a
        ``zoo`` column before it where the study has several zoos) naming each row's run."""
        if not self.runs:
            raise ValueError("no runs to stack: a study needs at least one dataset")
        several = len(self.zoos) > 1
        return pd.concat(
            [fn(r).assign(**({"zoo": r.zoo} if several else {}), dataset=r.dataset) for r in self.runs],
            ignore_index=True,
        )

    def frames(self, *parts: str) -> list[pd.DataFrame]:
        """Each named tidy frame of the runs' results (e.g. "accuracy", or "blend", "gates"), every run's
        rows in one (the results' own frames carry their dataset)."""
        return [pd.concat([getattr(r.result, part) for r in self.runs], ignore_index=True) for part in parts]
