"""The fit cache: the models one seed trains (``studies.seed_run.SeedRun``), kept on disk for the next run.

Notebooks 03 and 05 train the same probes, out-of-fold probes, mixtures and gates for every dataset and
seed; with ``ExperimentConfig.fit_cache`` the second one loads them from ``$FUSION_CACHE/fits``. An
entry is one file, keyed on everything that determines what it holds: the shared part of one seed's run
(``run_spec``: the contents of its FeatureSet, the seed, the TrainConfig, the expert kind, the code that
fits models, library versions and the machine's kernels) and the model's own part (its kind, its
configuration and digests of its other inputs). ``FitCache.get`` is the only way in and always joins
the two parts, so no kind of entry can leave the shared part out.

Entries are written to a temporary file and renamed, under a lock per entry: a second process that
asks for a fit being made waits, then loads it. A file that cannot be read back exactly (truncated,
garbage, another key's) warns ``CorruptCacheWarning`` and is fit again and overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import platform
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import scipy
import torch

from fusion_lib.data.assets.registry import cache_root
from fusion_lib.data.atomic import write_bytes_atomic
from fusion_lib.data.cache import CorruptCacheWarning, cache_key, entry_lock
from fusion_lib.data.device import resolve_device
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.training import TrainConfig

__all__ = [
    "FitCache",
    "array_digest",
    "backbone_spec",
    "code_digest",
    "feature_digest",
    "fits_root",
    "run_spec",
]

T = TypeVar("T")
FITS_DIR = "fits"
# The source files whose code determines a fit: every fusion model and the training loop, the recipes
# of SeedRun (seed_run.py: probes, out-of-fold probes, mixtures, gates and their anchor) and of the
# methods that fit through it (methods.py: concat, stacking, the two-stage configurations), the
# FeatureSet the models read, the device choice, and this file (the entry format). The registry
# (names and their facts) fits nothing, so it is left out.
CODE_FILES = (
    "fusion/*.py",
    "studies/seed_run.py",
    "studies/methods.py",
    "studies/fit_cache.py",
    "data/feature_set.py",
    "data/device.py",
)
_PACKAGE = Path(__file__).resolve().parents[1]
_MAGIC = b"fusion-lib fit v1\n"
_DIGEST_SIZE = 32  # bytes of a sha256 digest
_MISS = object()


def fits_root() -> Path:
    """The folder of the fit cache: ``$FUSION_CACHE/fits``."""
    return cache_root() / FITS_DIR


def _feed(h: Any, data: bytes | memoryview) -> None:
    # length first, so that no two sequences of parts hash alike
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _feed_array(h: Any, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    _feed(h, f"{a.dtype.str} {a.shape}".encode())
    _feed(h, a.reshape(-1).view(np.uint8).data)


@functools.cache
def code_digest() -> str:
    """sha256 over the bytes of the source files that determine a fit (``CODE_FILES``), with their paths."""
    h = hashlib.sha256()
    for path in sorted({p for pattern in CODE_FILES for p in _PACKAGE.glob(pattern)}):
        _feed(h, path.relative_to(_PACKAGE).as_posix().encode())
        _feed(h, path.read_bytes())
    return h.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 over the dtype, shape and bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        _feed_array(h, np.asarray(a))
    return h.hexdigest()


def feature_digest(fs: FeatureSet, thumbnails: bool = True) -> str:
    """sha256 over everything of ``fs`` that a fit reads: the backbone and class names, and every
    split's features (of ``fs.backbones``, in their order), labels and (unless ``thumbnails`` is False)
    thumbnails."""
    h = hashlib.sha256()
    _feed(h, json.dumps([fs.backbones, fs.class_names, thumbnails]).encode())
    parts = [("labels", fs.labels)] + ([("thumbnails", fs.thumbnails)] if thumbnails else [])
    parts += [(f"features {b}", {s: f[b] for s, f in fs.features.items()}) for b in fs.backbones]
    for name, by_split in parts:
        for split in sorted(by_split):
            _feed(h, f"{name} {split}".encode())
            _feed_array(h, by_split[split])
    return h.hexdigest()


def run_spec(fs: FeatureSet, seed: int, train: TrainConfig, expert: str) -> dict[str, Any]:
    """The part of the key that every entry of one seed's run shares (``fs`` is hashed here, once)."""
    return _spec(feature_digest(fs), seed, train, expert)


