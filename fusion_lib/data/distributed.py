"""`python -m fusion_lib extract`: extract and cache a dataset's features, in one process or sharded.

Under ``torchrun --nproc_per_node K [--nnodes N ...] -m fusion_lib extract ...`` every rank computes its
share of the chunks (chunk c of each split belongs to rank c % world size) into the shared chunk store
of ``$FUSION_CACHE`` (or ``--cache-dir``); then rank 0 assembles, checks and publishes each cache entry,
exactly as a one-process run would have written it. Ranks talk through torch.distributed: gloo on the
CPU, nccl on GPUs (one per local rank).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import torch
import torch.distributed as dist

from fusion_lib.data import checks
from fusion_lib.data.backbones import BackboneError, default_input_size, load_backbone
from fusion_lib.data.cache import cache_key
from fusion_lib.data.datasets import SPLITS, DatasetError, DatasetSplits, SplitSizes, load_dataset
from fusion_lib.data.extraction import (
    PRECISIONS,
    FeatureExtractor,
    feature_cache,
    feature_spec,
    forward_settings,
    load_feature_set,
)
from fusion_lib.data.spec import DEFAULT_INPUT_SIZE, DEFAULT_THUMBNAIL_SIZE, FeatureSpec


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusion_lib extract",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset", required=True, help="a dataset name (see fusion_lib.data.LOADERS) or a folder"
    )
    p.add_argument("--backbones", default="offline", help="comma-separated names, or 'offline'")
    for split, n in zip(SPLITS, (SplitSizes.train, SplitSizes.val, SplitSizes.test)):
        p.add_argument(f"--{split}", type=int, default=n, help=f"{split} images (default {n})")
    p.add_argument("--seed", type=int, default=0, help="the data seed of the stratified subsets")
    p.add_argument(
        "--input-size",
        default=str(DEFAULT_INPUT_SIZE),
        help=f"pixels, or 'native' for each backbone's own size (default {DEFAULT_INPUT_SIZE})",
    )
    p.add_argument("--thumbnail-size", type=int, default=DEFAULT_THUMBNAIL_SIZE)
    p.add_argument(
        "--device", default="auto", help="auto, cpu or cuda; under torchrun each rank takes its local GPU"
    )
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--cache-dir", default=None, help="features cache (default $FUSION_CACHE/features)")
    p.add_argument(
        "--root", default=None, help="dataset root (default $FUSION_DATA_ROOT or $FUSION_CACHE/datasets)"
    )
    p.add_argument(
        "--download", action="store_true", help="let torchvision download the dataset (needs internet)"
    )
    return p


def fill_shards(
    names: Sequence[str],
    data: DatasetSplits,
    input_size: int | None,
    device: str,
    precision: str,
    cache_dir: str | None,
    rank: int,
    world: int,
) -> int:
    """This rank's share of every missing chunk of every backbone and split; returns how many it computed."""

    done = 0
    prec, batch = forward_settings(device, precision)
    for name in names:
        size = int(input_size or default_input_size(name))
        cache = feature_cache(data.name, name, cache_dir)
        keys = {s: cache_key(feature_spec(name, data, s, size, "auto", prec, batch)) for s in SPLITS}
        todo = [s for s in SPLITS if cache.load(keys[s]) is None]
        if not todo:
            continue
        ex = FeatureExtractor(load_backbone(name, input_size=size), device, batch, precision=prec)
        for s in todo:
            done += ex.fill_chunks(data, s, cache.chunk_store(keys[s]), rank, world, progress=rank == 0)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        input_size = None if args.input_size == "native" else int(args.input_size)
    except ValueError:
        print(f"error: --input-size takes pixels or 'native', got {args.input_size!r}", file=sys.stderr)
        return 2
    try:  # every parameter, before any rank loads data or weights
        spec = FeatureSpec(
            args.dataset,
            args.backbones,
            SplitSizes(args.train, args.val, args.test),
            seed=args.seed,
            input_size=input_size,
            thumbnail_size=args.thumbnail_size,
            root=args.root,
            download=args.download,
        )
        checks.device(args.device)
        checks.cache_dir(args.cache_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = args.device
    if world > 1:
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        names, sizes = list(spec.backbones), spec.sizes
        if rank == 0:  # only rank 0 downloads; the others wait for it, then read the same files
            data = load_dataset(args.dataset, sizes, seed=args.seed, root=args.root, download=args.download)
        if world > 1:
            dist.barrier()
        if rank != 0:
            data = load_dataset(args.dataset, sizes, seed=args.seed, root=args.root)
        if world > 1:
            done = fill_shards(names, data, input_size, device, args.precision, args.cache_dir, rank, world)
            print(f"rank {rank}/{world}: computed {done} chunk(s)", flush=True)
            dist.barrier()  # every chunk is in the store
        if rank == 0:
            # every chunk is in the store: this reads them (and downloads nothing again)
            fs = load_feature_set(
                spec.replace(download=False), device, cache_dir=args.cache_dir, precision=args.precision
            )
            print(
                f"cached features of {', '.join(names)} on {args.dataset}: "
                + ", ".join(f"{s} {len(fs.labels[s])}" for s in SPLITS),
                flush=True,
            )
        if world > 1:
            dist.barrier()  # the entries are published before any rank exits
    except (DatasetError, BackboneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if world > 1:
            dist.destroy_process_group()
    return 0
