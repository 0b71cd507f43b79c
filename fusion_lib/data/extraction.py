"""Batched frozen feature extraction with a checksummed, resumable disk cache."""

from __future__ import annotations

import os
from contextlib import nullcontext
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fusion_lib.data import checks
from fusion_lib.data.assets import cache_root
from fusion_lib.data.backbones import Backbone, default_input_size, load_backbone, weights_identity
from fusion_lib.data.cache import ArrayCache, ChunkStore
from fusion_lib.data.datasets import SPLITS, DatasetSplits, load_dataset
from fusion_lib.data.device import resolve_device
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.data.fold_bn import FOLD_VERSION
from fusion_lib.data.host_memory import keep_freed_memory
from fusion_lib.data.spec import FeatureSpec

CHUNK_ROWS = 512
# v2: resize + crop run on whole uint8 batches and the forward pass runs channels_last on every device
# (features move by ~1e-5 against v1, so v1 entries are not reused). v3: normalisation is one fused
# multiply-add. v4: resizing runs in float32 (then rounds to the 8-bit grid), antialiased only when it
# shrinks, and normalisation writes each channel straight into the channels_last input; pixels move by
# at most one grey level against v3's uint8 resize (timings: book/reproducibility.md, "On this CPU").
PREPROCESS_VERSION = "resize-shorter+center-crop+normalize/v4-float-resize"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Images per forward pass. On a CPU, 32: a batch's activations then stay below glibc's 32 MiB ceiling for
# heap blocks, so they are reused instead of mapped and page-faulted in afresh (see ``host_memory``;
# timings: book/reproducibility.md, "On this CPU"). CUDA's 64 was not measured.
BATCH_SIZE = {"cpu": 32, "cuda": 64}


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) once the shorter side is resized to ``size`` and the longer one alike (truncated to
    whole pixels): the rule of torchvision's ``resize(x, [size])``, which the pixels must keep matching."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (n, C, H, W) -> float32 (n, C, size, size) on the 0-255 scale: resize the shorter side to
    ``size`` (bilinear, antialiased when shrinking), centre-crop, and round to the 8-bit grid, as an
    8-bit image pipeline would; rounding also lets a per-image result be stored as uint8 exactly.

    The same numbers as torchvision's ``resize`` then ``center_crop`` (a test holds them equal): the same
    ``interpolate`` call and crop, without their per-call dispatch. That dispatch, with ``normalise``'s
    constants built for every batch, held SqueezeNet's pipeline at 0.904 of the raw forward's speed
    against 0.919 without (80 px, batches of 32, 2-core CPU; median of 8 interleaved runs)."""
    x = images.float()
    height, width = x.shape[-2:]
    new = resized_shape(height, width, size)
    if new != (height, width):
        if (
            x.shape[0] == 1
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.stride(0) != x.numel()
        ):
            # as torchvision does (pytorch#68430): an unambiguous stride for the batch dimension, so that
            # interpolate keeps a single image channels_last
            x = x.as_strided(x.shape, (x.numel(), *x.stride()[1:]))
        x = torch.nn.functional.interpolate(
            x, size=list(new), mode="bilinear", align_corners=False, antialias=size < min(height, width)
        )
    top, left = round((new[0] - size) / 2), round((new[1] - size) / 2)  # torchvision's centre
    # no clamp needed: bilinear and antialias weights are non-negative and sum to one, so every output
    # lies between input pixels
    return x[..., top : top + size, left : left + size].round_()


@lru_cache(maxsize=32)
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The channels' (scale, shift) for ``normalise``, as ``(3,)`` tensors on ``device``: built once, not
    for every batch."""
    scale = 1.0 / (255.0 * torch.tensor(std, device=device))
    shift = -torch.tensor(mean, device=device) / torch.tensor(std, device=device)
    return scale, shift


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float (n, 1 or 3, H, W) on the 0-255 scale -> (x / 255 - mean) / std as (n, 3, H, W) channels_last.
    One multiply-add per value, all channels in one pass that writes the channels_last input in memory
    order (a grey batch, one channel, is broadcast to three): per channel, the same numbers as three
    strided passes, at 0.46 ms a batch of 32 at 80 px against 0.52 (2-core CPU)."""
    out = torch.empty((len(x), 3, *x.shape[-2:]), device=x.device, memory_format=torch.channels_last)
    scale, shift = _affine(tuple(mean), tuple(std), x.device)
    # (n, H, W, C) views: the channel is the last, fastest-moving dimension of a channels_last tensor
    torch.addcmul(shift, x.permute(0, 2, 3, 1), scale, out=out.permute(0, 2, 3, 1))
    return out


def preprocess_batch(
    images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 (n, 1 or 3, H, W) -> normalised float (n, 3, size, size), channels_last: resize the shorter
    side, centre-crop, normalise. A grey batch (one channel) is resized once and broadcast to three.

    A few tensor operations for the whole batch, on whatever device ``images`` is on."""
    return normalise(resize_crop(images, size), mean, std)


