"""``python -m fusion_lib run ...``: run fusion methods over seeds on cached backbone features and print
each method's accuracy with its 95% CI (and, with ``--compare``, its paired difference to a baseline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from fusion_lib.data import validation
from fusion_lib.data.datasets import OFFLINE_SPLIT_SIZES, SPLITS, SplitSizes
from fusion_lib.studies.config import ExperimentConfig, check_compare, check_methods
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.stats import MARGIN


def _input_size(text: str) -> int | None:
    return None if text == "native" else int(text)


def add_selection_arguments(p: argparse.ArgumentParser, *, sizes_per_dataset: bool) -> None:
    """The arguments that choose what an experiment runs on, with ``ExperimentConfig``'s defaults:
    --dataset, --backbones, --methods, --seeds (a count) and the split sizes --train, --val and --test.
    ``sizes_per_dataset``: the sizes default to None, for the caller to fill in per dataset."""
    d = ExperimentConfig()
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--backbones", default=d.backbones, help="comma-separated names or 'offline'")
    p.add_argument("--methods", default=d.methods, help="comma-separated names or 'all'")
    p.add_argument("--seeds", type=int, default=len(d.seeds), help="number of seeds (0..n-1)")
    for split in SPLITS:
        default = None if sizes_per_dataset else getattr(d, split)
        shown = "the book's size for the dataset" if default is None else default
        p.add_argument(f"--{split}", type=int, default=default, help=f"images in the split; default: {shown}")


def _parser() -> argparse.ArgumentParser:
    d = ExperimentConfig()
    p = argparse.ArgumentParser(
        prog="python -m fusion_lib run",
        description="Run fusion methods over seeds on cached backbone features.",
    )
    add_selection_arguments(p, sizes_per_dataset=True)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--device", default=d.device)
    p.add_argument(
        "--input-size",
        type=_input_size,
        default=d.input_size,
        help="backbone input size in px, or 'native' for each backbone's own",
    )
    p.add_argument("--thumbnail-size", type=int, default=d.thumbnail_size)
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
        "--fit-cache",
        action="store_true",
        help="keep each seed's fitted models in $FUSION_CACHE/fits and load them in later runs",
    )
    return p


def _default_sizes(dataset: str) -> SplitSizes:
    """The book's split sizes for its datasets (so the CLI reuses the book's feature cache)."""
    d = ExperimentConfig()
    return OFFLINE_SPLIT_SIZES.get(dataset, SplitSizes(d.train, d.val, d.test))


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
            f"Verdicts against {baseline}: better / worse when the interval excludes zero after Holm's "
            f"correction over the {n} comparisons, equivalent when it lies inside ±{MARGIN} points, "
            "else inconclusive."
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
    sizes = _default_sizes(a.dataset)
    methods = a.methods
    if a.compare and a.methods != "all" and a.compare not in validation.split_names(a.methods):
        methods = f"{a.compare},{a.methods}"  # the baseline must run to be compared with
    try:
        names = validation.backbones(a.backbones)
        check_methods(methods, names)
        if a.compare:
            check_compare(a.compare, names)
        config = ExperimentConfig(
            dataset=a.dataset,
            train=_given(a.train, sizes.train),
            val=_given(a.val, sizes.val),
            test=_given(a.test, sizes.test),
            backbones=a.backbones,
            methods=methods,
            seeds=list(range(a.seeds)),
            thumbnail_size=a.thumbnail_size,
            epochs=a.epochs,
            lr=a.lr,
            device=a.device,
            input_size=a.input_size,
            expert=a.expert,
            out_dir=a.out,
            skip_bad_images=a.skip_bad_images,
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
