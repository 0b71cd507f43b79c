"""`python -m fusion_lib.bench fusion`: where one seed's fitting time goes, method by method.

On cached features (the book's Fashion-MNIST features by default: 10,000 training images, the four
experts), one seed runs every method in the registry's order, with the fit cache off, the way a study
runs it (deterministic kernels, the train config's thread cap). Methods share fits (the probes, the
out-of-fold probes, the anchor's fixed fusions, one gate per thumbnail size), so each method's time is
what it added: the fits it made and its own inference; the fits it only read are listed as shared.

Each fit's arithmetic is counted from its layers (``TrainHistory.flops``) and set against this CPU's
one-thread matrix rate, measured in the same run: the ratio says how far a method's time is from the
arithmetic it cannot avoid. A scikit-learn ``LogisticRegression`` (lbfgs) on the widest expert's
features is timed beside the library's probe on the same features, as a reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.extraction import load_feature_set
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.data.spec import FeatureSpec, default_sizes
from fusion_lib.fusion import baselines
from fusion_lib.fusion.label_space import class_vectors, load_vectors
from fusion_lib.fusion.training import TrainConfig, num_threads, recorded_fits
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.registry import any_needs_class_vectors, resolve_methods
from fusion_lib.studies.seed_run import SeedRun, seed_mode

# What a SeedRun shares between methods: lazily made stages, read by attribute
SHARED_STAGES = ("probes", "oof_probes", "experts", "anchor", "label_model")
# The checkout this module belongs to (what --beside runs against the other one)
THIS_CHECKOUT = Path(__file__).resolve().parents[2]
# One side of --beside: times one seed of the methods the parent sends, with whichever fusion_lib is first
# on its PYTHONPATH, through the calls every version of the library has had since the fit cache
# (run_experiment on a FeatureSet, fit cache off). It answers in JSON lines: the methods it knows once its
# features are loaded, then the seconds, so that both sides start timing together.
_SIDE = r"""
import json, sys, time
from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.extraction import load_feature_set
from fusion_lib.data.spec import FeatureSpec
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.runner import run_experiment

answers, sys.stdout = sys.stdout, sys.stderr  # only the answers go to the parent's pipe
a = json.loads(sys.argv[1])
sizes = SplitSizes(*a["sizes"])
spec = FeatureSpec(a["dataset"], a["backbones"], sizes) if a["backbones"] else FeatureSpec(a["dataset"], sizes=sizes)
pool = load_feature_set(spec)
train = TrainConfig(epochs=a["epochs"])
print(json.dumps(list(ExperimentConfig(spec, train, methods="all", seeds=[a["seed"]]).methods)), file=answers, flush=True)
methods = json.loads(sys.stdin.readline())
config = ExperimentConfig(spec, train, methods=methods, seeds=[a["seed"]], fit_cache=False)
t = time.perf_counter()
run_experiment(config, feature_set=pool, progress=False)
print(json.dumps(time.perf_counter() - t), file=answers, flush=True)
"""


def matrix_rate(threads: int | None, n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of a float32 ``n x n`` matrix product on ``threads`` torch threads (median of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with num_threads(threads):
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


class TracedSeedRun(SeedRun):
    """A SeedRun that notes, while a method runs, which shared stages, mixtures, gates and other methods'
    outputs it reads, and which of those it was the first to make."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made: set[str] = set()
        self.reads: list[set[str]] = []

    @contextmanager
    def method(self) -> Iterator[set[str]]:
        """Collect what the block reads (nested methods collect into the outer one too)."""
        seen: set[str] = set()
        self.reads.append(seen)
        try:
            yield seen
        finally:
            self.reads.pop()
            if self.reads:
                self.reads[-1] |= seen

    def _note(self, name: str) -> None:
        if self.reads:
            self.reads[-1].add(name)

    def __getattribute__(self, name: str) -> Any:
        if name in SHARED_STAGES:
            object.__getattribute__(self, "_note")(name)
        return object.__getattribute__(self, name)

    def output(self, name: str) -> Any:
        self._note(f"output:{name}")
        return super().output(name)

    def moe(self, gate: str, label_experts: bool = False) -> Any:
        self._note(f"joint mixture ({gate}{', label experts' if label_experts else ''})")
        return super().moe(gate, label_experts)

    def two_stage(self, cfg: Any) -> Any:
        sizes = f", {'/'.join(map(str, cfg.thumbnail_sizes))} px" if "thumbnail" in cfg.gate else ""
        noisy = ", noisy" if cfg.noisy_top_k else ""
        feats = f" of {'+'.join(cfg.feature_backbones)}" if cfg.feature_backbones else ""
        self._note(f"gate ({cfg.gate}{feats}{sizes}{noisy})")
        return super().two_stage(cfg)


