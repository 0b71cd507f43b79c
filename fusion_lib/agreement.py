"""The agreement study: how accurate each backbone's probe is, and how often the probes agree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from . import metrics as M
from .baselines import best_single, fit_single_probes
from .feature_set import FeatureSet
from .training import TrainConfig

PAIRWISE = ("agreement", "kappa", "double_fault")


@dataclass
class AgreementStudy:
    """Tidy results of one dataset over several seeds (test split).

    ``accuracy``: (dataset, backbone, seed, accuracy); ``pairs``: (dataset, seed, a, b, agreement, kappa,
    double_fault) for every ordered pair; ``bounds``: (dataset, seed, best_single, mean_single, oracle)
    where best_single is the probe chosen on validation.
    """

    accuracy: pd.DataFrame
    pairs: pd.DataFrame
    bounds: pd.DataFrame

    def matrix(self, what: str) -> pd.DataFrame:
        """A backbone x backbone matrix of ``what`` (one of PAIRWISE), averaged over seeds."""
        if what not in PAIRWISE:
            raise ValueError(f"unknown pairwise measure {what!r}; valid: {', '.join(PAIRWISE)}")
        order = list(dict.fromkeys(self.accuracy["backbone"]))
        m = self.pairs.pivot_table(index="a", columns="b", values=what, aggfunc="mean")
        return m.loc[order, order].rename_axis(index="backbone", columns="backbone")


def run_agreement_study(fs: FeatureSet, seeds: Sequence[int], train: TrainConfig | None = None) -> AgreementStudy:
    """Fit one linear probe per backbone per seed and measure accuracy, agreement, kappa, double fault
    and the oracle bound on the test split."""
    if not seeds:
        raise ValueError("run_agreement_study needs at least one seed")
    y = fs.labels["test"]
    acc_rows, pair_rows, bound_rows = [], [], []
    for seed in seeds:
        probes = fit_single_probes(fs, seed, train)
        preds = {b: probes[b]["test"].argmax(1) for b in fs.backbones}
        for b, p in preds.items():
            acc_rows.append({"dataset": fs.dataset, "backbone": b, "seed": seed, "accuracy": M.accuracy(y, p)})
        for a in fs.backbones:
            for b in fs.backbones:
                pair_rows.append({"dataset": fs.dataset, "seed": seed, "a": a, "b": b,
                                  "agreement": M.agreement(preds[a], preds[b]),
                                  "kappa": M.cohen_kappa(preds[a], preds[b]),
                                  "double_fault": M.double_fault(preds[a], preds[b], y)})
        chosen = best_single(probes, fs)
        bound_rows.append({"dataset": fs.dataset, "seed": seed, "best_single": M.accuracy(y, preds[chosen]),
                           "best_single_backbone": chosen,
                           "mean_single": float(np.mean([M.accuracy(y, p) for p in preds.values()])),
                           "oracle": M.oracle_accuracy(preds, y)})
    return AgreementStudy(pd.DataFrame(acc_rows), pd.DataFrame(pair_rows), pd.DataFrame(bound_rows))


def mean_std(df: pd.DataFrame, by: Sequence[str], value: str, digits: int = 3) -> pd.DataFrame:
    """Mean, std, count ``n`` and a "mean ± std" label of ``value`` per group (std over seeds, ddof=1;
    0 for one seed)."""
    g = df.groupby(list(by), sort=False)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["mean ± std"] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(out["mean"], out["std"])]
    return out
