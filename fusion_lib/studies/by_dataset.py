"""One value per dataset of a study (its pools, results or studies), read with the dataset as a column.

A profile runs every question on several datasets. ``ByDataset`` is the one type for "this, on each
dataset": a read-only mapping in the profile's order whose ``frame`` turns a per-dataset table into one
tidy frame with a ``dataset`` column, so that no table function loops over datasets and concatenates
on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

import pandas as pd

T = TypeVar("T")
U = TypeVar("U")


class ByDataset(Mapping[str, T], Generic[T]):
    """``value`` per dataset name, in the order given (the profile's): a read-only mapping."""

    def __init__(self, values: Mapping[str, T] | Iterable[tuple[str, T]]) -> None:
        self._values = dict(values)

    @classmethod
    def build(cls, datasets: Sequence[str], make: Callable[[str], T]) -> ByDataset[T]:
        """``make(name)`` for each of ``datasets``, in their order."""
        return cls((name, make(name)) for name in datasets)

    def __getitem__(self, name: str) -> T:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"no dataset {name!r} here; the datasets are {list(self._values)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        kinds = sorted({type(v).__name__ for v in self._values.values()})
        return f"ByDataset({list(self._values)}, of {'/'.join(kinds) or 'nothing'})"

    @property
    def datasets(self) -> list[str]:
        """The dataset names, in order."""
        return list(self._values)

    def without(self, names: Iterable[str]) -> ByDataset[T]:
        """The same, less the datasets ``names`` (e.g. those a study skips)."""
        dropped = set(names)
        return ByDataset((name, value) for name, value in self._values.items() if name not in dropped)

    def map(self, fn: Callable[[str, T], U]) -> ByDataset[U]:
        """``fn(name, value)`` on each dataset, as a new ``ByDataset``."""
        return ByDataset((name, fn(name, value)) for name, value in self._values.items())

    def frame(self, fn: Callable[[str, T], pd.DataFrame]) -> pd.DataFrame:
        """``fn(name, value)``'s tables of every dataset stacked into one, with a ``dataset`` column (the
        last) naming each row's dataset; a fresh integer index."""
        if not self._values:
            raise ValueError("no datasets to stack: a study needs at least one dataset")
        return pd.concat(
            [fn(name, value).assign(dataset=name) for name, value in self._values.items()], ignore_index=True
        )