def backbone_spec(fs: FeatureSet, seed: int, train: TrainConfig, expert: str) -> dict[str, Any]:
    """The shared part of the key of a fit that reads one backbone's features and the labels alone (a
    probe): ``fs`` holds that one backbone; its thumbnails, which such a fit never reads, are left out,
    so every feature set with the backbone on the same images and labels shares the entry."""
    if len(fs.backbones) != 1:
        raise ValueError(f"backbone_spec keys a one-backbone FeatureSet, got {fs.backbones}")
    return _spec(feature_digest(fs, thumbnails=False), seed, train, expert)


def _spec(features: str, seed: int, train: TrainConfig, expert: str) -> dict[str, Any]:
    return {
        "features": features,
        "seed": seed,
        "train": asdict(train),
        "expert": expert,
        "code": code_digest(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
        # the same code can give other bits on another device, CPU instruction set or thread count
        "device": str(resolve_device(train.device)),
        "cpu": [platform.machine(), torch.backends.cpu.get_cpu_capability()],
        "torch_threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


class _Pickler(pickle.Pickler):
    """A pickler that refuses FeatureSets: an entry keeps what a model learned, never its features."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, FeatureSet):
            raise TypeError("a cached fit must not hold a FeatureSet; keep only what the model needs")
        return NotImplemented


def _encode(spec_text: str, value: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump({"spec": spec_text, "value": value})
    payload = buf.getvalue()
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def _decode(data: bytes, spec_text: str) -> Any:
    """The value of an entry's bytes; ValueError unless they are whole and were written for ``spec_text``."""
    head = len(_MAGIC) + _DIGEST_SIZE
    if len(data) <= head or not data.startswith(_MAGIC):
        raise ValueError("not a fit cache entry, or truncated")
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]:
        raise ValueError("checksum mismatch")
    entry = pickle.loads(payload)
    if entry["spec"] != spec_text:
        raise ValueError("the entry was written for another key")
    return entry["value"]


def _read(path: Path, spec_text: str, warn: bool) -> Any:
    """The entry at ``path``, or ``_MISS`` when there is none or it cannot be read back (warned when
    ``warn``)."""
    if not path.is_file():
        return _MISS
    try:
        return _decode(path.read_bytes(), spec_text)
    # whatever fails to read is fit again: refitting is always right, a half-read model never is
    except Exception as exc:
        if warn:
            warnings.warn(
                f"fit cache entry {path} is unreadable ({type(exc).__name__}: {exc}); fitting it again",
                CorruptCacheWarning,
                stacklevel=3,
            )
        return _MISS


class FitCache:
    """The fit cache entries of one seed's run: each is keyed on ``shared`` (``run_spec``) plus its own
    kind and spec."""

    def __init__(self, shared: Mapping[str, Any]) -> None:
        self.shared = dict(shared)
        self.root = fits_root()

    def get(self, kind: str, spec: Mapping[str, Any], fit: Callable[[], T]) -> T:
        """The cached fit of ``kind`` with ``spec``, or ``fit()``, saved for the next run.

        ``spec`` is JSON-able and names whatever besides the shared part determines the fit: the
        model's configuration and digests of its other inputs (``array_digest``).
        """
        full = {"shared": self.shared, "kind": kind, "spec": dict(spec)}
        spec_text = json.dumps(full, sort_keys=True, default=str)
        path = self.root / f"{kind}-{cache_key(full)}.pkl"
        value = _read(path, spec_text, warn=False)
        if value is not _MISS:
            return value
        with entry_lock(path.with_suffix(".lock"), f"fitting {path.name} in {self.root}"):
            value = _read(path, spec_text, warn=True)  # maybe fit by another process meanwhile
            if value is _MISS:
                value = fit()
                write_bytes_atomic(path, _encode(spec_text, value))
        return value
