"""ByDataset: one value per dataset, in order, stacked into tidy frames with a dataset column."""

from __future__ import annotations

import pandas as pd
import pytest

from fusion_lib.studies.by_dataset import ByDataset


def test_values_keep_their_order_and_stack_with_a_dataset_column():
    sizes = ByDataset.build(["mnist", "digits", "cats"], len)
    assert sizes.datasets == ["mnist", "digits", "cats"] and dict(sizes) == {
        "mnist": 5,
        "digits": 6,
        "cats": 4,
    }
    frame = sizes.frame(lambda name, n: pd.DataFrame({"i": range(n % 3), "first": name[0]}))
    assert frame["dataset"].tolist() == ["mnist", "mnist", "cats"]  # digits: 6 % 3 = 0 rows
    assert frame.columns[-1] == "dataset" and frame.index.tolist() == [0, 1, 2]
    assert (frame["first"] == frame["dataset"].str[0]).all()


def test_map_and_without_return_the_same_kind():
    sizes = ByDataset({"a": 1, "b": 2, "c": 3})
    doubled = sizes.without(["b"]).map(lambda name, n: f"{name}{2 * n}")
    assert isinstance(doubled, ByDataset) and dict(doubled) == {"a": "a2", "c": "c6"}
    assert sizes == {"a": 1, "b": 2, "c": 3}  # a mapping like any other


def test_an_unknown_dataset_and_an_empty_stack_say_what_is_there():
    sizes = ByDataset({"a": 1})
    with pytest.raises(KeyError, match=r"no dataset 'mnist' here; the datasets are \['a'\]"):
        sizes["mnist"]
    with pytest.raises(ValueError, match="no datasets to stack"):
        ByDataset({}).frame(lambda name, n: pd.DataFrame())
