"""Experiment runner: every fusion method over several seeds on one dataset's cached features.

``run_experiment(config)`` returns a tidy DataFrame with columns ``dataset, method, seed, metric,
value`` (test-split metrics unless the metric name says otherwise) and, given ``config.out_dir``,
writes ``config.json``, ``results.csv`` and ``results.json`` there. ``summarize`` gives mean ± std.
``main(argv)`` is the ``python -m fusion_lib run`` command line.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib import baselines
from fusion_lib import metrics as M
from fusion_lib import validation
from fusion_lib.feature_set import FeatureSet
from fusion_lib.features import OFFLINE_INPUT_SIZE
from fusion_lib.agreement import mean_std
from fusion_lib.label_embedding import (OFFLINE_WORD_VECTORS, LabelSpaceModel, blend, choose_blend_weight,
                                        class_vectors, load_vectors)
from fusion_lib.moe import MoE, MoEConfig
from fusion_lib.training import TrainConfig, deterministic, num_threads

SINGLE_PREFIX = "single:"
RESULT_COLUMNS = ["dataset", "method", "seed", "metric", "value"]


@dataclass
class ExperimentConfig:
    """One dataset, its subset sizes and backbones, the methods to run and the training settings.

    ``methods`` and ``backbones`` take a list or a comma-separated string (``"all"`` / ``"offline"``
    expand); ``seeds`` are the model seeds (initialisation, shuffling), while ``data_seed`` draws the
    dataset subsets once; ``top_k`` lists the sparse-gating levels reported for the gated mixtures;
    ``input_size=None`` extracts features at each backbone's native size; ``aliases`` maps class names
    or tokens without a word vector to words (see ``label_embedding.class_vectors``); ``moe`` passes
    extra ``MoEConfig`` settings (e.g. ``{"regularizer": "entropy", "reg_weight": -0.1}``) to every
    mixture method.
    """

    dataset: str = "fashion_mnist"
    train: int = 1500
    val: int = 500
    test: int = 1000
    backbones: str | list[str] = "offline"
    methods: str | list[str] = "all"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    thumbnail_size: int = 32
    epochs: int = 60
    lr: float = 3e-3
    batch_size: int | None = 256
    patience: int = 8
    device: str = "cpu"
    threads: int | None = 1
    input_size: int | None = OFFLINE_INPUT_SIZE
    data_seed: int = 0
    top_k: list[int] = field(default_factory=lambda: [1, 2])
    stacking_source: str = "val"
    word_vectors: str = OFFLINE_WORD_VECTORS
    aliases: dict[str, str] = field(default_factory=dict)
    moe: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None
    skip_bad_images: bool = False  # leave unreadable image files out (listed) instead of stopping

    def __post_init__(self) -> None:
        validation.experiment_config(self)  # every value, before any work
        valid = {f.name for f in fields(MoEConfig)} - {"gate", "label_experts", "thumbnail_size"}
        unknown = sorted(set(self.moe) - valid)
        if unknown:
            raise ValueError(f"unknown moe options {unknown}; valid options: {sorted(valid)}")

    def train_config(self) -> TrainConfig:
        """The shared optimisation settings."""
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, patience=self.patience,
                           device=self.device, threads=self.threads)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, path: str | Path) -> "ExperimentConfig":
        """Read a config.json written by ``run_experiment``."""
        data = json.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        return cls(**data)


@dataclass
class MethodOutput:
    """What a method yields for one seed: class probabilities (or hard predictions) and its costs."""

    probs: dict[str, np.ndarray] | None = None
    preds: dict[str, np.ndarray] | None = None
    gflops_per_image: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class SeedRun:
    """Lazily trained models shared between the methods of one seed (probes, mixtures, label heads)."""

    def __init__(self, fs: FeatureSet, seed: int, config: ExperimentConfig, class_vecs: np.ndarray | None) -> None:
        self.fs, self.seed, self.config, self._class_vecs = fs, seed, config, class_vecs
        self.train = config.train_config()
        self._moes: dict[str, MoE] = {}

    @property
    def class_vecs(self) -> np.ndarray:
        if self._class_vecs is None:
            raise ValueError("label-space methods need class vectors; pass word_vectors to run_experiment")
        return self._class_vecs

    @cached_property
    def probes(self) -> dict[str, dict[str, np.ndarray]]:
        return baselines.fit_single_probes(self.fs, self.seed, self.train)

    @cached_property
    def label_model(self) -> LabelSpaceModel:
        return LabelSpaceModel(self.class_vecs, self.train).fit(self.fs, self.seed)

    def moe(self, gate: str, label_experts: bool = False) -> MoE:
        key = f"{gate}{'+label' if label_experts else ''}"
        if key not in self._moes:
            cfg = MoEConfig(gate=gate, label_experts=label_experts, thumbnail_size=self.config.thumbnail_size,
                            **self.config.moe)
            self._moes[key] = MoE(cfg, self.train, self.class_vecs if label_experts else None).fit(self.fs, self.seed)
        return self._moes[key]

    def total_gflops(self) -> float | None:
        return _gflops(self.fs, self.fs.backbones)


def _gflops(fs: FeatureSet, backbones: Sequence[str]) -> float | None:
    if not all(b in fs.backbone_gflops for b in backbones):
        return None
    return float(sum(fs.backbone_gflops[b] for b in backbones))


# -- methods -----------------------------------------------------------------------------------
def _single(backbone: str) -> Callable[[SeedRun], MethodOutput]:
    def run(r: SeedRun) -> MethodOutput:
        return MethodOutput(probs=r.probes[backbone], gflops_per_image=_gflops(r.fs, [backbone]))
    return run


def _best_single(r: SeedRun) -> MethodOutput:
    best = baselines.best_single(r.probes, r.fs)
    return MethodOutput(probs=r.probes[best], gflops_per_image=_gflops(r.fs, [best]),
                        extra={"chosen_backbone_index": float(r.fs.backbones.index(best))})


def _concat(r: SeedRun) -> MethodOutput:
    return MethodOutput(probs=baselines.fit_concat(r.fs, r.seed, r.train), gflops_per_image=r.total_gflops())


def _prob_avg(r: SeedRun) -> MethodOutput:
    return MethodOutput(probs=baselines.prob_average(r.probes), gflops_per_image=r.total_gflops())


def _stacking(r: SeedRun) -> MethodOutput:
    probs = baselines.fit_stacking(r.fs, r.probes, r.config.stacking_source, r.seed, r.train)
    return MethodOutput(probs=probs, gflops_per_image=r.total_gflops())


def _oracle(r: SeedRun) -> MethodOutput:
    preds = {s: baselines.oracle_predictions({b: p[s].argmax(1) for b, p in r.probes.items()}, r.fs.labels[s])
             for s in ("val", "test")}
    return MethodOutput(preds=preds, gflops_per_image=r.total_gflops())


def _moe_output(r: SeedRun, moe: MoE) -> MethodOutput:
    fs = r.fs
    out = MethodOutput(probs={s: moe.predict_proba(fs, s) for s in ("val", "test")},
                       extra={"gate_params": float(moe.gate_params), "gate_mflops": moe.gate_flops / 1e6,
                              "epochs_run": float(len(moe.history_.train_loss))})
    if _gflops(fs, fs.backbones) is None:
        return out
    out.gflops_per_image = moe.expected_gflops(fs, "test")
    # top-k of the uniform gate would only drop a fixed, arbitrary set of experts: report learned gates
    if moe.config.gate in ("thumbnail", "feature", "static"):
        for k in r.config.top_k:
            if k < len(moe.expert_names):
                y = fs.labels["test"]
                out.extra[f"accuracy_top{k}"] = M.accuracy(y, moe.predict(fs, "test", top_k=k))
                out.extra[f"gflops_per_image_top{k}"] = moe.expected_gflops(fs, "test", top_k=k)
    return out


def _moe(gate: str, label_experts: bool = False) -> Callable[[SeedRun], MethodOutput]:
    return lambda r: _moe_output(r, r.moe(gate, label_experts))


def _label_space(r: SeedRun) -> MethodOutput:
    probs = {s: r.label_model.predict_proba(r.fs, s) for s in ("val", "test")}
    return MethodOutput(probs=probs, gflops_per_image=r.total_gflops())


def _blend_label(r: SeedRun) -> MethodOutput:
    visual = r.moe("thumbnail")
    p_vis = {s: visual.predict_proba(r.fs, s) for s in ("val", "test")}
    p_lab = {s: r.label_model.predict_proba(r.fs, s) for s in ("val", "test")}
    w = choose_blend_weight(p_vis["val"], p_lab["val"], r.fs.labels["val"])
    total = r.total_gflops()
    return MethodOutput(probs={s: blend(p_vis[s], p_lab[s], w) for s in p_vis},
                        gflops_per_image=None if total is None else total + visual.gate_flops / 1e9,
                        extra={"blend_weight": w})


METHODS: dict[str, Callable[[SeedRun], MethodOutput]] = {
    "best_single": _best_single,
    "concat": _concat,
    "prob_avg": _prob_avg,
    "stacking": _stacking,
    "oracle": _oracle,
    "moe_uniform": _moe("uniform"),
    "moe_static": _moe("static"),
    "moe_feature": _moe("feature"),
    "moe_thumbnail": _moe("thumbnail"),
    "moe_thumbnail_label": _moe("thumbnail", label_experts=True),
    "label_space": _label_space,
    "blend_label": _blend_label,
}
LABEL_METHODS = ("moe_thumbnail_label", "label_space", "blend_label")


def method_names(backbones: Sequence[str]) -> list[str]:
    """Every valid method name for these backbones, in report order (``"all"`` expands to this)."""
    return [f"{SINGLE_PREFIX}{b}" for b in backbones] + list(METHODS)


def resolve_methods(spec: str | Sequence[str], backbones: Sequence[str]) -> list[str]:
    """Method names from a list or comma-separated string; ``"all"`` expands, ``single_<b>`` is accepted."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    valid = method_names(backbones)
    out: list[str] = []
    for name in filter(None, names):
        expanded = valid if name == "all" else [name.replace("single_", SINGLE_PREFIX, 1)
                                                if name.startswith("single_") else name]
        for m in expanded:
            if m not in valid:
                raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(valid)} (or 'all')")
            if m not in out:
                out.append(m)
    if not out:
        raise ValueError(f"no methods given; valid methods: {', '.join(valid)} (or 'all')")
    return out


