"""Experiment runner: every fusion method over several seeds on one dataset's cached features.

``run_experiment(config)`` returns an ``ExperimentResult``: a tidy metrics frame with columns
``dataset, method, seed, metric, value`` (test-split metrics unless the metric name says otherwise)
and every method's outputs, so that any two methods can be compared with a paired 95% CI
(``result.compare(a, b)``). Given ``config.out_dir`` it writes ``config.json``, ``results.csv`` and
``results.json`` there. ``main(argv)`` is the ``python -m fusion_lib run`` command line. The methods
themselves live in ``fusion_lib.methods``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib import metrics as M
from fusion_lib import validation
from fusion_lib.agreement import mean_std
from fusion_lib.experts import EXPERT_KINDS
from fusion_lib.feature_set import FeatureSet
from fusion_lib.features import OFFLINE_INPUT_SIZE
from fusion_lib.label_embedding import OFFLINE_WORD_VECTORS, class_vectors, load_vectors
from fusion_lib.methods import (
    EVAL_SPLITS,
    LABEL_METHODS,
    METHODS,
    MethodOutput,
    SeedRun,
    method_fn,
    method_names,
    resolve_methods,
)
from fusion_lib.moe import MoEConfig
from fusion_lib.stats import Difference, bootstrap_mean_ci, paired_difference
from fusion_lib.training import TrainConfig, deterministic, num_threads
from fusion_lib.two_stage import ExpertOutputs

__all__ = ["METHODS", "ExperimentConfig", "ExperimentResult", "method_names", "resolve_methods", "run_experiment",
           "summarize", "summary_table"]
RESULT_COLUMNS = ["dataset", "method", "seed", "metric", "value"]


@dataclass
class ExperimentConfig:
    """One dataset, its subset sizes and backbones, the methods to run and the training settings.

    ``methods`` and ``backbones`` take a list or a comma-separated string (``"all"`` / ``"offline"``
    expand); ``seeds`` are the seeds of the models and of each seed's split of the pool, while
    ``data_seed`` draws the pool of images (whose features are extracted once); ``expert`` is the kind
    of expert head (``"linear"`` probe or ``"mlp"``); ``top_k`` lists the sparse-gating levels reported for the gated mixtures;
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
    expert: str = "linear"
    word_vectors: str = OFFLINE_WORD_VECTORS
    aliases: dict[str, str] = field(default_factory=dict)
    moe: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None
    skip_bad_images: bool = False  # leave unreadable image files out (listed) instead of stopping

    def __post_init__(self) -> None:
        validation.experiment_config(self)  # every value, before any work
        if self.expert not in EXPERT_KINDS:
            raise ValueError(f"unknown expert kind {self.expert!r}; valid kinds: {list(EXPERT_KINDS)}")
        valid = {f.name for f in fields(MoEConfig)} - {"gate", "label_experts", "thumbnail_size", "expert"}
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


def load_features(config: ExperimentConfig) -> FeatureSet:
    """The config's FeatureSet through ``fusion_lib.features.load_feature_set`` (cached on disk)."""
    from fusion_lib.data import SplitSizes
    from fusion_lib.features import load_feature_set

    return load_feature_set(config.dataset, config.backbones, SplitSizes(config.train, config.val, config.test),
                            seed=config.data_seed, input_size=config.input_size,
                            thumbnail_size=config.thumbnail_size, device=config.device,
                            skip_bad_images=config.skip_bad_images)


def _metrics(out: MethodOutput, fs: FeatureSet) -> dict[str, float]:
    y_test, y_val = fs.labels["test"], fs.labels["val"]
    res = {"accuracy": M.accuracy(y_test, out.predictions("test")),
           "val_accuracy": M.accuracy(y_val, out.predictions("val"))}
    if out.probs is not None:
        res.update(ece=M.expected_calibration_error(out.probs["test"], y_test), nll=M.log_loss(out.probs["test"], y_test))
    if out.gflops_per_image is not None:
        res["gflops_per_image"] = out.gflops_per_image
    return {**res, **out.extra}


@dataclass
class ExperimentResult:
    """What ``run_experiment`` returns: tidy metrics plus every method's outputs, for paired comparisons.

    ``metrics`` has columns ``dataset, method, seed, metric, value``; ``outputs[(method, seed)]`` holds
    the method's validation and test outputs; ``labels[seed]`` the labels of that seed's split;
    ``experts[seed]`` the calibrated expert outputs the two-stage gates were fit on (where one ran).
    """

    metrics: pd.DataFrame
    outputs: dict[tuple[str, int], MethodOutput]
    labels: dict[int, dict[str, np.ndarray]]
    experts: dict[int, ExpertOutputs] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.outputs))

    @property
    def seeds(self) -> list[int]:
        return list(self.labels)

    def correct(self, method: str, split: str = "test") -> list[np.ndarray]:
        """One boolean array per seed: whether ``method`` got each image of that seed's split right."""
        if method not in self.methods:
            raise ValueError(f"method {method!r} was not run; run methods: {', '.join(self.methods)}")
        return [self.outputs[(method, s)].predictions(split) == self.labels[s][split] for s in self.seeds]

    def compare(self, method: str, baseline: str, split: str = "test") -> Difference:
        """``method`` minus ``baseline`` accuracy in points, with a paired 95% CI (``fusion_lib.stats``)."""
        return paired_difference(self.correct(method, split), self.correct(baseline, split))

    def comparisons(self, baseline: str, methods: Sequence[str] | None = None) -> pd.DataFrame:
        """Every method against ``baseline``: difference, 95% CI, McNemar p (one seed) and display text."""
        rows = []
        for m in methods or [m for m in self.methods if m != baseline]:
            d = self.compare(m, baseline)
            rows.append({"method": m, "baseline": baseline, "diff": d.diff, "low": d.low, "high": d.high,
                         "p_mcnemar": d.p_mcnemar, "n_images": d.n_images, "n_seeds": d.n_seeds,
                         "vs baseline (points, 95% CI)": d.text()})
        return pd.DataFrame(rows)

    def accuracy_ci(self, method: str) -> tuple[float, float, float]:
        """(accuracy, low, high) in points over every seed's test images (seed-stratified bootstrap)."""
        return bootstrap_mean_ci([100.0 * c for c in self.correct(method)])

    def table(self, baseline: str | None = None) -> pd.DataFrame:
        """One row per method: test accuracy with its 95% CI, mean GFLOPs per image and, given a
        ``baseline``, the paired difference to it (points, 95% CI)."""
        gf = self.metrics[self.metrics["metric"] == "gflops_per_image"].groupby("method", sort=False)["value"].mean()
        rows = []
        for m in self.methods:
            acc, lo, hi = self.accuracy_ci(m)
            row = {"method": m, "accuracy % (95% CI)": f"{acc:.2f} [{lo:.2f}, {hi:.2f}]",
                   "GFLOPs / image": f"{gf[m]:.3f}" if m in gf.index else ""}
            if baseline is not None:
                row[f"vs {baseline} (points, 95% CI)"] = "" if m == baseline else self.compare(m, baseline).text()
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")


