"""Ablations of the mixture of experts: fit controlled variants over seeds, compare each with a reference.

A variant is a ``MoEConfig``, the ``FeatureSet`` pool it is trained on (the whole pool or a backbone
subset of it), the share of the training rows it may use, and optionally top-k gating at inference.
``run_ablation`` draws each seed's split inside the pool (``FeatureSet.draw``), so every variant of a
seed is scored on the same test images, and returns one tidy row per variant and seed with the
per-image correctness. ``paired_deltas`` compares each setting with its ablation's reference by
``fusion_lib.studies.stats.paired_difference`` (accuracy difference in points with a paired 95% bootstrap
CI over test images and seeds); ``summarize`` adds each accuracy with its CI and the costs;
``summary_table``, ``verdicts``, ``plot_accuracy`` and ``plot_deltas`` present them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.moe import MoE, MoEConfig
from fusion_lib.fusion.training import TrainConfig, deterministic, num_threads
from fusion_lib.studies.stats import bootstrap_mean_ci, paired_difference

RESULT_COLUMNS = [
    "ablation",
    "setting",
    "reference",
    "seed",
    "inference",
    "accuracy",
    "val_accuracy",
    "gflops_per_image",
    "gate_params",
    "gate_mflops",
    "mean_max_gate_weight",
    "n_train",
    "n_test",
    "n_experts",
    "correct",
]
COST_COLUMNS = [
    "gflops_per_image",
    "gate_params",
    "gate_mflops",
    "mean_max_gate_weight",
    "n_train",
    "n_experts",
]
COLUMN_TITLES = {  # display names of summary_table's columns
    "accuracy (95% CI)": "test accuracy, % (95% CI)",
    "Δ vs reference": "Δ vs reference, points (95% CI)",
    "val_accuracy": "val accuracy, %",
    "gflops_per_image": "GFLOPs / image",
    "gate_params": "gate params",
    "gate_mflops": "gate MFLOPs / image",
    "mean_max_gate_weight": "mean largest gate weight",
    "n_train": "train images",
    "n_experts": "experts",
}

# Fitted mixtures shared between variants and calls, keyed by (config repr, id(pool), seed, train
# fraction, train repr); the pool is kept in the value so its id cannot be reused by another object.
FitCache = dict[tuple[str, int, int, float, str], tuple[FeatureSet, MoE]]


@dataclass(frozen=True)
class Variant:
    """One setting of an ablation: what to train and how to infer.

    ``features`` is the pool (or a ``subset_backbones`` view of it); each seed trains on that seed's
    draw (``FeatureSet.draw``), keeping a stratified ``train_fraction`` of its training rows.
    ``top_k=None`` mixes every expert (soft gating); ``top_k=k`` keeps the k highest-weighted experts,
    so only their backbones need to run.
    """

    config: MoEConfig
    features: FeatureSet
    top_k: int | None = None
    train_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")


def _as_variant(name: str, value: Variant | tuple) -> Variant:
    if isinstance(value, Variant):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Variant(*value)
    raise ValueError(
        f"variant {name!r} must be a Variant or a (MoEConfig, FeatureSet[, top_k]) tuple, "
        f"got {type(value).__name__}"
    )


def _seed_split(v: Variant, seed: int, draws: dict) -> FeatureSet:
    key = (id(v.features), seed, v.train_fraction)
    if key not in draws:
        drawn = v.features.draw(seed)
        draws[key] = (v.features, subsample_train(drawn, v.train_fraction, seed))
    return draws[key][1]


def _fit(v: Variant, fs: FeatureSet, seed: int, train: TrainConfig, cache: FitCache) -> MoE:
    key = (repr(v.config), id(v.features), seed, v.train_fraction, repr(train))
    if key not in cache:
        cache[key] = (v.features, MoE(v.config, train).fit(fs, seed))
    return cache[key][1]


def _same_test_images(name: str, first: str, fs: FeatureSet, ref: FeatureSet, seed: int) -> None:
    ids = [x.indices.get("test") for x in (fs, ref)]
    same = np.array_equal(fs.labels["test"], ref.labels["test"]) and (
        any(i is None for i in ids) or np.array_equal(*ids)
    )
    if not same:
        raise ValueError(
            f"variants {first!r} and {name!r} are scored on different test images for seed "
            f"{seed}; build every variant from one FeatureSet pool (subset_backbones, "
            "train_fraction) so their accuracies can be compared image by image"
        )


def run_ablation(
    ablation: str,
    variants: Mapping[str, Variant | tuple],
    seeds: Sequence[int],
    train: TrainConfig | None = None,
    reference: str | None = None,
    cache: FitCache | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit every variant once per seed on that seed's draw and score it; one row per (variant, seed).

    Columns are ``RESULT_COLUMNS``: test ``accuracy`` and ``val_accuracy`` (for choices made on
    validation); ``correct``, the per-image test correctness (a bool array, aligned between the
    variants of a seed); ``gflops_per_image``, the backbone GFLOPs that run per image plus the gate's
    (``MoE.expected_gflops``); ``gate_params``; ``gate_mflops`` (gate multiply-adds per image);
    ``mean_max_gate_weight``, the mean over test images of the largest gate weight (1 is hard
    routing, 1/n_experts uniform); ``reference`` marks the variant that ``paired_deltas`` compares
    against. Variants with an equal config, pool and train fraction share one fit per seed (e.g. soft
    and top-1 inference); pass one ``cache`` dict to several calls to share fits between ablations.
    """
    if not variants:
        raise ValueError(f"ablation {ablation!r} has no variants")
    if not seeds:
        raise ValueError("run_ablation needs at least one seed")
    if reference is not None and reference not in variants:
        raise ValueError(
            f"reference {reference!r} is not a variant of {ablation!r}; variants: {list(variants)}"
        )
    parsed = {name: _as_variant(name, v) for name, v in variants.items()}
    train = train or TrainConfig()
    cache = {} if cache is None else cache
    draws: dict = {}
    rows = []
    first = next(iter(parsed))
    with deterministic(), num_threads(train.threads):
        steps = tqdm(
            [(s, n) for s in seeds for n in parsed], desc=f"ablation: {ablation}", disable=not progress
        )
        for seed, name in steps:
            steps.set_postfix_str(f"seed={seed} {name}")
            v = parsed[name]
            fs = _seed_split(v, seed, draws)
            _same_test_images(name, first, fs, _seed_split(parsed[first], seed, draws), seed)
            moe = _fit(v, fs, seed, train, cache)
            correct = moe.predict(fs, "test", top_k=v.top_k) == fs.labels["test"]
            rows.append(
                {
                    "ablation": ablation,
                    "setting": name,
                    "reference": name == reference,
                    "seed": seed,
                    "inference": "soft" if v.top_k is None else f"top-{v.top_k}",
                    "accuracy": float(correct.mean()),
                    "val_accuracy": float(np.mean(moe.predict(fs, "val", top_k=v.top_k) == fs.labels["val"])),
                    "gflops_per_image": moe.expected_gflops(fs, "test", top_k=v.top_k),
                    "gate_params": moe.gate_params,
                    "gate_mflops": moe.gate_flops / 1e6,
                    "mean_max_gate_weight": float(moe.gate_weights(fs, "test", top_k=v.top_k).max(1).mean()),
                    "n_train": len(fs.labels["train"]),
                    "n_test": len(correct),
                    "n_experts": len(moe.expert_names),
                    "correct": correct,
                }
            )
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _check(results: pd.DataFrame) -> None:
    missing = sorted(set(RESULT_COLUMNS) - set(results.columns))
    if missing:
        raise ValueError(f"results lack columns {missing}; pass the output of run_ablation")