def _method_fn(name: str) -> Callable[[SeedRun], MethodOutput]:
    return _single(name[len(SINGLE_PREFIX):]) if name.startswith(SINGLE_PREFIX) else METHODS[name]


def _metrics(out: MethodOutput, fs: FeatureSet) -> dict[str, float]:
    y_test, y_val = fs.labels["test"], fs.labels["val"]
    if out.probs is not None:
        res = {"accuracy": M.accuracy(y_test, out.probs["test"].argmax(1)),
               "val_accuracy": M.accuracy(y_val, out.probs["val"].argmax(1)),
               "ece": M.expected_calibration_error(out.probs["test"], y_test),
               "nll": M.log_loss(out.probs["test"], y_test)}
    else:
        res = {"accuracy": M.accuracy(y_test, out.preds["test"]), "val_accuracy": M.accuracy(y_val, out.preds["val"])}
    if out.gflops_per_image is not None:
        res["gflops_per_image"] = out.gflops_per_image
    return {**res, **out.extra}


def load_features(config: ExperimentConfig) -> FeatureSet:
    """The config's FeatureSet through ``fusion_lib.features.load_feature_set`` (cached on disk)."""
    from fusion_lib.data import SplitSizes
    from fusion_lib.features import load_feature_set

    return load_feature_set(config.dataset, config.backbones, SplitSizes(config.train, config.val, config.test),
                            seed=config.data_seed, input_size=config.input_size,
                            thumbnail_size=config.thumbnail_size, device=config.device,
                            skip_bad_images=config.skip_bad_images)