def method_table(run: TracedSeedRun, methods: Sequence[str], rate: float) -> pd.DataFrame:
    """Per method, in order: seconds it added, the fits it made, their arithmetic, time over arithmetic at
    ``rate`` GFLOP/s, the shared stages (and other methods' outputs) it was the first to make, and those
    made by earlier methods that it read."""
    rows = []
    for name in methods:
        with recorded_fits() as fits, run.method() as reads:
            t = time.perf_counter()
            run.output(name)
            seconds = time.perf_counter() - t
        reads.discard(f"output:{name}")
        shared = sorted(r for r in reads if r in run.made)
        made = sorted(r for r in reads if r not in run.made)
        run.made |= reads | {f"output:{name}"}
        gflop = sum(f.flops for f in fits) / 1e9
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "fits made": len(fits),
                "GFLOP": gflop,
                "time / arithmetic": seconds / (gflop / rate) if gflop > 0 else float("nan"),
                "makes (for later methods too)": ", ".join(r.removeprefix("output:") for r in made),
                "shares (made earlier)": ", ".join(r.removeprefix("output:") for r in shared),
            }
        )
    return pd.DataFrame(rows).set_index("method")


def sklearn_reference(fs: FeatureSet, train: TrainConfig, rate: float) -> pd.DataFrame:
    """The library's linear probe against scikit-learn's ``LogisticRegression`` (lbfgs, standardised
    features) on the widest expert's features: seconds, test accuracy, and the probe's time over its
    arithmetic at ``rate`` GFLOP/s."""

    widest = max(fs.backbones, key=lambda b: fs.features["train"][b].shape[1])
    y = fs.labels
    with seed_mode(train), recorded_fits() as fits:
        t = time.perf_counter()
        head, _ = baselines.fit_probe(fs, widest, 0, train)
        probe_s = time.perf_counter() - t
        probe_acc = float(np.mean(baselines.probe_proba(head, fs, "test", widest).argmax(1) == y["test"]))
        t = time.perf_counter()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(fs.features["train"][widest], y["train"])
        sk_s = time.perf_counter() - t
        sk_acc = float(model.score(fs.features["test"][widest], y["test"]))
    dim = fs.features["train"][widest].shape[1]
    arithmetic = fits[0].flops / 1e9 / rate
    return (
        pd.DataFrame(
            [
                {
                    "fit": f"fusion_lib linear probe ({widest}, {dim}-d)",
                    "seconds": probe_s,
                    "test accuracy": probe_acc,
                },
                {"fit": "scikit-learn LogisticRegression (lbfgs)", "seconds": sk_s, "test accuracy": sk_acc},
            ]
        )
        .set_index("fit")
        .assign(**{"time / arithmetic": [probe_s / arithmetic, float("nan")]})
    )


def _answer(side: subprocess.Popen, log: Any, what: str) -> Any:
    """The next JSON line ``side`` prints, or an error that shows what it wrote to stderr."""
    line = side.stdout.readline()
    if not line:
        side.wait()
        log.seek(0)
        raise RuntimeError(f"the {what} side stopped (exit code {side.returncode}):\n{log.read()[-3000:]}")
    return json.loads(line)


