"""Batched frozen feature extraction with a checksummed, resumable disk cache."""
from __future__ import annotations

import os
from pathlib import Path
from contextlib import nullcontext
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .array_cache import ArrayCache, ChunkStore
from .assets import cache_root
from .backbones import Backbone, default_input_size, load_backbone, resolve_backbones, weights_identity
from .device import resolve_device
from .data import SPLITS, DatasetSplits, SplitSizes, load_dataset
from .feature_set import FeatureSet

# Chosen by measurement on the 2-core CPU (see `python -m fusion_lib.bench features` and the book's
# reproducibility chapter): 96 px keeps four backbones x a few thousand images within minutes, while
# the 28 px and 8 px source images gain little from larger inputs. The sweep in the benchmark
# re-measures the cost of 64, 96 and 128 px on any machine.
OFFLINE_INPUT_SIZE = 96
CHUNK_ROWS = 512
PREPROCESS_VERSION = "resize-shorter+center-crop+normalize/v1"


def preprocess(img: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (3, H, W) -> normalised float (3, size, size): resize the shorter side, centre-crop."""
    from torchvision.transforms.v2 import functional as F

    x = F.resize(img, [size], antialias=True)
    x = F.center_crop(x, [size, size])
    x = x.float().div_(255.0)
    return F.normalize(x, list(mean), list(std))


class _Preprocessed(Dataset):
    def __init__(self, data: DatasetSplits, split: str, rows: np.ndarray, backbone: Backbone):
        self.data, self.split, self.rows, self.bb = data, split, rows, backbone

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return preprocess(self.data.tensor(self.split, int(self.rows[i])), self.bb.input_size, self.bb.mean, self.bb.std)


class FeatureExtractor:
    """Runs a frozen backbone over a dataset split in batches, on CUDA (autocast, channels_last) or CPU threads."""

    def __init__(self, backbone: Backbone, device: str = "auto", batch_size: int = 64, num_workers: int = 0):
        if batch_size <= 0 or num_workers < 0:
            raise ValueError(f"batch_size must be > 0 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.backbone = backbone
        self.device = resolve_device(device)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.model = backbone.model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        else:
            torch.set_num_threads(os.cpu_count() or 1)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of a ready (normalised) batch, as float32 on the CPU."""
        cuda = self.device.type == "cuda"
        batch = batch.to(self.device, non_blocking=True)
        if cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cuda", dtype=torch.float16) if cuda else nullcontext()
        with torch.inference_mode(), ctx:
            return self.model(batch).float().cpu()

    def loader(self, data: DatasetSplits, split: str, rows: np.ndarray) -> DataLoader:
        return DataLoader(_Preprocessed(data, split, rows, self.backbone), batch_size=self.batch_size,
                          num_workers=self.num_workers, pin_memory=self.device.type == "cuda")

    def run(self, data: DatasetSplits, split: str, chunks: ChunkStore | None = None,
            progress: bool = True) -> np.ndarray:
        """Features for every image of ``split``; with ``chunks``, finished chunks are kept and reused."""
        from tqdm.auto import tqdm

        n = len(data.indices[split])
        out = np.empty((n, self.backbone.feature_dim), dtype=np.float32)
        bar = tqdm(total=n, desc=f"{self.backbone.name} {data.name}/{split}", unit="img", disable=not progress,
                   leave=False)
        for c, start in enumerate(range(0, n, CHUNK_ROWS)):
            rows = np.arange(start, min(start + CHUNK_ROWS, n))
            cached = chunks.get(c, len(rows)) if chunks is not None else None
            if cached is None:
                cached = np.concatenate([self.forward(b).numpy() for b in self.loader(data, split, rows)])
                if chunks is not None:
                    chunks.put(c, cached)
            out[rows] = cached
            bar.update(len(rows))
        bar.close()
        return out


def feature_spec(backbone: str, data: DatasetSplits, split: str, input_size: int, weights: str = "auto") -> dict:
    """Everything that determines a features array: weights, images (dataset + indices) and transform."""
    return {"kind": "features", "backbone": backbone, "weights": weights_identity(backbone, weights),
            "dataset": data.name, "images": data.fingerprint(split), "input_size": input_size,
            "transform": PREPROCESS_VERSION}


def _feature_cache(dataset: str, backbone: str, cache_dir: str | os.PathLike | None) -> ArrayCache:
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "features"
    return ArrayCache(root / dataset.replace("/", "_") / backbone)


def extract_features(backbone: str, data: DatasetSplits, split: str, input_size: int | None = None,
                     weights: str = "auto", device: str = "auto", batch_size: int = 64, num_workers: int = 0,
                     progress: bool = True, cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, float]:
    """(features, backbone GFLOPs per image) for one split, from the cache or computed and cached.

    ``cache_dir`` defaults to ``$FUSION_CACHE/features``."""
    feats, gflops = extract_splits(backbone, data, [split], input_size, weights, device, batch_size, num_workers,
                                   progress, cache_dir)
    return feats[split], gflops


def extract_splits(backbone: str, data: DatasetSplits, splits: Sequence[str], input_size: int | None = None,
                   weights: str = "auto", device: str = "auto", batch_size: int = 64, num_workers: int = 0,
                   progress: bool = True, cache_dir: str | os.PathLike | None = None
                   ) -> tuple[dict[str, np.ndarray], float]:
    """Features of several splits for one backbone; the backbone is loaded once, and only if a split
    is not cached yet."""
    size = int(input_size or default_input_size(backbone))
    cache = _feature_cache(data.name, backbone, cache_dir)
    loaded: list[Backbone] = []
    out: dict[str, np.ndarray] = {}
    gflops = 0.0
    for split in splits:
        state: dict = {}

        def build(chunks: ChunkStore, split: str = split, state: dict = state) -> np.ndarray:
            if not loaded:
                loaded.append(load_backbone(backbone, input_size=size, weights=weights))
            state["gflops"] = loaded[0].gflops
            return FeatureExtractor(loaded[0], device, batch_size, num_workers).run(data, split, chunks, progress)

        out[split], meta, _ = cache.get_or_build(feature_spec(backbone, data, split, size, weights), build, meta=state)
        gflops = float(meta["gflops"])
    return out, gflops


def cached_thumbnails(data: DatasetSplits, split: str, size: int,
                      cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Thumbnails of a split, cached like features."""
    spec = {"kind": "thumbnails", "dataset": data.name, "images": data.fingerprint(split), "size": size}

    def build(_: ChunkStore) -> np.ndarray:
        return data.thumbnails(split, size)

    root = Path(cache_dir) if cache_dir is not None else cache_root() / "features"
    return ArrayCache(root / data.name.replace("/", "_") / "thumbnails").get_or_build(spec, build)[0]


def load_feature_set(dataset: str, backbones: str | Sequence[str] = "offline", sizes: SplitSizes | None = None,
                     seed: int = 0, input_size: int | None = OFFLINE_INPUT_SIZE, thumbnail_size: int = 32,
                     device: str = "auto", num_workers: int = 0, progress: bool = True,
                     root: str | None = None, download: bool = False, weights: str = "auto",
                     cache_dir: str | os.PathLike | None = None) -> FeatureSet:
    """Features of every backbone on every split of a dataset, with labels and thumbnails (all cached).

    ``input_size=None`` uses each backbone's native size (the online, paper-scale setting).
    """
    from tqdm.auto import tqdm

    names = resolve_backbones(backbones)
    data = load_dataset(dataset, sizes or SplitSizes(), seed=seed, root=root, download=download)
    feats: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
    gflops: dict[str, float] = {}
    for b in tqdm(names, desc=f"features {dataset}", unit="backbone", disable=not progress):
        per_split, gflops[b] = extract_splits(b, data, SPLITS, input_size, weights, device, num_workers=num_workers,
                                              progress=progress, cache_dir=cache_dir)
        for s, arr in per_split.items():
            feats[s][b] = arr
    return FeatureSet(
        dataset=dataset, backbones=names, class_names=data.class_names, features=feats,
        labels=dict(data.labels), thumbnails={s: cached_thumbnails(data, s, thumbnail_size, cache_dir) for s in SPLITS},
        backbone_gflops=gflops, indices=dict(data.indices), fixed_test=data.official_test,
    )