def run_experiment(config: ExperimentConfig, feature_set: FeatureSet | None = None, word_vectors: Any = None,
                   progress: bool = True) -> ExperimentResult:
    """Run every method of ``config`` over its seeds (and write the metrics to ``config.out_dir``).

    Features are extracted once for a pool of images (``feature_set``, or loaded from the cache);
    each seed then trains on its own split of that pool, ``pool.draw(seed)``: train and validation
    are re-drawn per seed, and so is the test split where the dataset has no official one.
    ``feature_set`` uses all its backbones when ``config.backbones`` is "offline", else the named
    subset; ``word_vectors`` (gensim KeyedVectors or a word -> vector mapping) replaces loading
    ``config.word_vectors``.
    """
    if feature_set is None:  # bad method names fail before any extraction
        from fusion_lib.backbones import resolve_backbones

        resolve_methods(config.methods, resolve_backbones(config.backbones))
    pool = feature_set if feature_set is not None else load_features(config)
    if feature_set is not None and config.backbones != "offline":
        names = config.backbones.split(",") if isinstance(config.backbones, str) else config.backbones
        pool = pool.subset_backbones([n.strip() for n in names])
    methods = resolve_methods(config.methods, pool.backbones)
    if not config.seeds:
        raise ValueError("config.seeds is empty; give at least one seed")
    class_vecs = None
    if any(m in LABEL_METHODS for m in methods):
        vectors = word_vectors if word_vectors is not None else load_vectors(config.word_vectors)
        class_vecs = class_vectors(pool.class_names, vectors, config.aliases)
    rows, outputs, labels, experts = [], {}, {}, {}
    with deterministic(), num_threads(config.threads):
        steps = tqdm([(s, m) for s in config.seeds for m in methods], desc=f"{pool.dataset} methods",
                     disable=not progress)
        run = None
        for seed, method in steps:
            if run is None or run.seed != seed:
                _keep_experts(run, experts)
                fs = pool.draw(seed)
                run = SeedRun(fs, seed, config, class_vecs)
                labels[seed] = {s: fs.labels[s] for s in EVAL_SPLITS}
            steps.set_postfix_str(f"seed={seed} {method}")
            out = outputs[(method, seed)] = method_fn(method)(run)
            for metric, value in _metrics(out, run.fs).items():
                rows.append((pool.dataset, method, seed, metric, float(value)))
        _keep_experts(run, experts)
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if config.out_dir:
        save_results(df, config)
    return ExperimentResult(df, outputs, labels, experts)


def _keep_experts(run: SeedRun | None, experts: dict[int, ExpertOutputs]) -> None:
    # only what a seed computed anyway: SeedRun.experts is a cached property
    if run is not None and "experts" in vars(run):
        experts[run.seed] = run.experts


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
    p.add_argument("--expert", default=d.expert, help="expert head: 'linear' or 'mlp'")
    p.add_argument("--compare", default=None, metavar="BASELINE",
                   help="print each method's accuracy difference to BASELINE with a paired 95%% CI")
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
    """``python -m fusion_lib run ...``: run the experiment and print each method's accuracy with its
    95% CI (and, with ``--compare``, its paired difference to the baseline)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = argv[1:]
    a = _parser().parse_args(argv)
    if a.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    sizes = _default_sizes(a.dataset)
    methods = a.methods
    if a.compare and a.methods != "all" and a.compare not in [m.strip() for m in a.methods.split(",")]:
        methods = f"{a.compare},{a.methods}"  # the baseline must run to be compared with
    try:
        names = validation.backbones(a.backbones)
        validation.methods(methods, names)
        if a.compare:
            validation.compare(a.compare, names)
        config = ExperimentConfig(dataset=a.dataset, train=_given(a.train, sizes.train),
                                  val=_given(a.val, sizes.val), test=_given(a.test, sizes.test),
                                  backbones=a.backbones, methods=methods,
                                  seeds=list(range(a.seeds)), thumbnail_size=a.thumbnail_size, epochs=a.epochs,
                                  lr=a.lr, device=a.device, input_size=a.input_size, expert=a.expert,
                                  out_dir=a.out, skip_bad_images=a.skip_bad_images)
        result = run_experiment(config)
    except ValueError as exc:  # bad names, sizes or settings: the message says what to change
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40):
        print(result.table(a.compare).to_string())
    if a.out:
        print(f"results written to {Path(a.out).resolve()}")
    return 0
