"""The agreement study: how accurate each backbone's probe is, and how often the probes agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.baselines import best_single, fit_single_probes
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies import metrics as M
from fusion_lib.studies.stats import bootstrap_mean_ci, interval, paired_difference

PAIRWISE = ("agreement", "kappa", "double_fault")


@dataclass
class AgreementStudy:
    """Tidy results of one dataset over several seeds (test split).

    ``accuracy``: (dataset, backbone, seed, accuracy); ``pairs``: (dataset, seed, a, b, agreement, kappa,
    double_fault) for every ordered pair; ``bounds``: (dataset, seed, best_single, mean_single, oracle)
    where best_single is the probe chosen on validation. ``correct`` holds, per (model, seed), whether each
    of that seed's test images is classified right (models: every backbone, ``best_single``, ``oracle``);
    ``agree`` per seed the share of backbone pairs that agree on each test image.
    """

    accuracy: pd.DataFrame
    pairs: pd.DataFrame
    bounds: pd.DataFrame
    correct: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    agree: dict[int, np.ndarray] = field(default_factory=dict)

    def per_seed(self, model: str) -> list[np.ndarray]:
        """``correct`` of ``model`` for every seed, in seed order."""
        return [c for (m, _), c in sorted(self.correct.items(), key=lambda kv: kv[0][1]) if m == model]

    def matrix(self, what: str) -> pd.DataFrame:
        """A backbone x backbone matrix of ``what`` (one of PAIRWISE), averaged over seeds."""
        if what not in PAIRWISE:
            raise ValueError(f"unknown pairwise measure {what!r}; valid: {', '.join(PAIRWISE)}")
        order = list(dict.fromkeys(self.accuracy["backbone"]))
        m = self.pairs.pivot_table(index="a", columns="b", values=what, aggfunc="mean")
        return m.loc[order, order].rename_axis(index="backbone", columns="backbone")


def run_agreement_study(
    fs: FeatureSet, seeds: Sequence[int], train: TrainConfig | None = None
) -> AgreementStudy:
    """Fit one linear probe per backbone per seed and measure accuracy, agreement, kappa, double fault
    and the oracle bound on the test split. Each seed draws its own split of the pool (``fs.draw``)."""
    if not seeds:
        raise ValueError("run_agreement_study needs at least one seed")
    acc_rows, pair_rows, bound_rows = [], [], []
    correct: dict[tuple[str, int], np.ndarray] = {}
    agree: dict[int, np.ndarray] = {}
    for seed in seeds:
        split = fs.draw(seed)
        y = split.labels["test"]
        probes = fit_single_probes(split, seed, train)
        preds = {b: probes[b]["test"].argmax(1) for b in fs.backbones}
        for b, p in preds.items():
            correct[(b, seed)] = p == y
        chosen = best_single(probes, split)
        correct[("best_single", seed)] = correct[(chosen, seed)]
        correct[("oracle", seed)] = np.any([correct[(b, seed)] for b in fs.backbones], axis=0)
        distinct = [(a, b) for i, a in enumerate(fs.backbones) for b in fs.backbones[i + 1 :]]
        if distinct:
            agree[seed] = np.mean([preds[a] == preds[b] for a, b in distinct], axis=0)
        for b, p in preds.items():
            acc_rows.append(
                {"dataset": fs.dataset, "backbone": b, "seed": seed, "accuracy": M.accuracy(y, p)}
            )
        for a in fs.backbones:
            for b in fs.backbones:
                pair_rows.append(
                    {
                        "dataset": fs.dataset,
                        "seed": seed,
                        "a": a,
                        "b": b,
                        "agreement": M.agreement(preds[a], preds[b]),
                        "kappa": M.cohen_kappa(preds[a], preds[b]),
                        "double_fault": M.double_fault(preds[a], preds[b], y),
                    }
                )
        bound_rows.append(
            {
                "dataset": fs.dataset,
                "seed": seed,
                "best_single": M.accuracy(y, preds[chosen]),
                "best_single_backbone": chosen,
                "mean_single": float(np.mean([M.accuracy(y, p) for p in preds.values()])),
                "oracle": M.oracle_accuracy(preds, y),
            }
        )
    return AgreementStudy(
        pd.DataFrame(acc_rows), pd.DataFrame(pair_rows), pd.DataFrame(bound_rows), correct, agree
    )


def variation_summary(studies: dict[str, AgreementStudy], n_boot: int = 2000) -> pd.DataFrame:
    """Per dataset, with 95% bootstrap intervals over test images (stratified by seed), in percent or
    points: the best single backbone's accuracy (chosen on validation), the share of backbone pairs
    that agree on an image, and the oracle's gain over the best single backbone."""
    rows = []
    for name, study in studies.items():
        acc = bootstrap_mean_ci([100 * c for c in study.per_seed("best_single")], n_boot=n_boot)
        agree = bootstrap_mean_ci([100 * study.agree[s] for s in sorted(study.agree)], n_boot=n_boot)
        gain = paired_difference(study.per_seed("oracle"), study.per_seed("best_single"), n_boot=n_boot)
        best = study.bounds["best_single_backbone"].mode().iloc[0]
        rows.append(
            {
                "dataset": name,
                "best backbone": best,
                "accuracy": acc[0],
                "accuracy_low": acc[1],
                "accuracy_high": acc[2],
                "agreement": agree[0],
                "agreement_low": agree[1],
                "agreement_high": agree[2],
                "oracle_gain": gain.diff,
                "oracle_gain_low": gain.low,
                "oracle_gain_high": gain.high,
            }
        )
    return pd.DataFrame(rows)


