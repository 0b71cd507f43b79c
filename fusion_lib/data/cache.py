"""A disk cache of numpy arrays with checksummed sidecars, atomic writes and resumable chunked builds."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from filelock import FileLock, Timeout

from fusion_lib.data.atomic import atomic_path, sha256_file, write_text_atomic

log = logging.getLogger(__name__)


class CorruptCacheWarning(UserWarning):
    """A cache entry failed its checks and is being recomputed."""


def cache_key(spec: dict) -> str:
    """A stable digest of a JSON-able description of what an entry holds."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ArrayCache:
    """``<root>/<key>.npy`` with ``<key>.json`` (spec, shape, dtype, sha256, metadata), written npy first."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def load(self, key: str) -> tuple[np.ndarray, dict] | None:
        """The cached array and its metadata, or None when absent, incomplete or corrupt (never a bad read)."""
        npy, side = self.paths(key)
        if not side.is_file() or not npy.is_file():
            return None
        try:
            meta = json.loads(side.read_text())
            if sha256_file(npy) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            arr = np.load(npy, allow_pickle=False)
            if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
                raise ValueError(f"shape/dtype {arr.shape}/{arr.dtype} differ from the sidecar's")
        except (ValueError, KeyError, OSError, EOFError) as exc:
            warnings.warn(
                f"cache entry {npy} is corrupt ({exc}); recomputing it", CorruptCacheWarning, stacklevel=2
            )
            npy.unlink(missing_ok=True)
            side.unlink(missing_ok=True)
            return None
        return arr, meta.get("meta", {})

    def save(self, key: str, arr: np.ndarray, spec: dict, meta: dict | None = None) -> None:
        npy, side = self.paths(key)
        with atomic_path(npy) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            digest = sha256_file(tmp)
        write_text_atomic(
            side,
            json.dumps(
                {
                    "spec": spec,
                    "shape": list(arr.shape),
                    "dtype": str(arr.dtype),
                    "sha256": digest,
                    "meta": meta or {},
                },
                indent=1,
                default=str,
            ),
        )

    def get_or_build(
        self, spec: dict, build: Callable[["ChunkStore"], np.ndarray], meta: dict | None = None
    ) -> tuple[np.ndarray, dict, bool]:
        """(array, metadata, was_cached). ``build`` gets a ChunkStore so an interrupted build resumes;
        ``meta`` is saved after ``build`` runs, so ``build`` may fill it in.

        One process at a time builds an entry (a lock file per entry): a second process that asks for
        the same entry meanwhile waits, then reads what the first one wrote."""
        key = cache_key(spec)
        hit = self.load(key)
        if hit is not None:
            return hit[0], hit[1], True
        with self.lock(key):
            hit = self.load(key)  # built by another process while this one waited
            if hit is not None:
                return hit[0], hit[1], True
            chunks = self.chunk_store(key)
            arr = build(chunks)
            self.save(key, arr, spec, meta)
            chunks.clear()
        return arr, meta or {}, False

    def chunk_store(self, key: str) -> "ChunkStore":
        """Where the chunks of an entry under construction are kept (shared by every process that builds it)."""
        return ChunkStore(self.root / f"{key}.partial")

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the entry's lock (an OS file lock, so a killed holder releases it)."""
        with entry_lock(self.root / f"{key}.lock", f"cache entry {key} in {self.root}"):
            yield


@contextmanager
def entry_lock(path: Path, what: str) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes; logs (at INFO) when it has to wait, which notebooks
    run side by side do routinely, so the message stays off their pages."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process to finish %s", what)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class ChunkStore:
    """Numbered chunks of a long computation, each saved atomically; a rerun skips the chunks present."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, i: int) -> Path:
        return self.folder / f"chunk_{i:06d}.npy"

    def get(self, i: int, rows: int) -> np.ndarray | None:
        path = self._path(i)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            path.unlink(missing_ok=True)
            return None
        return arr if len(arr) == rows else None

    def put(self, i: int, arr: np.ndarray) -> None:
        with atomic_path(self._path(i)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
