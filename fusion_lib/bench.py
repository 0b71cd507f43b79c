"""Benchmarks that print ratios measured in one run: `python -m fusion_lib.bench features|fusion`."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_features(argv: list[str]) -> int:
    from .array_cache import ArrayCache
    from .backbones import load_backbone, resolve_backbones
    from .data import SplitSizes, load_dataset
    from .features import OFFLINE_INPUT_SIZE, FeatureExtractor, extract_features

    p = argparse.ArgumentParser(prog="python -m fusion_lib.bench features",
                                description="Raw forward vs whole-pipeline throughput, and cold vs warm cache.")
    p.add_argument("--backbones", default="offline")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--images", type=int, default=256, help="images per measurement (the test split's size)")
    p.add_argument("--input-size", type=int, default=OFFLINE_INPUT_SIZE)
    p.add_argument("--sweep", default="64,96,128", help="input sizes whose raw speed is measured for the first backbone")
    args = p.parse_args(argv)
    names = resolve_backbones(args.backbones)
    data = load_dataset(args.dataset, SplitSizes(train=100, val=10, test=args.images))  # only test is measured
    n = args.images
    print(f"dataset {args.dataset}, {n} images, input {args.input_size}px, {torch.get_num_threads()} CPU threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"{'backbone':24s} {'raw img/s':>10s} {'pipeline img/s':>15s} {'ratio':>6s} {'cold s':>7s} {'warm s':>7s} {'warm speed-up':>14s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            bb = load_backbone(name, input_size=args.input_size)
            ex = FeatureExtractor(bb)
            batches = [ex.prepare(b) for b in ex.loader(data, "test", np.arange(n))]  # ready model inputs
            ex.forward(batches[0])  # warm-up: first calls pay one-off allocation costs
            t = time.perf_counter()
            for b in batches:
                ex.forward(b)
            raw = _rate(n, time.perf_counter() - t)
            t = time.perf_counter()
            feats = ex.run(data, "test", progress=False)
            ArrayCache(os.path.join(tmp, "pipeline")).save(name, feats, {"bench": name})
            pipe = _rate(n, time.perf_counter() - t)
            cold_dir = os.path.join(tmp, f"cache-{name}")
            t = time.perf_counter()
            extract_features(name, data, "test", args.input_size, progress=False, cache_dir=cold_dir)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            extract_features(name, data, "test", args.input_size, progress=False, cache_dir=cold_dir)
            warm = time.perf_counter() - t
            print(f"{name:24s} {raw:10.1f} {pipe:15.1f} {pipe / raw:6.2f} {cold:7.2f} {warm:7.3f} {cold / warm:13.0f}x",
                  flush=True)
    sizes = [int(s) for s in args.sweep.split(",") if s]
    if sizes:
        print(f"\ninput-size sweep, {names[0]}, raw forward on {n} images:")
        base = None
        for s in sizes:
            ex = FeatureExtractor(load_backbone(names[0], input_size=s))
            x = torch.randn(64, 3, s, s)
            ex.forward(x)
            t = time.perf_counter()
            for _ in range(max(1, n // 64)):
                ex.forward(x)
            rate = _rate(64 * max(1, n // 64), time.perf_counter() - t)
            base = base or rate
            print(f"  {s:4d}px {rate:8.1f} img/s  ({rate / base:.2f}x the {sizes[0]}px speed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("features", "fusion"):
        print("usage: python -m fusion_lib.bench {features,fusion} [--help]", file=sys.stderr)
        return 2
    if argv[0] == "features":
        return bench_features(argv[1:])
    from .bench_fusion import main as fusion_main

    return fusion_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