def run_experiment(config: ExperimentConfig, feature_set: FeatureSet | None = None, word_vectors: Any = None,
                   progress: bool = True) -> pd.DataFrame:
    """Run every method of ``config`` over its seeds; return the tidy results (and write them to out_dir).

    ``feature_set`` skips feature loading: all its backbones are used when ``config.backbones`` is
    "offline", else the named subset; ``word_vectors`` (gensim KeyedVectors or a word -> vector
    mapping) replaces loading ``config.word_vectors``.
    """
    fs = feature_set if feature_set is not None else load_features(config)
    if feature_set is not None and config.backbones != "offline":
        names = config.backbones.split(",") if isinstance(config.backbones, str) else config.backbones
        fs = fs.subset_backbones([n.strip() for n in names])
    methods = resolve_methods(config.methods, fs.backbones)
    if not config.seeds:
        raise ValueError("config.seeds is empty; give at least one seed")
    class_vecs = None
    if any(m in LABEL_METHODS for m in methods):
        vectors = word_vectors if word_vectors is not None else load_vectors(config.word_vectors)
        class_vecs = class_vectors(fs.class_names, vectors, config.aliases)
    rows = []
    with deterministic(), num_threads(config.threads):
        steps = tqdm([(s, m) for s in config.seeds for m in methods], desc=f"{fs.dataset} methods",
                     disable=not progress)
        run = None
        for seed, method in steps:
            if run is None or run.seed != seed:
                run = SeedRun(fs, seed, config, class_vecs)
            steps.set_postfix_str(f"seed={seed} {method}")
            for metric, value in _metrics(_method_fn(method)(run), fs).items():
                rows.append((fs.dataset, method, seed, metric, float(value)))
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if config.out_dir:
        save_results(df, config)
    return df


