"""Ablations of the mixture of experts: fit controlled variants over seeds, tabulate accuracy and cost.

A variant is a ``MoEConfig`` and the ``FeatureSet`` it is trained on (fewer backbones, fewer training
rows), optionally evaluated with top-k gating. ``run_ablation`` returns one tidy row per variant and
seed; ``summarize`` gives mean ± std over seeds and the change against a reference variant, paired by
seed (``paired_deltas``).
``subsample_train`` draws a stratified subset of the training rows for training-set-size ablations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib import metrics as M
from fusion_lib.feature_set import FeatureSet
from fusion_lib.moe import MoE, MoEConfig
from fusion_lib.training import TrainConfig, deterministic, num_threads

RESULT_COLUMNS = ["ablation", "setting", "reference", "seed", "inference", "accuracy", "gflops_per_image",
                  "gate_params", "gate_mflops", "mean_max_gate_weight", "n_train", "n_experts"]

# Fitted mixtures shared between variants and calls: (config repr, id(features), seed, train repr)
# -> (features, MoE). The FeatureSet is kept in the value so its id cannot be reused by another object.
FitCache = dict[tuple[str, int, int, str], tuple[FeatureSet, MoE]]


@dataclass(frozen=True)
class Variant:
    """One setting of an ablation: what to train (``config`` on ``features``) and how to infer.

    ``top_k=None`` mixes every expert (soft gating); ``top_k=k`` keeps the k highest-weighted experts,
    so only their backbones need to run.
    """

    config: MoEConfig
    features: FeatureSet
    top_k: int | None = None


def _as_variant(name: str, value: Variant | tuple) -> Variant:
    if isinstance(value, Variant):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Variant(*value)
    raise ValueError(f"variant {name!r} must be a Variant or a (MoEConfig, FeatureSet[, top_k]) tuple, "
                     f"got {type(value).__name__}")


def _fit(variant: Variant, seed: int, train: TrainConfig, cache: FitCache) -> MoE:
    key = (repr(variant.config), id(variant.features), seed, repr(train))
    if key not in cache:
        cache[key] = (variant.features, MoE(variant.config, train).fit(variant.features, seed))
    return cache[key][1]


def run_ablation(ablation: str, variants: Mapping[str, Variant | tuple], seeds: Sequence[int],
                 train: TrainConfig | None = None, reference: str | None = None, cache: FitCache | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """Fit every variant once per seed and score it on the test split; one row per (variant, seed).

    Columns are ``RESULT_COLUMNS``: test ``accuracy``; ``gflops_per_image``, the backbone GFLOPs that must
    run per image plus the gate's (``MoE.expected_gflops``); ``gate_params`` and ``gate_mflops`` (gate
    multiply-adds per image); ``mean_max_gate_weight``, the average over test images of the largest gate
    weight (1 means hard routing, 1/n_experts uniform); ``reference`` marks the ``reference`` variant
    that ``summarize`` compares against. Variants with equal config and the same FeatureSet object share
    one fit per seed (e.g. soft and top-1 inference); pass the same ``cache`` dict to several calls to
    share fits between ablations too.
    """
    if not variants:
        raise ValueError(f"ablation {ablation!r} has no variants")
    if not seeds:
        raise ValueError("run_ablation needs at least one seed")
    if reference is not None and reference not in variants:
        raise ValueError(f"reference {reference!r} is not a variant of {ablation!r}; variants: {list(variants)}")
    parsed = {name: _as_variant(name, v) for name, v in variants.items()}
    train = train or TrainConfig()
    cache = {} if cache is None else cache
    rows = []
    with deterministic(), num_threads(train.threads):
        steps = tqdm([(s, n) for s in seeds for n in parsed], desc=f"ablation: {ablation}", disable=not progress)
        for seed, name in steps:
            steps.set_postfix_str(f"seed={seed} {name}")
            v = parsed[name]
            moe = _fit(v, seed, train, cache)
            fs = v.features
            rows.append({
                "ablation": ablation, "setting": name, "reference": name == reference, "seed": seed,
                "inference": "soft" if v.top_k is None else f"top-{v.top_k}",
                "accuracy": M.accuracy(fs.labels["test"], moe.predict(fs, "test", top_k=v.top_k)),
                "gflops_per_image": moe.expected_gflops(fs, "test", top_k=v.top_k),
                "gate_params": moe.gate_params, "gate_mflops": moe.gate_flops / 1e6,
                "mean_max_gate_weight": float(moe.gate_weights(fs, "test", top_k=v.top_k).max(1).mean()),
                "n_train": len(fs.labels["train"]), "n_experts": len(moe.expert_names),
            })
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def paired_deltas(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with a ``delta`` column: accuracy minus the reference's accuracy on the same seed in the
    same ablation (NaN in ablations without a reference). Pairing by seed removes the seed's own luck."""
    missing = sorted(set(RESULT_COLUMNS) - set(results.columns))
    if missing:
        raise ValueError(f"results lack columns {missing}; pass the output of run_ablation")
    ref = results.loc[results["reference"], ["ablation", "seed", "accuracy"]].rename(columns={"accuracy": "ref"})
    paired = results.merge(ref, on=["ablation", "seed"], how="left", validate="many_to_one")
    return paired.assign(delta=paired["accuracy"] - paired["ref"]).drop(columns="ref")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (ablation, setting) in order of appearance: accuracy mean and std over seeds (ddof=1;
    0 for one seed) with a "mean ± std" label; the mean paired change against the reference
    (``paired_deltas``) and whether it has the same sign on every seed (NA for the reference and where
    there is none); the mean of the cost columns."""
    paired = paired_deltas(results)
    keys = ["ablation", "setting"]
    g = paired.groupby(keys, sort=False)
    out = g["accuracy"].agg(accuracy_mean="mean", accuracy_std="std", n_seeds="count").reset_index()
    out["accuracy_std"] = out["accuracy_std"].fillna(0.0)
    out["accuracy (mean ± std)"] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(out["accuracy_mean"], out["accuracy_std"])]
    out["Δ accuracy vs reference"] = g["delta"].mean().to_numpy()
    same_sign = g["delta"].agg(lambda d: bool((d > 0).all() or (d < 0).all())).to_numpy()
    # the reference itself, and settings of an ablation without one, have no change to judge
    undefined = (g["reference"].any() | g["delta"].apply(lambda d: d.isna().any())).to_numpy()
    out["Δ same sign on every seed"] = pd.array(np.where(undefined, None, same_sign), dtype="boolean")
    costs = g[["gflops_per_image", "gate_params", "gate_mflops", "mean_max_gate_weight", "n_train",
               "n_experts"]].mean().reset_index(drop=True)
    return pd.concat([out, costs], axis=1)


def subsample_train(fs: FeatureSet, fraction: float, seed: int = 0) -> FeatureSet:
    """The FeatureSet with a stratified random ``fraction`` of its train rows (val and test unchanged).

    Each class keeps ``round(fraction * its count)`` rows, at least one, drawn with ``seed``; rows keep
    their original order. ``fraction=1`` returns ``fs`` itself.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return fs
    y = fs.labels["train"]
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        keep.append(rng.choice(rows, size=max(1, round(fraction * len(rows))), replace=False))
    rows = np.sort(np.concatenate(keep))

    def take(by_split: dict) -> dict:
        return {s: (v[rows] if s == "train" else v) for s, v in by_split.items()}

    return FeatureSet(
        dataset=fs.dataset, backbones=list(fs.backbones), class_names=fs.class_names,
        features={s: ({b: f[rows] for b, f in feats.items()} if s == "train" else feats)
                  for s, feats in fs.features.items()},
        labels=take(fs.labels), thumbnails=take(fs.thumbnails), backbone_gflops=dict(fs.backbone_gflops),
        indices=take(fs.indices),
    )
