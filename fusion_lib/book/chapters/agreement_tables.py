"""Notebook 02's tables as the page shows them (shortened names, one column per dataset), over its
agreement studies (``Profile.agreement_studies``, ``Profile.agreement_zoos``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fusion_lib.book.pages import interval, table
from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.agreement import mean_std

# The accuracy bounds of a set of experts, as the page names them (column of AgreementStudy.bounds).
BOUNDS = {
    "mean_single": "mean of the probes",
    "best_single": "best single (chosen on val)",
    "oracle": "oracle",
}


def dims_table(pools: Sequence[FeatureSet]) -> pd.DataFrame:
    """Feature dimension of every backbone (rows) on every dataset's pool (columns)."""
    dims = pd.DataFrame({fs.dataset: fs.dims() for fs in pools})
    return dims.rename(index=short_name).rename_axis(
        index="backbone", columns="feature dimension per dataset"
    )


def accuracy_table(accuracy: pd.DataFrame, backbones: Sequence[str], datasets: Sequence[str]) -> pd.DataFrame:
    """Each backbone's test accuracy per dataset, "mean ± std" over seeds (``AgreementStudy.accuracy``
    rows of every dataset, backbone names shortened or not)."""
    shown = accuracy.assign(backbone=accuracy["backbone"].map(short_name))
    wide = mean_std(shown, ["dataset", "backbone"], "accuracy").pivot(
        index="backbone", columns="dataset", values="mean ± std"
    )
    order = [short_name(b) for b in backbones]
    return wide.loc[order, list(datasets)].rename_axis(columns="test accuracy (mean ± std over seeds)")


def bounds_table(bounds: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """The mean probe, the best single probe and the oracle per dataset, "mean ± std" over seeds."""
    long = pd.concat(
        [mean_std(bounds, ["dataset"], col).assign(measure=label) for col, label in BOUNDS.items()]
    )
    wide = long.pivot(index="dataset", columns="measure", values="mean ± std")
    return wide.loc[list(datasets), list(BOUNDS.values())].rename_axis(columns="test accuracy (mean ± std)")


def zoo_table(zoos: pd.DataFrame) -> pd.DataFrame:
    """``agreement.zoo_summary`` as the page shows it: the oracle's gain as an interval in points."""
    gain = ["oracle_gain", "oracle_gain_low", "oracle_gain_high"]
    shown = zoos.assign(**{"oracle gain (points)": [interval(*r, sign=True) for r in zoos[gain].values]})
    shown[["best_single", "oracle"]] = shown[["best_single", "oracle"]].round(1)
    return table(
        shown.drop(columns=gain),
        index=["dataset", "zoo"],
        digits=3,
        labels={
            "kappa": "mean kappa",
            "double_fault": "mean double fault",
            "best_single": "best single (%)",
            "oracle": "oracle (%)",
        },
    )
