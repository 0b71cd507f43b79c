"""Feature-extraction benchmarks (`python -m fusion_lib.bench features|precision`): throughput of the
extraction pipeline against raw forward passes, and low-precision speed and probe accuracy."""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fusion_lib.data.backbones import load_backbone, resolve_backbones
from fusion_lib.data.datasets import DatasetSplits, SplitSizes, load_dataset
from fusion_lib.data.device import resolve_device
from fusion_lib.data.extraction import (
    FeatureExtractor,
    cpu_bf16_supported,
    default_batch_size,
    default_workers,
    extract_features,
    resolve_precision,
)
from fusion_lib.data.spec import DEFAULT_INPUT_SIZE

REPEATS = 3


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def median_rates(runs: dict[str, Callable[[], object]], n: int, repeats: int = REPEATS) -> dict[str, float]:
    """Images/s of each run (median of ``repeats``); the runs are interleaved so that a machine whose load
    changes during the benchmark slows all of them alike and their ratio stays stable."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: _rate(n, statistics.median(v)) for k, v in times.items()}


def pipeline_rates(
    ex: "FeatureExtractor", data: "DatasetSplits", split: str, rows: np.ndarray, repeats: int = REPEATS
) -> dict[str, float]:
    """Images/s of the raw forward (on inputs prepared in advance) and of the whole pipeline (decode in
    the loader, batched resize and normalisation, forward) over ``rows`` of ``split``.

    The two are timed batch by batch in alternation, ``repeats`` times; each batch's time is its median
    over the repeats (as is the loader's start, which the pipeline pays), and a rate is the images over
    the sum of those medians. A shared machine's load then slows both alike, and a pause that hits one
    batch once does not count, so the ratio measures the pipeline, not the neighbours."""
    ready = [ex.prepare(b) for b in ex.loader(data, split, rows)]
    ex.forward(ready[0])  # warm-up: first calls pay one-off allocation costs
    # times[kind][step][repeat]; the pipeline's step 0 is starting its loader
    times: dict[str, list[list[float]]] = {
        "raw": [[] for _ in ready],
        "pipeline": [[] for _ in range(len(ready) + 1)],
    }
    for _ in range(repeats):
        t = time.perf_counter()
        batches = iter(ex.loader(data, split, rows))
        times["pipeline"][0].append(time.perf_counter() - t)
        for i, x in enumerate(ready):
            for kind in ("raw", "pipeline") if i % 2 else ("pipeline", "raw"):
                t = time.perf_counter()
                ex.forward(x if kind == "raw" else ex.prepare(next(batches)))
                times[kind][i + (kind == "pipeline")].append(time.perf_counter() - t)
    return {k: _rate(len(rows), sum(map(statistics.median, steps))) for k, steps in times.items()}


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Test accuracy (%) of a standardised logistic-regression probe trained on frozen features."""

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return 100.0 * float(probe.fit(train_x, train_y).score(test_x, test_y))


def bench_features(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fusion_lib.bench features",
        description="Raw forward vs whole-pipeline throughput, and cold vs warm cache.",
    )
    p.add_argument("--backbones", default="offline")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--images", type=int, default=1024, help="images per measurement (the test split's size)")
    p.add_argument(
        "--repeats", type=int, default=REPEATS, help="each measurement's repeats; the median is shown"
    )
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--sweep", default="64,96,128", help="input sizes whose raw speed is measured for the first backbone"
    )
    args = p.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        p.error("--images and --repeats must be >= 1")
    names = resolve_backbones(args.backbones)
    data = load_dataset(
        args.dataset, SplitSizes(train=100, val=10, test=args.images)
    )  # only test is measured
    n, rows = args.images, np.arange(args.images)
    device = resolve_device(args.device)
    print(
        f"dataset {args.dataset}, {n} images, input {args.input_size}px, median of {args.repeats}, "
        f"{os.cpu_count()} CPU cores, device {device}, precision {resolve_precision('auto', device)}, "
        f"channels_last, batches of {default_batch_size(device)}, {default_workers(device)} loader workers"
    )
    print(
        "raw = the forward pass alone on ready model inputs (the fastest correct forward on this machine); "
        "pipeline = decode + batched resize/normalise + forward"
    )
    print(
        f"{'backbone':24s} {'raw img/s':>10s} {'pipeline img/s':>15s} {'ratio':>6s} {'cold s':>7s} {'warm s':>7s} "
        f"{'warm speed-up':>14s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            ex = FeatureExtractor(load_backbone(name, input_size=args.input_size), args.device)
            rates = pipeline_rates(ex, data, "test", rows, args.repeats)
            cold_dir = os.path.join(tmp, f"cache-{name}")
            t = time.perf_counter()
            extract_features(
                name, data, "test", args.input_size, device=args.device, progress=False, cache_dir=cold_dir
            )
            cold = time.perf_counter() - t
            t = time.perf_counter()
            extract_features(
                name, data, "test", args.input_size, device=args.device, progress=False, cache_dir=cold_dir
            )
            warm = time.perf_counter() - t
            print(
                f"{name:24s} {rates['raw']:10.1f} {rates['pipeline']:15.1f} {rates['pipeline'] / rates['raw']:6.3f} "
                f"{cold:7.2f} {warm:7.3f} {cold / warm:13.0f}x",
                flush=True,
            )
    sizes = [int(s) for s in args.sweep.split(",") if s]
    if sizes:
        bs = default_batch_size(device)
        print(f"\ninput-size sweep, {names[0]}, raw forward, batches of {bs}:")
        base = None
        for s in sizes:
            ex = FeatureExtractor(load_backbone(names[0], input_size=s), args.device)
            x = torch.randn(bs, 3, s, s).contiguous(memory_format=torch.channels_last)
            ex.forward(x)
            batches = max(1, n // bs)
            rate = median_rates(
                {"raw": lambda: [ex.forward(x) for _ in range(batches)]}, bs * batches, args.repeats
            )["raw"]
            base = base or rate
            print(f"  {s:4d}px {rate:8.1f} img/s  ({rate / base:.2f}x the {sizes[0]}px speed)")
    return 0


def precision_check(
    name: str,
    dataset: str,
    sizes: tuple[int, int],
    input_size: int,
    device: str,
    low: str,
    repeats: int = REPEATS,
) -> dict:
    """fp32 against a lower precision (``low``: "bf16" or "fp16") for one backbone on real images: raw
    forward speed of both, max abs feature difference, and linear-probe test accuracy of both (%)."""

    train, test = sizes
    data = load_dataset(dataset, SplitSizes(train=train, val=10, test=test), seed=0)
    bb = load_backbone(name, input_size=input_size)
    ref = FeatureExtractor(bb, "cpu", precision="fp32")
    fast = FeatureExtractor(copy.deepcopy(bb), device, precision=low)  # its own copy: it may move to a GPU
    feats: dict[str, dict[str, np.ndarray]] = {}
    for label, ex in (("fp32", ref), (low, fast)):
        feats[label] = {s: ex.features(data, s, np.arange(len(data.indices[s]))) for s in ("train", "test")}
    x = ref.prepare(next(iter(ref.loader(data, "test", np.arange(min(64, test))))))
    for ex in (ref, fast):
        ex.forward(x)  # warm-up
    speed = median_rates({"fp32": lambda: ref.forward(x), low: lambda: fast.forward(x)}, len(x), repeats)
    acc = {
        k: probe_accuracy(v["train"], data.labels["train"], v["test"], data.labels["test"])
        for k, v in feats.items()
    }
    return {
        "backbone": name,
        "images": train + test,
        "fp32 img/s": speed["fp32"],
        f"{low} img/s": speed[low],
        "speed-up": speed[low] / speed["fp32"],
        "max abs diff": float(np.abs(feats["fp32"]["test"] - feats[low]["test"]).max()),
        "fp32 acc": acc["fp32"],
        f"{low} acc": acc[low],
        "acc diff": acc[low] - acc["fp32"],
    }


def bench_precision(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fusion_lib.bench precision",
        description="bf16 autocast on the CPU against fp32: speed, feature difference and "
        "linear-probe accuracy on real images.",
    )
    p.add_argument("--backbones", default="squeezenet1_1,tf_efficientnet_lite0")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    args = p.parse_args(argv)

    print(
        f"CPU bf16 support (AVX-512 BF16 or AMX): {cpu_bf16_supported()}; {torch.get_num_threads()} threads; "
        f"{args.dataset}, {args.train} train / {args.test} test images, {args.input_size}px, channels_last"
    )
    for name in resolve_backbones(args.backbones):
        r = precision_check(name, args.dataset, (args.train, args.test), args.input_size, "cpu", "bf16")
        print(
            f"{name:24s} fp32 {r['fp32 img/s']:7.1f} img/s  bf16 {r['bf16 img/s']:7.1f} img/s "
            f"({r['speed-up']:.2f}x)  max abs diff {r['max abs diff']:.3f}  probe acc fp32 {r['fp32 acc']:.2f}% "
            f"bf16 {r['bf16 acc']:.2f}% ({r['acc diff']:+.2f} points)",
            flush=True,
        )
    return 0
