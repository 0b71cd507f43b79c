"""Ablations of the book's recipe, ``moe_thumbnail``: fit controlled variants over seeds, compare each
with a reference.

A ``Variant`` is the book's two-stage recipe (``fusion_lib.studies.methods.two_stage_config("moe_thumbnail", ...)``:
calibrated single-backbone experts, a thumbnail gate fit on their out-of-fold train outputs, shrunk
towards the seed's anchor with ``alpha`` chosen on validation, the thumbnail size chosen on validation)
with some ``TwoStageConfig`` fields changed, trained on a ``FeatureSet`` pool (the whole pool or a
backbone subset of it) with a kind of expert head and a share of the training rows, and scored with soft
or top-k gating. Each seed's models are built by ``fusion_lib.studies.seed_run.SeedRun``, the very object
``run_experiment`` builds them with, held in an ``AblationRuns`` shared by every variant and ablation: the
variant with no change is the book's ``moe_thumbnail`` bit for bit, and settings equal in data and
recipe share one fit.

``run_ablation`` draws each seed's split inside the pool (``FeatureSet.draw``), so every variant of a
seed is scored on the same test images, and returns one tidy row per variant and seed with the per-image
correctness. ``paired_deltas`` compares each setting with its ablation's reference by
``fusion_lib.studies.stats.paired_difference`` (accuracy difference in points with a paired 95% bootstrap
CI over seeds and test images); ``summarize`` adds each accuracy with its CI and the costs;
``summary_table``, ``verdicts``, ``plot_accuracy`` and ``plot_deltas`` present them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.experts import EXPERT_KINDS
from fusion_lib.fusion.two_stage import TwoStageConfig, TwoStageMoE
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.methods import two_stage_config
from fusion_lib.studies.seed_run import SeedRun, gflops, seed_mode
from fusion_lib.studies.stats import N_BOOT, score_table, verdict_sentence

BOOK_RECIPE = "moe_thumbnail"
ABLATION_COLUMNS = [
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
    "alpha",
    "thumbnail_size",
    "anchor",
    "n_train",
    "n_test",
    "n_experts",
    "correct",
    "test_ids",
]
COST_COLUMNS = [
    "gflops_per_image",
    "gate_params",
    "gate_mflops",
    "mean_max_gate_weight",
    "alpha",
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
    "alpha": "alpha (mean)",
    "thumbnail sizes": "thumbnail px (per seed)",
    "n_train": "train images",
    "n_experts": "experts",
}
_COUNTS = ("gate_params", "n_train", "n_experts")
_CONFIG_FIELDS = frozenset(f.name for f in fields(TwoStageConfig))


@dataclass(frozen=True)
class Variant:
    """One setting of an ablation: the book's recipe with some fields changed, its data, its inference.

    ``changes`` replaces fields of the book's ``TwoStageConfig`` (``methods.two_stage_config("moe_thumbnail", ...)``),
    e.g. ``{"thumbnail_sizes": (8,)}`` (a fixed size, not chosen on validation), ``{"gate_channels":
    (64, 128)}``, ``{"shrink": False}`` (alpha = 1, the raw gate), ``{"alphas": (0.0,)}`` (the anchor
    alone) or ``{"calibrate": False}`` (experts keep their raw probabilities). ``features`` is the pool
    (or a ``subset_backbones`` view of it); each seed trains on that seed's draw (``FeatureSet.draw``),
    keeping a stratified ``train_fraction`` of its training rows. ``expert`` is the kind of expert head
    (None: the config's). ``top_k=None`` mixes every expert (soft gating); ``top_k=k`` keeps the k
    highest-weighted experts, so only their backbones need to run.
    """

    features: FeatureSet
    changes: Mapping[str, Any] = field(default_factory=dict)
    expert: str | None = None
    train_fraction: float = 1.0
    top_k: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.changes) - _CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"unknown TwoStageConfig fields {unknown}; valid: {sorted(_CONFIG_FIELDS)}")
        if self.expert is not None and self.expert not in EXPERT_KINDS:
            raise ValueError(f"unknown expert kind {self.expert!r}; valid kinds: {list(EXPERT_KINDS)}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")

    def config(self, run: SeedRun) -> TwoStageConfig:
        """The two-stage config of this variant on ``run``: the book's, with ``changes`` replaced."""
        book = two_stage_config(BOOK_RECIPE, run.fs.thumbnail_size, len(run.fs.backbones))
        return replace(book, **self.changes)

    @property
    def calibrated(self) -> bool:
        """Whether the experts are temperature-scaled on validation (the book's recipe does)."""
        return self.changes.get("calibrate", True)


class AblationRuns:
    """Each seed's models for the ablations, shared by every variant and every ``run_ablation`` call.

    One ``SeedRun`` (probes, out-of-fold probes, expert outputs, anchor, gates; through the fit cache
    when ``config.fit_cache``) per pool, seed, train fraction, expert kind and calibration, built from
    ``config`` (its training settings, thumbnail size and expert kind) as ``run_experiment`` builds it.
    Pools are keyed by identity and kept here, so build every variant from one pool object.
    """

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self._splits: dict[tuple, tuple[FeatureSet, FeatureSet]] = {}
        self._runs: dict[tuple, tuple[FeatureSet, SeedRun]] = {}
        self._gates: set[tuple[int, TwoStageConfig]] = set()

    def split(self, variant: Variant, seed: int) -> FeatureSet:
        """The variant's data for ``seed``: the seed's draw of its pool, with its share of the train rows."""
        key = (id(variant.features), seed, variant.train_fraction)
        if key not in self._splits:
            drawn = variant.features.draw(seed)
            self._splits[key] = (variant.features, subsample_train(drawn, variant.train_fraction, seed))
        return self._splits[key][1]

    def run(self, variant: Variant, seed: int) -> SeedRun:
        """The ``SeedRun`` that trains the variant's experts and gates for ``seed``."""
        kind = variant.expert or self.config.expert
        key = (id(variant.features), seed, variant.train_fraction, kind)
        if key not in self._runs:
            config = self.config if kind == self.config.expert else replace(self.config, expert=kind)
            self._runs[key] = (variant.features, SeedRun(self.split(variant, seed), seed, config, None))
        run = self._runs[key][1]
        if variant.calibrated:
            return run
        raw = (*key, "raw experts")
        if raw not in self._runs:
            self._runs[raw] = (variant.features, run.uncalibrated())
        return self._runs[raw][1]

    def fit(self, variant: Variant, seed: int) -> tuple[SeedRun, TwoStageMoE]:
        """The variant's fitted mixture for ``seed`` and the run that holds its experts."""
        run = self.run(variant, seed)
        cfg = variant.config(run)
        two_stage = TwoStageMoE(cfg, run.train)
        self._gates.update((id(run), two_stage.for_size(s).config) for s in two_stage.sizes)
        return run, run.two_stage(cfg)

    @property
    def n_runs(self) -> int:
        """Seed runs built so far (a raw-experts run shares its calibrated run's probes)."""
        return len(self._runs)

    @property
    def n_gates(self) -> int:
        """Gates fitted so far for the variants, one per seed run and thumbnail size."""
        return len(self._gates)


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


def _score(run: SeedRun, m: TwoStageMoE, top_k: int | None) -> dict[str, Any]:
    fs, ex = run.fs, run.experts
    correct = m.predict_proba(fs, ex, "test", top_k).argmax(1) == fs.labels["test"]
    val = m.predict_proba(fs, ex, "val", top_k).argmax(1) == fs.labels["val"]
    known = gflops(fs, fs.backbones) is not None
    return {
        "inference": "soft" if top_k is None else f"top-{top_k}",
        "accuracy": float(correct.mean()),
        "val_accuracy": float(val.mean()),
        "gflops_per_image": m.expected_gflops(fs, ex, "test", top_k) if known else np.nan,
        "gate_params": sum(p.numel() for p in m.model_.parameters()),
        "gate_mflops": m.gate_flops / 1e6,
        "mean_max_gate_weight": float(m.gate_weights(fs, ex, "test", top_k).max(1).mean()),
        "alpha": m.alpha_,
        "thumbnail_size": m.size_,
        "anchor": m.anchor_.name,
        "n_train": len(fs.labels["train"]),
        "n_test": len(correct),
        "n_experts": len(ex.names),
        "correct": correct,
        "test_ids": fs.indices.get("test"),
    }


def run_ablation(
    ablation: str,
    variants: Mapping[str, Variant],
    runs: AblationRuns,
    reference: str | None = None,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit every variant once per seed (default: the config's seeds) on that seed's draw and score it;
    one row per (variant, seed).

    Columns are ``ABLATION_COLUMNS``: test ``accuracy`` and ``val_accuracy`` (for choices made on
    validation); ``correct``, the per-image test correctness (a bool array, aligned between the
    variants of a seed) and ``test_ids``, those images' pool indices (None when the pool has none);
    ``gflops_per_image``, the backbone GFLOPs that run per image plus the gate's
    (``TwoStageMoE.expected_gflops``); ``gate_params``; ``gate_mflops`` (gate multiply-adds per image);
    ``mean_max_gate_weight``, the mean over test images of the largest mixture weight (1 is hard
    routing, 1/n_experts uniform); the ``alpha``, ``thumbnail_size`` and ``anchor`` chosen on
    validation; ``reference`` marks the variant that ``paired_deltas`` compares against. Fits live in
    ``runs``: variants equal in data and recipe share one (e.g. soft and top-1 inference, or a fixed
    thumbnail size and the recipe that chose it), within and between calls.
    """
    if not variants:
        raise ValueError(f"ablation {ablation!r} has no variants")
    bad = [n for n, v in variants.items() if not isinstance(v, Variant)]
    if bad:
        raise ValueError(f"variants {bad} of {ablation!r} must be Variant objects")
    seeds = runs.config.seeds if seeds is None else list(seeds)
    if not seeds:
        raise ValueError("run_ablation needs at least one seed")
    if reference is not None and reference not in variants:
        raise ValueError(
            f"reference {reference!r} is not a variant of {ablation!r}; variants: {list(variants)}"
        )
    first = next(iter(variants))
    rows = []
    with seed_mode(runs.config.train):
        steps = tqdm(
            [(s, n) for s in seeds for n in variants], desc=f"ablation: {ablation}", disable=not progress
        )
        for seed, name in steps:
            steps.set_postfix_str(f"seed={seed} {name}")
            v = variants[name]
            _same_test_images(name, first, runs.split(v, seed), runs.split(variants[first], seed), seed)
            run, m = runs.fit(v, seed)
            row = {"ablation": ablation, "setting": name, "reference": name == reference, "seed": seed}
            rows.append({**row, **_score(run, m, v.top_k)})
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _check(results: pd.DataFrame) -> None:
    missing = sorted(set(ABLATION_COLUMNS) - set(results.columns))
    if missing:
        raise ValueError(f"results lack columns {missing}; pass the output of run_ablation")


def _per_seed(rows: pd.DataFrame) -> list[np.ndarray]:
    return [np.asarray(c, dtype=bool) for c in rows.sort_values("seed")["correct"]]


def _image_ids(rows: pd.DataFrame) -> list[np.ndarray] | None:
    """Per seed, the pool index of each test image, so that an image shared by several seeds (an
    official test set) is resampled jointly; None when some seed lacks them."""
    ids = list(rows.sort_values("seed")["test_ids"])
    return None if any(i is None for i in ids) else [np.asarray(i) for i in ids]


def _scores(results: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """``stats.score_table`` of each ablation's settings against its reference (None: no reference),
    with ``ablation`` and ``reference_setting`` columns, one row per (ablation, setting) in order."""
    _check(results)
    parts = []
    for ablation, g in results.groupby("ablation", sort=False):
        settings = dict(tuple(g.groupby("setting", sort=False)))
        ref = g[g["reference"]]
        reference = ref["setting"].iloc[0] if len(ref) else None
        for setting, rows in settings.items():
            if reference is not None and sorted(ref["seed"]) != sorted(rows["seed"]):
                raise ValueError(
                    f"{ablation}: setting {setting!r} has seeds {sorted(rows['seed'])} but the "
                    f"reference has {sorted(ref['seed'])}; pair them on the same seeds"
                )
        ids = _image_ids(ref if len(ref) else next(iter(settings.values())))
        table = score_table(
            {name: _per_seed(rows) for name, rows in settings.items()},
            reference,
            image_ids=ids,
            n_boot=n_boot,
        )
        parts.append(table.assign(ablation=ablation, reference_setting=reference))
    return pd.concat(parts, ignore_index=True).rename(columns={"model": "setting"})


def paired_deltas(results: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (ablation, setting): the accuracy change against the ablation's reference in points,
    ``delta`` with its paired 95% CI ``low``/``high`` (``stats.paired_difference`` over the seeds and
    their test images), ``Δ vs reference`` as text, ``significant`` (the CI excludes 0), ``p_mcnemar``
    (one seed only), ``p_holm`` (the bootstrap p-value Holm-adjusted over the settings of the same
    ablation, the comparisons read together) and a ``verdict`` sentence whose word uses it. The reference
    itself and settings of an ablation without one get NaN / NA."""
    return _deltas(_scores(results, n_boot))


def _deltas(scores: pd.DataFrame) -> pd.DataFrame:
    """``paired_deltas`` from the ablations' ``_scores``."""
    compared = scores["reference_setting"].notna() & (scores["setting"] != scores["reference_setting"])
    if "diff" not in scores:  # no ablation has a reference
        scores = scores.assign(
            diff=np.nan, diff_low=np.nan, diff_high=np.nan, p_mcnemar=np.nan, p_holm=np.nan
        )
    is_reference = scores["setting"] == scores["reference_setting"]
    frame = pd.DataFrame(
        {
            "ablation": scores["ablation"],
            "setting": scores["setting"],
            "delta": scores["diff"],
            "low": scores["diff_low"],
            "high": scores["diff_high"],
            "Δ vs reference": np.where(is_reference, "reference", scores.get("difference", "")),
            "significant": [
                (r.diff_low > 0 or r.diff_high < 0) if c else pd.NA
                for r, c in zip(scores.itertuples(), compared)
            ],
            "p_mcnemar": scores["p_mcnemar"],
            "p_holm": scores["p_holm"],
            "verdict": [
                verdict_sentence(r.setting, r.reference_setting, r.word, r.difference) + "." if c else ""
                for r, c in zip(scores.itertuples(), compared)
            ],
        }
    )
    return frame.astype({"significant": "boolean"})


def summarize(results: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (ablation, setting) in order of appearance: test accuracy (mean over seeds, a
    fraction) with its 95% bootstrap CI over seeds and images (``accuracy_low``/``accuracy_high``) and
    as text in % (``accuracy (95% CI)``); the mean ``val_accuracy``; whether it is the ``reference``;
    the paired change against the reference (``paired_deltas``); ``n_seeds``, ``n_test`` (per seed),
    the mean of the cost columns and the ``thumbnail sizes`` chosen, per seed."""
    scored = _scores(results, n_boot)  # one bootstrap serves the accuracies and the deltas
    scores = scored.set_index(["ablation", "setting"])
    deltas = _deltas(scored).set_index(["ablation", "setting"])
    rows = []
    for (ablation, setting), g in results.groupby(["ablation", "setting"], sort=False):
        score = scores.loc[(ablation, setting)]
        rows.append(
            {
                "ablation": ablation,
                "setting": setting,
                "reference": bool(g["reference"].any()),
                "accuracy_mean": score["accuracy"] / 100,
                "accuracy_low": score["low"] / 100,
                "accuracy_high": score["high"] / 100,
                "accuracy (95% CI)": score["text"],
                "val_accuracy": float(g["val_accuracy"].mean()),
                "n_seeds": len(g),
                "n_test": int(g["n_test"].iloc[0]),
                **g[COST_COLUMNS].mean().to_dict(),
                "thumbnail sizes": ", ".join(str(int(t)) for t in g.sort_values("seed")["thumbnail_size"]),
            }
        )
    out = pd.DataFrame(rows).set_index(["ablation", "setting"])
    return out.join(deltas).reset_index()


def summary_table(
    summary: pd.DataFrame,
    columns: Sequence[str] = ("gflops_per_image", "gate_mflops"),
    index: str | Sequence[str] = "setting",
) -> pd.DataFrame:
    """A ``summarize`` frame formatted for reading: accuracy and the change against the reference with
    their CIs, validation accuracy in %, and the chosen ``columns`` (``COST_COLUMNS`` or
    ``"thumbnail sizes"``), rounded and titled."""
    unknown = sorted(set(columns) - {*COST_COLUMNS, "thumbnail sizes"})
    if unknown:
        raise ValueError(f"unknown columns {unknown}; valid: {[*COST_COLUMNS, 'thumbnail sizes']}")
    cols = ["accuracy (95% CI)", "Δ vs reference", "val_accuracy", *columns]
    t = summary.set_index(index)[cols].copy()
    t["val_accuracy"] = (100 * t["val_accuracy"]).round(2)
    for c in columns:
        if c in _COUNTS:
            t[c] = t[c].round(0).astype(int)
        elif c != "thumbnail sizes":
            t[c] = t[c].round(2 if c == "alpha" else 4)
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
    reference_band: bool = False,
) -> None:
    """Test accuracy (%) with its 95% CI for each setting of a ``summarize`` frame: against a numeric
    column (or values) ``x``, else as a category per setting. ``reference_band`` draws the reference
    as a horizontal line with its CI band instead of a point (for a reference off the x axis, such as
    a thumbnail size chosen per seed)."""
    if reference_band:
        ref = summary[summary["reference"]].iloc[0]
        ax.axhline(100 * ref["accuracy_mean"], color="C1", linewidth=1, label=ref["setting"])
        ax.axhspan(100 * ref["accuracy_low"], 100 * ref["accuracy_high"], color="C1", alpha=0.15)
        ax.legend(loc="lower right")
        keep = ~summary["reference"].to_numpy()
        summary = summary[keep]
        x = x if x is None or isinstance(x, str) else [v for v, k in zip(x, keep) if k]
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
        ax.set_xticks(list(xs), [f"{v:.3g}" for v in xs])
        ax.minorticks_off()
    if annotate and x is not None:
        for xi, yi, s in zip(xs, y, summary["setting"]):
            ax.annotate(s, (xi, yi), textcoords="offset points", xytext=(6, 6))
        ax.margins(x=0.12)  # room for the last point's label
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