def save_results(df: pd.DataFrame, config: ExperimentConfig) -> Path:
    """Write config.json, results.csv and results.json into ``config.out_dir``; return the folder."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.to_json())
    df.to_csv(out / "results.csv", index=False)
    df.to_json(out / "results.json", orient="records", indent=1)
    return out


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """Read the results.csv of a run folder."""
    return pd.read_csv(Path(out_dir) / "results.csv")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (over seeds) and count per (dataset, method, metric), with a text column."""
    missing = sorted(set(RESULT_COLUMNS) - set(df.columns))
    if missing:
        raise ValueError(f"results frame lacks columns {missing}; expected {RESULT_COLUMNS}")
    return mean_std(df, ["dataset", "method", "metric"], "value", digits=4)


def summary_table(df: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "ece", "gflops_per_image")) -> pd.DataFrame:
    """Methods as rows, the chosen metrics as "mean ± std" columns (one dataset at a time)."""
    s = summarize(df)
    s = s[s["metric"].isin(metrics)]
    table = s.pivot_table(index=["dataset", "method"], columns="metric", values="mean ± std", aggfunc="first",
                          sort=False)
    return table[[m for m in metrics if m in table.columns]].fillna("")


def _input_size(text: str) -> int | None:
    return None if text == "native" else int(text)


def _parser() -> argparse.ArgumentParser:
    d = ExperimentConfig()
    p = argparse.ArgumentParser(prog="python -m fusion_lib run",
                                description="Run fusion methods over seeds on cached backbone features.")
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--backbones", default=d.backbones, help="comma-separated names or 'offline'")
    p.add_argument("--methods", default=d.methods, help="comma-separated names or 'all'")
    p.add_argument("--seeds", type=int, default=len(d.seeds), help="number of seeds (0..n-1)")
    p.add_argument("--train", type=int, default=None, help="default: the book profile's size for the dataset")
    p.add_argument("--val", type=int, default=None)
    p.add_argument("--test", type=int, default=None)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--device", default=d.device)
    p.add_argument("--input-size", type=_input_size, default=d.input_size,
                   help="backbone input size in px, or 'native' for each backbone's own")
    p.add_argument("--thumbnail-size", type=int, default=d.thumbnail_size)
    p.add_argument("--out", default=None, help="folder for config.json, results.csv and results.json")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave unreadable image files out (they are listed) instead of stopping")
    return p


def _default_sizes(dataset: str):
    """The book profile's split sizes for its datasets (so the CLI reuses the book's feature cache)."""
    from fusion_lib.data import SplitSizes
    from fusion_lib.profiles import PROFILES

    book = PROFILES["book"]
    if dataset in book.datasets:
        return book.split_sizes(dataset)
    d = ExperimentConfig()
    return SplitSizes(d.train, d.val, d.test)


def _given(value: int | None, default: int) -> int:
    # not `value or default`: --train 0 must reach the checks, not silently become the default
    return default if value is None else value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fusion_lib run ...``: run the experiment and print mean ± std per method."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = argv[1:]
    a = _parser().parse_args(argv)
    if a.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    sizes = _default_sizes(a.dataset)
    try:
        validation.methods(a.methods, validation.backbones(a.backbones))
        config = ExperimentConfig(dataset=a.dataset, train=_given(a.train, sizes.train),
                                  val=_given(a.val, sizes.val), test=_given(a.test, sizes.test),
                                  backbones=a.backbones, methods=a.methods,
                                  seeds=list(range(a.seeds)), thumbnail_size=a.thumbnail_size, epochs=a.epochs,
                                  lr=a.lr, device=a.device, input_size=a.input_size, out_dir=a.out,
                                  skip_bad_images=a.skip_bad_images)
        df = run_experiment(config)
    except ValueError as exc:  # bad names, sizes or settings: the message says what to change
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40):
        print(summary_table(df).to_string())
    if a.out:
        print(f"results written to {Path(a.out).resolve()}")
    return 0