def _per_seed(rows: pd.DataFrame) -> list[np.ndarray]:
    return [np.asarray(c, dtype=bool) for c in rows.sort_values("seed")["correct"]]


def paired_deltas(results: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (ablation, setting): the accuracy change against the ablation's reference in points,
    ``delta`` with its paired 95% CI ``low``/``high`` (``stats.paired_difference`` over the test images
    of every seed), ``Δ vs reference`` as text, ``significant`` (the CI excludes 0), ``p_mcnemar`` (one
    seed only) and a ``verdict`` sentence. The reference itself and settings of an ablation without
    one get NaN / NA."""
    _check(results)
    out = []
    for (ablation, setting), rows in results.groupby(["ablation", "setting"], sort=False):
        ref = results[(results["ablation"] == ablation) & results["reference"]]
        row = {
            "ablation": ablation,
            "setting": setting,
            "delta": np.nan,
            "low": np.nan,
            "high": np.nan,
            "Δ vs reference": "reference" if rows["reference"].any() else "",
            "significant": pd.NA,
            "p_mcnemar": np.nan,
            "verdict": "",
        }
        if len(ref) and not rows["reference"].any():
            if sorted(ref["seed"]) != sorted(rows["seed"]):
                raise ValueError(
                    f"{ablation}: setting {setting!r} has seeds {sorted(rows['seed'])} but the "
                    f"reference has {sorted(ref['seed'])}; pair them on the same seeds"
                )
            d = paired_difference(_per_seed(rows), _per_seed(ref), n_boot=n_boot)
            row.update(
                delta=d.diff,
                low=d.low,
                high=d.high,
                significant=d.significant,
                p_mcnemar=np.nan if d.p_mcnemar is None else d.p_mcnemar,
            )
            row.update(
                {"Δ vs reference": d.text(), "verdict": d.verdict(setting, ref["setting"].iloc[0]) + "."}
            )
        out.append(row)
    frame = pd.DataFrame(out)
    return frame.astype({"significant": "boolean"})


def summarize(results: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (ablation, setting) in order of appearance: test accuracy (mean over seeds, a
    fraction) with its seed-stratified 95% bootstrap CI (``accuracy_low``/``accuracy_high``) and as
    text in % (``accuracy (95% CI)``); the mean ``val_accuracy``; the paired change against the
    reference (``paired_deltas``); ``n_seeds``, ``n_test`` (per seed) and the mean of the cost columns."""
    deltas = paired_deltas(results, n_boot).set_index(["ablation", "setting"])
    rows = []
    for (ablation, setting), g in results.groupby(["ablation", "setting"], sort=False):
        mean, low, high = bootstrap_mean_ci([100.0 * c for c in _per_seed(g)], n_boot=n_boot)
        rows.append(
            {
                "ablation": ablation,
                "setting": setting,
                "accuracy_mean": mean / 100,
                "accuracy_low": low / 100,
                "accuracy_high": high / 100,
                "accuracy (95% CI)": f"{mean:.2f} [{low:.2f}, {high:.2f}]",
                "val_accuracy": float(g["val_accuracy"].mean()),
                "n_seeds": len(g),
                "n_test": int(g["n_test"].iloc[0]),
                **g[COST_COLUMNS].mean().to_dict(),
            }
        )
    out = pd.DataFrame(rows).set_index(["ablation", "setting"])
    return out.join(deltas).reset_index()


def summary_table(
    summary: pd.DataFrame,
    costs: Sequence[str] = ("gflops_per_image", "gate_mflops"),
    index: str | Sequence[str] = "setting",
) -> pd.DataFrame:
    """A ``summarize`` frame formatted for reading: accuracy and the change against the reference with
    their CIs, validation accuracy in %, and the chosen cost columns, rounded and titled."""
    unknown = sorted(set(costs) - set(COST_COLUMNS))
    if unknown:
        raise ValueError(f"unknown cost columns {unknown}; valid: {COST_COLUMNS}")
    cols = ["accuracy (95% CI)", "Δ vs reference", "val_accuracy", *costs]
    t = summary.set_index(index)[cols].copy()
    t["val_accuracy"] = (100 * t["val_accuracy"]).round(2)
    for c in costs:
        t[c] = t[c].round(0 if c in ("gate_params", "n_train", "n_experts") else 4)
        if c in ("gate_params", "n_train", "n_experts"):
            t[c] = t[c].astype(int)
    return t.rename(columns=COLUMN_TITLES)


def verdicts(summary: pd.DataFrame) -> str:
    """The ``verdict`` sentences of every compared setting, one per line: whether it beats, trails or
    cannot be told apart from its ablation's reference, with the paired 95% CI in points."""
    return "\n".join(summary.loc[summary["delta"].notna(), "verdict"])


def plot_accuracy(
    ax,
    summary: pd.DataFrame,
    x: str | Sequence[float] | None = None,
    logx: bool = False,
    annotate: bool = True,
) -> None:
    """Test accuracy (%) with its 95% CI for each setting of a ``summarize`` frame: against a numeric
    column (or values) ``x``, else as a category per setting."""
    xs = summary["setting"] if x is None else (summary[x] if isinstance(x, str) else list(x))
    y = 100 * summary["accuracy_mean"]
    yerr = 100 * np.vstack(
        [
            summary["accuracy_mean"] - summary["accuracy_low"],
            summary["accuracy_high"] - summary["accuracy_mean"],
        ]
    )
    ax.errorbar(xs, y, yerr=yerr, marker="o", capsize=4, linestyle="-" if x is not None else "none")
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(xs), [f"{v:g}" for v in xs])
        ax.minorticks_off()
    if annotate and x is not None:
        for xi, yi, s in zip(xs, y, summary["setting"]):
            ax.annotate(s, (xi, yi), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_ylabel("test accuracy, % (95% CI)")


def plot_deltas(ax, summary: pd.DataFrame, label: str = "setting") -> None:
    """The paired change against each ablation's reference, in points with its 95% CI, one row per
    compared setting (a forest plot); the dashed line is no change."""
    d = summary[summary["delta"].notna()].iloc[::-1]
    ys = np.arange(len(d))
    ax.errorbar(
        d["delta"], ys, xerr=np.vstack([d["delta"] - d["low"], d["high"] - d["delta"]]), fmt="o", capsize=3
    )
    ax.set_yticks(ys, d[label])
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("test accuracy change vs the reference, points (paired 95% CI)")


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
        dataset=fs.dataset,
        backbones=list(fs.backbones),
        class_names=fs.class_names,
        features={
            s: ({b: f[rows] for b, f in feats.items()} if s == "train" else feats)
            for s, feats in fs.features.items()
        },
        labels=take(fs.labels),
        thumbnails=take(fs.thumbnails),
        backbone_gflops=dict(fs.backbone_gflops),
        indices=take(fs.indices),
        fixed_test=fs.fixed_test,
    )