def preprocess(img: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """One uint8 (3, H, W) image -> normalised float (3, size, size); the same numbers as in a batch."""
    return preprocess_batch(img.unsqueeze(0), size, mean, std)[0]


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX); elsewhere torch emulates it, slowly."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> fp16 autocast on CUDA, bf16 on CPUs with native bf16, else fp32 (see the reproducibility
    chapter for the measured speed and linear-probe accuracy behind this rule)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on the CPU")
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and CPU_BF16_AUTO and cpu_bf16_supported() else "fp32"


# Whether "auto" picks bf16 on CPUs that support it: only if bf16 keeps linear-probe accuracy within 0.3
# points of fp32 (measured on Fashion-MNIST features; see book/reproducibility.md).
CPU_BF16_AUTO = False


class _Decoded(Dataset):
    """A split's images as uint8 (3, H, W) tensors: the decoding part of the pipeline, run in loader workers."""

    def __init__(self, data: DatasetSplits, split: str):
        self.data, self.split = data, split

    def __len__(self) -> int:
        return len(self.data.indices[self.split])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data.tensor(self.split, int(i))

    def __getitems__(self, rows: Sequence[int]) -> torch.Tensor | list[torch.Tensor]:
        """The loader's batched fetch: one tensor where the source reads whole batches."""
        return self.data.batch(self.split, rows)


class _InProcessBatches:
    """What a DataLoader without workers yields (each batch fetched with ``__getitems__`` and collated, in
    this process), without its per-batch machinery (sampler, fetcher, profiler hooks): between two forward
    passes, that machinery held SqueezeNet's pipeline at 0.919 of the raw forward's speed against 0.941
    without it (80 px, batches of 32, 2-core CPU; median of 8 interleaved runs)."""

    def __init__(self, dataset: _Decoded, batches: list[np.ndarray], collate: Callable[[Any], torch.Tensor]):
        self.dataset, self.batches, self.collate = dataset, batches, collate

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for rows in self.batches:
            yield self.collate(self.dataset.__getitems__(rows))


