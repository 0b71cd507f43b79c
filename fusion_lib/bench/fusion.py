"""`python -m fusion_lib.bench fusion`: training throughput and the wall time of a full fusion run.

Features are loaded (and cached on first use) before anything is timed, so the numbers measure the
fusion methods alone: samples/s of the training loop for a linear probe and for the thumbnail-gated
mixture, then one dataset x every method x the seeds at the default sizes, against a 2-minute target.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import torch

from fusion_lib.fusion.training import TrainConfig, num_threads

TARGET_SECONDS = 120.0


def _parser() -> argparse.ArgumentParser:
    from fusion_lib.studies.cli import add_selection_arguments

    p = argparse.ArgumentParser(
        prog="python -m fusion_lib.bench fusion",
        description="Training throughput and wall time of all fusion methods on cached features.",
    )
    # the default sizes on every dataset: the 2-minute target is for a run at those sizes
    add_selection_arguments(p, sizes_per_dataset=False)
    p.add_argument("--epochs", type=int, default=10, help="fixed epochs of the throughput measurement")
    return p


def _throughput(fs, epochs: int, threads: int | None) -> dict[str, float]:
    from fusion_lib.fusion import baselines
    from fusion_lib.fusion.moe import MoE, MoEConfig

    # patience = epochs: every epoch runs, so samples/s is comparable across models
    fixed = TrainConfig(epochs=epochs, patience=epochs, threads=threads)
    _, probe = baselines.fit_probe(fs, fs.backbones[0], train=fixed)
    moe = MoE(MoEConfig(gate="thumbnail"), fixed).fit(fs)
    return {
        f"linear probe ({fs.backbones[0]})": probe.samples_per_s,
        f"MoE, thumbnail gate, {len(fs.backbones)} experts": moe.history_.samples_per_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print throughput (samples/s) and the wall time of every method over the seeds."""
    from fusion_lib.data.datasets import SplitSizes
    from fusion_lib.data.spec import FeatureSpec
    from fusion_lib.studies.config import ExperimentConfig
    from fusion_lib.studies.runner import load_features, run_experiment

    a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    data = FeatureSpec(a.dataset, a.backbones, SplitSizes(a.train, a.val, a.test))
    config = ExperimentConfig(data=data, methods=a.methods, seeds=list(range(a.seeds)))
    t = time.perf_counter()
    fs = load_features(config)
    print(
        f"features: {fs.dataset}, backbones {', '.join(fs.backbones)}, train/val/test "
        f"{len(fs.labels['train'])}/{len(fs.labels['val'])}/{len(fs.labels['test'])}, "
        f"loaded in {time.perf_counter() - t:.1f}s"
    )
    print(f"torch threads while training: {config.train.threads} (of {torch.get_num_threads()} available)")
    with num_threads(config.train.threads):
        rates = _throughput(fs, a.epochs, config.train.threads)
    for name, rate in rates.items():
        print(f"training throughput, {name}: {rate:,.0f} samples/s")
    t = time.perf_counter()
    result = run_experiment(config, feature_set=fs, progress=False)
    wall = time.perf_counter() - t
    n_methods = len(result.methods)
    print(
        f"wall time: {n_methods} methods x {len(config.seeds)} seeds on {fs.dataset}: {wall:.1f}s "
        f"({'within' if wall <= TARGET_SECONDS else 'OVER'} the {TARGET_SECONDS:.0f}s target)"
    )
    print(result.table().to_string())
    return 0
