"""``python -m fusion_lib run ...``: run fusion methods over seeds on cached backbone features and print
each method's accuracy with its 95% CI (and, with ``--compare``, its paired difference to a baseline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from fusion_lib.data import checks
from fusion_lib.data.datasets import SPLITS, SplitSizes
from fusion_lib.data.spec import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_SIZES,
    DEFAULT_THUMBNAIL_SIZE,
    FeatureSpec,
    check_dataset,
    default_sizes,
)
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.config import ExperimentConfig, check_compare
from fusion_lib.studies.registry import method_names
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.stats import MARGIN


def _input_size(text: str) -> int | None:
    return None if text == "native" else int(text)


def add_selection_arguments(p: argparse.ArgumentParser, *, sizes_per_dataset: bool) -> None:
    """The arguments that choose what an experiment runs on, with the library's defaults (the book's):
    --dataset, --backbones, --methods, --seeds (a count) and the split sizes --train, --val and --test.
    ``sizes_per_dataset``: the sizes default to None, for the caller to fill in per dataset."""
    d = ExperimentConfig()
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--backbones", default="offline", help="comma-separated names or 'offline'")
    p.add_argument(
        "--methods",
        default=d.methods,
        help=f"comma-separated names or 'all' (the registry's: {', '.join(method_names())}, single_<backbone>)",
    )
    p.add_argument("--seeds", type=int, default=len(d.seeds), help="number of seeds (0..n-1)")
    for split in SPLITS:
        default = None if sizes_per_dataset else getattr(DEFAULT_SIZES, split)
        shown = "the book's size for the dataset" if default is None else default
        p.add_argument(f"--{split}", type=int, default=default, help=f"images in the split; default: {shown}")


def _parser() -> argparse.ArgumentParser:
    d, t = ExperimentConfig(), TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m fusion_lib run",
        description="Run fusion methods over seeds on cached backbone features.",
    )
    add_selection_arguments(p, sizes_per_dataset=True)
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--device", default=t.device)
    p.add_argument(
        "--input-size",
        type=_input_size,
        default=DEFAULT_INPUT_SIZE,
        help="backbone input size in px, or 'native' for each backbone's own",
    )
    p.add_argument("--thumbnail-size", type=int, default=DEFAULT_THUMBNAIL_SIZE)
    p.add_argument("--expert", default=d.expert, help="expert head: 'linear' or 'mlp'")
    p.add_argument(
        "--compare",
        default=None,
        metavar="BASELINE",
        help="print each method's accuracy difference to BASELINE with a paired 95%% CI",
    )
    p.add_argument("--out", default=None, help="folder for config.json, results.csv and results.json")
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave unreadable image files out (they are listed) instead of stopping",
    )
    p.add_argument(
        "--background",
        default="white",
        metavar="COLOUR",
        help="what an ImageFolder's transparent pixels show: white (default), black or R,G,B",
    )
    p.add_argument(
        "--fit-cache",
        action="store_true",
        help="keep each seed's fitted models in $FUSION_CACHE/fits and load them in later runs",
    )
    return p


def _given(value: int | None, default: int) -> int:
    # not `value or default`: --train 0 must reach the checks, not silently become the default
    return default if value is None else value


def describe_intervals(result: ExperimentResult, baseline: str | None) -> str:
    """The header of the printed table: what was run and what its intervals and words mean."""
    n_test = len({int(i) for ids in result.test_ids for i in ids}) if result.test_ids else None
    images = f"{n_test:,} distinct test images" if n_test else "their test images"
    lines = [
        f"{result.metrics['dataset'].iat[0]}: {len(result.seeds)} seed(s), {images}.",
        "Intervals: 95% hierarchical bootstrap over seeds and test images (seeds resampled, and test images "
        "shared by several seeds resampled jointly); with one seed only the images are resampled.",
    ]
    if baseline:
        n = len(result.methods) - 1
        lines.append(
            f"Verdicts against {baseline}: equivalent (inside ±{MARGIN} points, two one-sided tests), else "
            f"better / worse (the difference is not zero), else inconclusive; both questions of the {n} "
            f"comparisons ({2 * n} p-values) under one Holm correction."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fusion_lib run ...``: run the experiment and print each method's accuracy with its
    95% CI (and, with ``--compare``, its paired difference to the baseline)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = argv[1:]
    a = _parser().parse_args(argv)
    if a.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    methods = a.methods
    if a.compare and a.methods != "all" and a.compare not in checks.split_names(a.methods):
        methods = f"{a.compare},{a.methods}"  # the baseline must run to be compared with
    try:
        sizes = default_sizes(check_dataset(a.dataset))
        data = FeatureSpec(
            a.dataset,
            a.backbones,
            SplitSizes(*(_given(getattr(a, s), getattr(sizes, s)) for s in SPLITS)),
            input_size=a.input_size,
            thumbnail_size=a.thumbnail_size,
            skip_bad_images=a.skip_bad_images,
            background=a.background,
        )
        if a.compare:
            check_compare(a.compare, data.backbones)
        config = ExperimentConfig(
            data=data,
            train=TrainConfig(epochs=a.epochs, lr=a.lr, device=a.device),
            methods=methods,
            seeds=list(range(a.seeds)),
            expert=a.expert,
            out_dir=a.out,
            fit_cache=a.fit_cache,
        )
        result = run_experiment(config)
    except ValueError as exc:  # bad names, sizes or settings: the message says what to change
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe_intervals(result, a.compare))
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40):
        print(result.table(a.compare).to_string())
    if a.out:
        print(f"results written to {Path(a.out).resolve()}")
    return 0