def variation_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``variation_summary`` as the book shows it: one row per dataset, each estimate with its interval."""
    from fusion_lib.data.backbones import short_name

    shown = {
        "accuracy": "best single accuracy (%)",
        "agreement": "pairs that agree (%)",
        "oracle_gain": "oracle gain (points)",
    }
    out = pd.DataFrame(
        {"best backbone": summary["best backbone"].map(short_name).to_numpy()},
        index=pd.Index(summary["dataset"], name="dataset"),
    )
    for m, label in shown.items():
        out[label] = [
            interval(*r, sign=m == "oracle_gain") for r in summary[[m, f"{m}_low", f"{m}_high"]].values
        ]
    return out


def _extremes(summary: pd.DataFrame, measure: str) -> tuple[pd.Series, pd.Series, bool]:
    """The datasets with the lowest and highest ``measure``, and whether their intervals are disjoint."""
    lo, hi = summary.loc[summary[measure].idxmin()], summary.loc[summary[measure].idxmax()]
    return lo, hi, bool(lo[f"{measure}_high"] < hi[f"{measure}_low"])


def c1_verdict(summary: pd.DataFrame) -> tuple[bool, str]:
    """Claim C1, "performance and agreement vary across datasets": supported when, for both the best
    single accuracy and the pairwise agreement, the 95% intervals of the lowest and highest dataset do
    not overlap. Returns (supported, one sentence with the numbers)."""
    if len(summary) < 2:
        return False, "C1 needs at least two datasets; this run has one."
    parts, held = [], []
    for measure, what in (
        ("accuracy", "the best single backbone's accuracy"),
        ("agreement", "the share of backbone pairs that agree on an image"),
    ):
        lo, hi, disjoint = _extremes(summary, measure)
        held.append(disjoint)
        parts.append(
            f"{what} ranges from {interval(*lo[[measure, f'{measure}_low', f'{measure}_high']])}% "
            f"on {lo['dataset']} to {interval(*hi[[measure, f'{measure}_low', f'{measure}_high']])}% "
            f"on {hi['dataset']} ({'disjoint' if disjoint else 'overlapping'} 95% intervals)"
        )
    supported = all(held)
    head = "C1 supported" if supported else "C1 not supported at this size"
    return supported, f"{head}: {parts[0]}; {parts[1]}."


def mean_std(df: pd.DataFrame, by: Sequence[str], value: str, digits: int = 3) -> pd.DataFrame:
    """Mean, std, count ``n`` and a "mean ± std" label of ``value`` per group (std over seeds, ddof=1;
    0 for one seed)."""
    g = df.groupby(list(by), sort=False)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["mean ± std"] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(out["mean"], out["std"])]
    return out


def _family(backbone: str) -> str:
    from fusion_lib.data.backbones import BACKBONE_CFGS

    cfg = BACKBONE_CFGS.get(backbone)
    return cfg.family if cfg is not None else backbone


def family_pairs(studies: Sequence[AgreementStudy]) -> pd.DataFrame:
    """Kappa and double fault of every distinct backbone pair met in ``studies`` (each pair once per dataset
    and seed), marked "same family" or "across families" by the backbones' ``BackboneCfg.family``; mean over
    seeds and pairs, per dataset."""
    pairs = pd.concat([s.pairs for s in studies], ignore_index=True)
    pairs = pairs[pairs["a"] < pairs["b"]].drop_duplicates(["dataset", "seed", "a", "b"])
    same = pairs["a"].map(_family) == pairs["b"].map(_family)
    pairs = pairs.assign(pair=np.where(same, "same family", "across families"))
    out = pairs.groupby(["dataset", "pair"], sort=False)[["kappa", "double_fault"]].mean()
    out["pairs"] = pairs.groupby(["dataset", "pair"], sort=False)[["a", "b"]].apply(
        lambda g: len(g.drop_duplicates())
    )
    return out.reset_index()


def zoo_summary(studies: dict[str, dict[str, AgreementStudy]], n_boot: int = 2000) -> pd.DataFrame:
    """``studies[zoo][dataset]``: per dataset and zoo, the mean kappa and double fault over the zoo's
    distinct backbone pairs and seeds, its best single backbone (chosen on validation), its oracle and the
    oracle's gain over the best single with a paired 95% interval over test images and seeds."""
    rows = []
    datasets = list(dict.fromkeys(d for by_dataset in studies.values() for d in by_dataset))
    for dataset in datasets:  # rows by dataset, then zoo, as the book reads them
        for zoo, by_dataset in studies.items():
            study = by_dataset[dataset]
            distinct = study.pairs[study.pairs["a"] < study.pairs["b"]]
            gain = paired_difference(study.per_seed("oracle"), study.per_seed("best_single"), n_boot=n_boot)
            rows.append(
                {
                    "dataset": dataset,
                    "zoo": zoo,
                    "families": len({_family(b) for b in study.accuracy["backbone"]}),
                    "kappa": float(distinct["kappa"].mean()),
                    "double_fault": float(distinct["double_fault"].mean()),
                    "best_single": 100 * float(study.bounds["best_single"].mean()),
                    "oracle": 100 * float(study.bounds["oracle"].mean()),
                    "oracle_gain": gain.diff,
                    "oracle_gain_low": gain.low,
                    "oracle_gain_high": gain.high,
                }
            )
    return pd.DataFrame(rows)