def _stack_uint8(images: torch.Tensor | list[torch.Tensor], size: int) -> torch.Tensor:
    """One uint8 batch from a batched read (already one tensor) or from single images. Grey images
    (3-channel views of one channel) stay one channel, so that they are resized once, not three times.
    Images of mixed sizes are resized and cropped one by one first (in the worker); resizing a batch does
    the same per image, so both routes give the same numbers."""
    if isinstance(images, torch.Tensor):
        return images
    if all(img.shape[0] == 3 and img.stride(0) == 0 for img in images):
        images = [img[:1] for img in images]
    if any(img.shape != images[0].shape for img in images):
        images = [resize_crop(img.unsqueeze(0), size)[0].to(torch.uint8) for img in images]
    return torch.stack(images)


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass on ``device`` when none is given (``BATCH_SIZE``)."""
    return BATCH_SIZE.get(device.type, BATCH_SIZE["cuda"])


def forward_settings(
    device: str | torch.device, precision: str, batch_size: int | None = None
) -> tuple[str, int]:
    """(precision, batch size) resolved for ``device``: what an extraction runs with and what its
    cache key records, so that the key and the run cannot disagree."""
    dev = resolve_device(device)
    return resolve_precision(precision, dev), batch_size or default_batch_size(dev)


def default_workers(device: torch.device) -> int:
    """Loader workers: none on the CPU (the forward pass already uses every core), several on CUDA."""
    return 0 if device.type != "cuda" else max(1, min(8, (os.cpu_count() or 2) - 1))


class FeatureExtractor:
    """Runs a frozen backbone over a dataset split in batches: decode in loader workers, batched resize and
    normalisation on the device, channels_last forward (autocast in ``precision``)."""

    def __init__(
        self,
        backbone: Backbone,
        device: str = "auto",
        batch_size: int | None = None,
        num_workers: int | None = None,
        precision: str = "auto",
    ):
        if (batch_size is not None and batch_size <= 0) or (num_workers is not None and num_workers < 0):
            raise ValueError(
                f"batch_size must be > 0 and num_workers >= 0 (or None for the device's default), "
                f"got {batch_size}, {num_workers}"
            )
        self.backbone = backbone
        self.device = resolve_device(device)
        self.precision, self.batch_size = forward_settings(self.device, precision, batch_size)
        self.num_workers = default_workers(self.device) if num_workers is None else num_workers
        # channels_last: the same features (max abs difference ~1e-5), faster on the CPU too (timings:
        # book/reproducibility.md, "On this CPU")
        self.model = backbone.model.to(self.device, memory_format=torch.channels_last)
        if self.device.type == "cpu":  # every core, unless the launcher (torchrun) shares them out
            keep_freed_memory()
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch (n, 3, H, W) -> the normalised, channels_last model input on the device."""
        bb = self.backbone
        x = images.to(self.device, non_blocking=True)
        return preprocess_batch(x, bb.input_size, bb.mean, bb.std)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of a ready (normalised) batch, as float32 on the CPU."""
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with torch.inference_mode(), ctx:
            return self.model(batch).float().cpu()

    def loader(
        self, data: DatasetSplits, split: str, rows: np.ndarray | list[np.ndarray]
    ) -> Iterable[torch.Tensor]:
        """uint8 batches of the given rows (or of each group of rows, no batch spanning two groups), decoded in
        workers (pinned memory on CUDA). One loader serves a whole split, so workers start once. Without
        workers and pinning (the CPU's default), the batches are read in this process without a DataLoader."""
        groups = [rows] if isinstance(rows, np.ndarray) else rows
        batches = [g[i : i + self.batch_size] for g in groups for i in range(0, len(g), self.batch_size)]
        dataset, collate = _Decoded(data, split), partial(_stack_uint8, size=self.backbone.input_size)
        pin = self.device.type == "cuda"
        if self.num_workers == 0 and not pin:
            return _InProcessBatches(dataset, batches, collate)
        return DataLoader(
            dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=pin,
        )

    def chunk_features(
        self, data: DatasetSplits, split: str, todo: Sequence[tuple[int, np.ndarray]]
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(chunk index, features) for each (index, rows) in ``todo``, in order, from one loader."""
        ends = np.cumsum(
            [-(-len(rows) // self.batch_size) for _, rows in todo]
        )  # batches up to each chunk's end
        k, parts = 0, []
        for b, images in enumerate(self.loader(data, split, [rows for _, rows in todo])):
            parts.append(self.forward(self.prepare(images)).numpy())
            if b + 1 == ends[k]:
                yield todo[k][0], np.concatenate(parts)
                k, parts = k + 1, []

    def features(self, data: DatasetSplits, split: str, rows: np.ndarray) -> np.ndarray:
        """Features of some rows of a split (no cache)."""
        return next(self.chunk_features(data, split, [(0, rows)]))[1]

    def run(
        self, data: DatasetSplits, split: str, chunks: ChunkStore | None = None, progress: bool = True
    ) -> np.ndarray:
        """Features for every image of ``split``; with ``chunks``, finished chunks are kept and reused."""
        n = len(data.indices[split])
        out = np.empty((n, self.backbone.feature_dim), dtype=np.float32)
        todo = []
        for c, rows in enumerate(chunk_rows(n)):
            cached = chunks.get(c, len(rows)) if chunks is not None else None
            if cached is None:
                todo.append((c, rows))
            else:
                out[rows] = cached
        rows_of = dict(todo)
        for c, feats in self._compute(
            data, split, todo, f"{self.backbone.name} {data.name}/{split}", progress
        ):
            if chunks is not None:
                chunks.put(c, feats)
            out[rows_of[c]] = feats
        return out

    def fill_chunks(
        self,
        data: DatasetSplits,
        split: str,
        chunks: ChunkStore,
        rank: int = 0,
        world: int = 1,
        progress: bool = True,
    ) -> int:
        """Compute the missing chunks of ``split`` that belong to ``rank`` (chunk c is rank c % world's) into
        ``chunks``; returns how many it computed."""
        todo = [
            (c, rows)
            for c, rows in enumerate(chunk_rows(len(data.indices[split])))
            if c % world == rank and chunks.get(c, len(rows)) is None
        ]
        for c, feats in self._compute(
            data, split, todo, f"{self.backbone.name} {data.name}/{split} rank {rank}", progress
        ):
            chunks.put(c, feats)
        return len(todo)

    def _compute(
        self, data: DatasetSplits, split: str, todo: list[tuple[int, np.ndarray]], desc: str, progress: bool
    ) -> Iterator[tuple[int, np.ndarray]]:
        """chunk_features with a progress bar in images."""

        with tqdm(
            total=sum(len(r) for _, r in todo),
            desc=desc,
            unit="img",
            disable=not progress or not todo,
            leave=False,
        ) as bar:
            for c, feats in self.chunk_features(data, split, todo) if todo else ():
                bar.update(len(feats))
                yield c, feats


def chunk_rows(n: int) -> list[np.ndarray]:
    """The row ranges of a split's chunks (the unit of resumption and of sharding across ranks)."""
    return [np.arange(start, min(start + CHUNK_ROWS, n)) for start in range(0, n, CHUNK_ROWS)]


def feature_spec(
    backbone: str,
    data: DatasetSplits,
    split: str,
    input_size: int,
    weights: str,
    precision: str,
    batch_size: int,
) -> dict:
    """Everything that determines a features array: weights, images (dataset + indices), transform and the
    forward pass's precision (a resolved one: "fp32", "bf16" or "fp16") and batch size (convolution
    libraries choose their kernels by the batch's shape, so the last bits of a feature can depend on it)."""
    return {
        "kind": "features",
        "backbone": backbone,
        "weights": weights_identity(backbone, weights),
        "dataset": data.name,
        "images": data.fingerprint(split),
        "input_size": input_size,
        "transform": PREPROCESS_VERSION,
        "forward": FOLD_VERSION,
        "precision": precision,
        "batch_size": batch_size,
    }


def feature_cache(dataset: str, backbone: str, cache_dir: str | os.PathLike | None) -> ArrayCache:
    """The cache folder of one backbone's features on one dataset."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "features"
    return ArrayCache(root / dataset.replace("/", "_") / backbone)


def extract_features(
    backbone: str, data: DatasetSplits, split: str, *options: Any, **keywords: Any
) -> tuple[np.ndarray, float]:
    """(features, backbone GFLOPs per image) for one split, from the cache or computed and cached.

    The options are ``extract_splits``'s, in its order (``input_size``, ``weights``, ``device``, ...),
    passed on as given, so that the two cannot drift apart; ``cache_dir`` defaults to
    ``$FUSION_CACHE/features``."""
    feats, gflops = extract_splits(backbone, data, [split], *options, **keywords)
    return feats[split], gflops


def extract_splits(
    backbone: str,
    data: DatasetSplits,
    splits: Sequence[str],
    input_size: int | None = None,
    weights: str = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    precision: str = "auto",
) -> tuple[dict[str, np.ndarray], float]:
    """Features of several splits for one backbone; the backbone is loaded once, and only if a split
    is not cached yet."""
    size = int(input_size or default_input_size(backbone))
    precision, batch_size = forward_settings(device, precision, batch_size)
    cache = feature_cache(data.name, backbone, cache_dir)
    loaded: list[Backbone] = []
    out: dict[str, np.ndarray] = {}
    gflops = 0.0
    for split in splits:
        state: dict = {}

        def build(chunks: ChunkStore, split: str = split, state: dict = state) -> np.ndarray:
            if not loaded:
                loaded.append(load_backbone(backbone, input_size=size, weights=weights))
            state["gflops"] = loaded[0].gflops
            ex = FeatureExtractor(loaded[0], device, batch_size, num_workers, precision)
            return ex.run(data, split, chunks, progress)

        spec = feature_spec(backbone, data, split, size, weights, precision, batch_size)
        out[split], meta, _ = cache.get_or_build(spec, build, meta=state)
        gflops = float(meta["gflops"])
    return out, gflops


def cached_thumbnails(
    data: DatasetSplits, split: str, size: int, cache_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """Thumbnails of a split, cached like features."""
    spec = {"kind": "thumbnails", "dataset": data.name, "images": data.fingerprint(split), "size": size}

    def build(_: ChunkStore) -> np.ndarray:
        return data.thumbnails(split, size)

    root = Path(cache_dir) if cache_dir is not None else cache_root() / "features"
    return ArrayCache(root / data.name.replace("/", "_") / "thumbnails").get_or_build(spec, build)[0]


def load_feature_set(
    spec: FeatureSpec,
    device: str = "auto",
    num_workers: int | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    precision: str = "auto",
) -> FeatureSet:
    """The features ``spec`` describes, for every backbone and split, with labels and thumbnails (all
    cached). The other arguments say how the work runs and change no value: ``device``, data-loader
    ``num_workers``, ``progress`` bars, the feature ``cache_dir`` and the extraction ``precision``."""

    if not isinstance(spec, FeatureSpec):
        raise checks.ParameterError(
            f"load_feature_set takes a FeatureSpec (fusion_lib.data.spec), got {spec!r}; "
            f"e.g. load_feature_set(FeatureSpec('digits'))"
        )
    checks.device(device)
    checks.cache_dir(cache_dir)
    dataset, names, input_size = spec.dataset, list(spec.backbones), spec.input_size
    data = load_dataset(
        dataset,
        spec.sizes,
        seed=spec.seed,
        root=spec.root,
        download=spec.download,
        skip_bad_images=spec.skip_bad_images,
        fast_identity=spec.fast_identity,
        background=spec.background,
    )
    feats: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
    gflops: dict[str, float] = {}
    for b in tqdm(names, desc=f"features {dataset}", unit="backbone", disable=not progress):
        per_split, gflops[b] = extract_splits(
            b,
            data,
            SPLITS,
            input_size,
            spec.weights,
            device,
            num_workers=num_workers,
            progress=progress,
            cache_dir=cache_dir,
            precision=precision,
        )
        for s, arr in per_split.items():
            feats[s][b] = arr
    return FeatureSet(
        dataset=dataset,
        backbones=names,
        class_names=data.class_names,
        features=feats,
        labels=dict(data.labels),
        thumbnails={s: cached_thumbnails(data, s, spec.thumbnail_size, cache_dir) for s in SPLITS},
        backbone_gflops=gflops,
        indices=dict(data.indices),
        fixed_test=data.official_test,
    )
