"""``FeatureSpec``: everything that determines a cached ``FeatureSet``, resolved and checked once.

A spec names the dataset, its backbones (resolved: ``"offline"`` is expanded here, once), the subset
sizes and the seed that draws the pool, the backbones' input size and weights, the thumbnail size,
where an online dataset lives (``root``/``download``), and how its images are read
(``skip_bad_images``, ``fast_identity``, ``background``). ``load_feature_set(spec)`` turns it into features; how the
work runs (device, workers, precision, cache folder, progress) is passed beside it, since it does not
change what is loaded. ``fusion_lib.book.profiles.Profile`` and ``studies.config.ExperimentConfig`` make
and hold specs rather than repeating these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from fusion_lib.data import checks
from fusion_lib.data.backbones.build import BackboneError, resolve_backbones
from fusion_lib.data.backbones.config import ZOOS, min_input_size
from fusion_lib.data.datasets import (
    KNOWN_POOLS,
    LOADERS,
    OFFLINE_SPLIT_SIZES,
    WHITE,
    Colour,
    SplitSizes,
    check_background,
)

# One default for the command line and the book's profile, so that a plain `python -m fusion_lib run`
# reads the features the book cached: the book's four diverse experts at 80 px. Extraction cost grows
# with the pixels (0.69x at 80 px against 96 px; at 96 px a cold build of the book overran its budget),
# the Inception-v3 port needs 75 px, and notebook 04's accuracy push measures what 64, 80 and 96 px are worth.
DEFAULT_BACKBONES: tuple[str, ...] = ZOOS["diverse"]
DEFAULT_INPUT_SIZE = 80
DEFAULT_THUMBNAIL_SIZE = 32
# The book's subset sizes: the offline datasets' own (OFFLINE_SPLIT_SIZES), else these.
DEFAULT_SIZES = SplitSizes(1500, 500, 1000)
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024


def default_sizes(dataset: str) -> SplitSizes:
    """The split sizes the book uses for ``dataset`` (so the command line reuses the book's cache)."""
    return OFFLINE_SPLIT_SIZES.get(dataset, DEFAULT_SIZES)


def check_dataset(name: Any) -> str:
    """A registered dataset name or an ImageFolder directory."""
    if isinstance(name, str) and (name in LOADERS or Path(name).expanduser().is_dir()):
        return name
    raise checks.ParameterError(
        f"unknown dataset {name!r}; valid datasets: {', '.join(LOADERS)}, "
        f"or a path to an ImageFolder directory"
    )


def check_split_sizes(name: str, sizes: SplitSizes, online: bool = False) -> SplitSizes:
    """Positive sizes that the dataset can provide: no more images than it has, and at least one image
    per class in every split (they are stratified). ``online``: a torchvision root or download is used.
    (``SplitSizes`` itself ensures each size is a positive integer.)"""
    facts = KNOWN_POOLS.get(f"{name}:online" if online and f"{name}:online" in KNOWN_POOLS else name)
    if facts is None:  # an ImageFolder or an unknown root: load_dataset checks against the real pool
        return sizes
    pool, test_pool, classes = facts
    want = sizes.train + sizes.val + (0 if test_pool else sizes.test)
    where = "its official training split" if test_pool else "all of it"
    if want > pool:
        parts = "train + val" if test_pool else "train + val + test"
        raise checks.ParameterError(
            f"{name}: {parts} = {want} images, but {where} has only {pool}; use smaller sizes"
        )
    if test_pool and sizes.test > test_pool:
        raise checks.ParameterError(
            f"{name}: test = {sizes.test}, but its official test split has only {test_pool} images"
        )
    small = [f"{s}={getattr(sizes, s)}" for s in ("train", "val", "test") if getattr(sizes, s) < classes]
    if small:
        raise checks.ParameterError(
            f"{name}: {', '.join(small)} is smaller than its {classes} classes; every split is "
            f"stratified, so give each at least {classes} images"
        )
    return sizes


def check_backbones(spec: Any) -> list[str]:
    """Backbone names ("offline", timm names); unknown ones list the valid choices. Nothing is loaded."""
    if not isinstance(spec, str) and not (
        isinstance(spec, Sequence) and all(isinstance(b, str) for b in spec)
    ):
        raise checks.ParameterError(
            f"backbones must be a comma-separated string or a list of names, got {spec!r}"
        )
    try:
        return resolve_backbones(spec)
    except BackboneError as exc:
        raise checks.ParameterError(str(exc)) from None


def check_input_size(value: Any, backbones: Sequence[str] = ()) -> int | None:
    """Pixels fed to the backbones: an int they can take, or None / "native" (each backbone's own size).
    0 or a negative size is an error, never a synonym for "native"."""
    if value is None or value == "native":
        return None
    low = max([MIN_INPUT_SIZE] + [min_input_size(b) for b in backbones])
    if isinstance(value, int) and not isinstance(value, bool) and MIN_INPUT_SIZE <= value < low:
        needy = [b for b in backbones if min_input_size(b) > value]
        raise checks.ParameterError(
            f"input_size {value} is too small for {', '.join(needy)}: it needs at least {low} px; "
            f"use {low} to {MAX_INPUT_SIZE}, or 'native'"
        )
    try:
        return checks.integer(value, "input_size (pixels)", low, MAX_INPUT_SIZE)
    except checks.ParameterError as exc:
        raise checks.ParameterError(f"{exc}; or 'native' (None) for each backbone's own size") from None


@dataclass(frozen=True)
class FeatureSpec:
    """What a ``FeatureSet`` holds: ``dataset`` (a registered name or an ImageFolder path) seen through
    ``backbones`` (names, a comma-separated string or ``"offline"``; stored resolved) on ``sizes`` images
    (None: ``default_sizes(dataset)``) drawn with ``seed``; ``input_size`` px for every backbone (None
    or ``"native"``: each backbone's own); ``weights`` as ``load_backbone`` takes them ("auto":
    pretrained, "random", a file); thumbnails of ``thumbnail_size`` px for the gate;
    ``root``/``download`` for torchvision datasets; ``skip_bad_images`` leaves unreadable files out
    (listed) instead of stopping; ``fast_identity`` keys an ImageFolder by file sizes and times instead
    of contents; ``background`` is the colour an ImageFolder's transparent pixels are composited on
    ("white", "black", "R,G,B" or three ints; stored as three ints; the registered datasets ignore it).
    Every value is checked when the spec is made."""

    dataset: str
    backbones: tuple[str, ...] = DEFAULT_BACKBONES
    sizes: SplitSizes | None = None
    seed: int = 0
    input_size: int | None = DEFAULT_INPUT_SIZE
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE
    weights: str = "auto"
    root: str | None = None
    download: bool = False
    skip_bad_images: bool = False
    fast_identity: bool = False
    background: Colour = WHITE

    def __post_init__(self) -> None:
        check_dataset(self.dataset)
        names = tuple(check_backbones(self.backbones))
        object.__setattr__(self, "backbones", names)
        if self.sizes is None:
            object.__setattr__(self, "sizes", default_sizes(self.dataset))
        if not isinstance(self.sizes, SplitSizes):
            raise checks.ParameterError(f"sizes must be a SplitSizes(train, val, test), got {self.sizes!r}")
        checks.integer(self.seed, "the data seed", 0)
        object.__setattr__(self, "input_size", check_input_size(self.input_size, names))
        checks.thumbnail_size(self.thumbnail_size)
        if not isinstance(self.weights, str):  # the names and files are load_backbone's to check
            raise checks.ParameterError(
                f"weights must be 'auto', 'hub', 'random' or a file path, got {self.weights!r}"
            )
        if self.root is not None and not isinstance(self.root, str):
            raise checks.ParameterError(f"root must be a folder path or None, got {self.root!r}")
        for flag in ("download", "skip_bad_images", "fast_identity"):
            checks.boolean(getattr(self, flag), flag)
        object.__setattr__(self, "background", check_background(self.background))
        check_split_sizes(self.dataset, self.sizes, online=self.online)

    @property
    def online(self) -> bool:
        """Whether a torchvision root or download is used (the dataset's full pool, not the offline one)."""
        return self.root is not None or self.download

    def replace(self, **changes: Any) -> "FeatureSpec":
        """This spec with some fields changed (checked again)."""
        return replace(self, **changes)