def beside(other: Path, settings: dict[str, Any], methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Seconds of one seed of the methods both checkouts register (``methods``: those of them only), run
    by this checkout's code and by ``other``'s in two single-threaded processes side by side; ``settings``:
    dataset, backbones (None: the default experts), sizes (train, val, test), seed and epochs."""
    other = Path(other).resolve()
    if not (other / "fusion_lib" / "__init__.py").is_file():
        raise ValueError(
            f"--beside {other}: no fusion_lib package there; give a checkout of this repository, e.g. "
            "`git worktree add /tmp/old <commit>`"
        )
    sides: dict[str, tuple[subprocess.Popen, Any]] = {}
    for name, root in (("this", THIS_CHECKOUT), ("other", other)):
        log = tempfile.TemporaryFile("w+")
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, "-c", _SIDE, json.dumps(settings)]
        sides[name] = (
            subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            ),
            log,
        )
    try:
        known = {name: _answer(side, log, name) for name, (side, log) in sides.items()}
        common = [m for m in known["this"] if m in known["other"] and (methods is None or m in methods)]
        if not common:
            raise ValueError(f"the two checkouts share none of the methods asked for ({methods or 'all'})")
        for side, _ in sides.values():
            side.stdin.write(json.dumps(common) + "\n")
            side.stdin.flush()
        seconds = {name: _answer(side, log, name) for name, (side, log) in sides.items()}
    finally:
        for side, log in sides.values():
            side.kill()
            side.wait()
            log.close()
    only = {"this": sorted(set(known["this"]) - set(known["other"]))}
    only["other"] = sorted(set(known["other"]) - set(known["this"]))
    return pd.DataFrame(
        {
            "checkout": [str(THIS_CHECKOUT), str(other)],
            "seconds": [seconds["this"], seconds["other"]],
            "methods": [len(common)] * 2,
            "registered here only": [", ".join(only["this"]), ", ".join(only["other"])],
        },
        index=pd.Index(["this", "other"], name="code"),
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusion_lib.bench fusion",
        description="One seed of every method on cached features: seconds, shared fits, time over arithmetic.",
    )
    p.add_argument("--dataset", default="fashion_mnist", help="default: the book's Fashion-MNIST features")
    p.add_argument("--backbones", default=None, help="comma-separated names; default: the book's experts")
    p.add_argument("--methods", default="all", help="comma-separated names or 'all' (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=TrainConfig().epochs, help="maximum epochs of every fit")
    for split in ("train", "val", "test"):
        p.add_argument(f"--{split}", type=int, default=None, help="images in the split; default: the book's")
    p.add_argument("--out", default=None, help="also write the method table to this CSV file")
    p.add_argument(
        "--beside",
        default=None,
        metavar="PATH",
        help="instead of the table: time one seed of the methods both have with this checkout's code and "
        "with the checkout at PATH (e.g. a git worktree of an older commit), side by side, and print the ratio",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the matrix rate, the per-method table of one seed and the scikit-learn reference."""
    a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    book = default_sizes(a.dataset)
    sizes = SplitSizes(*(getattr(a, s) or getattr(book, s) for s in ("train", "val", "test")))
    data = FeatureSpec(a.dataset, a.backbones, sizes) if a.backbones else FeatureSpec(a.dataset, sizes=sizes)
    if a.beside:
        settings = {
            "dataset": a.dataset,
            "backbones": a.backbones,
            "sizes": [sizes.train, sizes.val, sizes.test],
            "seed": a.seed,
        }
        methods = None if a.methods == "all" else resolve_methods(a.methods, data.backbones)
        table = beside(Path(a.beside), {**settings, "epochs": a.epochs}, methods)
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(table.to_string(float_format=lambda x: f"{x:,.1f}"))
        ratio = table.loc["this", "seconds"] / table.loc["other", "seconds"]
        print(f"this / other: {ratio:.2f} ({table['methods'].iloc[0]} methods, one seed each, side by side)")
        if a.out:
            table.to_csv(a.out)
        return 0
    t = time.perf_counter()
    pool = load_feature_set(data)
    fs = pool.draw(a.seed)
    print(
        f"features: {fs.dataset}, experts {', '.join(fs.backbones)}, train/val/test "
        f"{len(fs.labels['train'])}/{len(fs.labels['val'])}/{len(fs.labels['test'])} "
        f"(seed {a.seed}'s draw), loaded in {time.perf_counter() - t:.1f}s"
    )
    config = ExperimentConfig(data, TrainConfig(epochs=a.epochs), methods=a.methods, seeds=[a.seed])
    rate = matrix_rate(config.train.threads)
    print(
        f"matrix rate: {rate:.0f} GFLOP/s (float32 1024x1024 product, {config.train.threads} torch thread(s), "
        "the training thread cap)"
    )
    methods = resolve_methods(a.methods, fs.backbones)
    t = time.perf_counter()
    class_vecs = None
    if any_needs_class_vectors(methods):
        class_vecs = class_vectors(fs.class_names, load_vectors(config.word_vectors), config.aliases)
    with seed_mode(config.train):
        table = method_table(TracedSeedRun(fs, a.seed, config, class_vecs), methods, rate)
    wall = time.perf_counter() - t
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.to_string(float_format=lambda x: f"{x:,.2f}"))
    print(f"one seed, {len(methods)} methods: {wall:.1f}s")
    print(sklearn_reference(fs, config.train, rate).to_string(float_format=lambda x: f"{x:,.3f}"))
    if a.out:
        table.to_csv(a.out)
    return 0
