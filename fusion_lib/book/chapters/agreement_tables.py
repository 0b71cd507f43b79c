"""Notebook 02's tables and study runs: the agreement studies of a profile's datasets, its zoos and its
candidate experts, and the frames the page shows (shortened names, one column per dataset)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fusion_lib.book.pages import interval, table
from fusion_lib.book.profiles import Profile
from fusion_lib.data.backbones import BACKBONE_CFGS, short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.agreement import AgreementStudies, AgreementStudy, mean_std, run_agreement_study
from fusion_lib.studies.runs import EXPERTS, StudyRun

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


def run_studies(profile: Profile, pools: Sequence[FeatureSet]) -> AgreementStudies:
    """The agreement study of each dataset's experts (``pools``: the profile's, in its order), under the
    profile's experiment config."""
    return AgreementStudies(
        StudyRun(fs.dataset, EXPERTS, run_agreement_study(fs, profile.experiment_config(fs.dataset)), fs)
        for fs in pools
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


def candidates_table(
    candidates: AgreementStudy, pool: FeatureSet, experts: Sequence[str], dataset: str
) -> pd.DataFrame:
    """Every candidate backbone on ``dataset``: family, mean accuracy (on the study's split), GFLOPs, mean kappa and mean
    double fault with the other candidates, and whether it is one of the book's ``experts``."""
    kappa, fault = candidates.matrix("kappa"), candidates.matrix("double_fault")
    others = ~np.eye(len(kappa), dtype=bool)  # every pair but a backbone with itself
    order = list(kappa.index)
    frame = pd.DataFrame(
        {
            "family": [BACKBONE_CFGS[b].family for b in order],
            "accuracy": candidates.accuracy.groupby("backbone")["accuracy"].mean()[order].to_numpy(),
            "GFLOPs": [pool.backbone_gflops[b] for b in order],
            "mean kappa with the others": kappa.where(others).mean(axis=1).to_numpy(),
            "mean double fault with the others": fault.where(others).mean(axis=1).to_numpy(),
            "book's experts": ["yes" if b in experts else "" for b in order],
        },
        index=pd.Index([short_name(b) for b in order], name=f"backbone ({dataset})"),
    )
    return frame.round(3)


def zoo_studies(profile: Profile, studies: AgreementStudies) -> AgreementStudies:
    """Each zoo's agreement study on each dataset, zoo by zoo (``Profile.zoo_runs``: the zoo equal to the
    profile's experts reuses ``studies``)."""
    return AgreementStudies(profile.zoo_runs(studies, run_agreement_study))


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


def variation_extremes(summary: pd.DataFrame) -> dict[str, float]:
    """The ranges the page's text cites from ``agreement.variation_summary``: accuracy and agreement
    (lowest and highest over datasets) and the largest oracle gain."""
    return {
        "acc_min": float(summary["accuracy"].min()),
        "acc_max": float(summary["accuracy"].max()),
        "agree_min": float(summary["agreement"].min()),
        "agree_max": float(summary["agreement"].max()),
        "gain_max": float(summary["oracle_gain"].max()),
    }
