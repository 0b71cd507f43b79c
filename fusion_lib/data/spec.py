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
from typing import Any

from fusion_lib.data import validation
from fusion_lib.data.backbones.config import ZOOS
from fusion_lib.data.datasets import OFFLINE_SPLIT_SIZES, WHITE, Colour, SplitSizes

# One default for the command line and the book's profile, so that a plain `python -m fusion_lib run`
# reads the features the book cached: the book's four diverse experts at 80 px. Extraction cost grows
# with the pixels (0.69x at 80 px against 96 px; at 96 px a cold build of the book overran its budget),
# the Inception-v3 port needs 75 px, and notebook 04's accuracy push measures what 64, 80 and 96 px are worth.
DEFAULT_BACKBONES: tuple[str, ...] = ZOOS["diverse"]
DEFAULT_INPUT_SIZE = 80
DEFAULT_THUMBNAIL_SIZE = 32
# The book's subset sizes: the offline datasets' own (OFFLINE_SPLIT_SIZES), else these.
DEFAULT_SIZES = SplitSizes(1500, 500, 1000)


def default_sizes(dataset: str) -> SplitSizes:
    """The split sizes the book uses for ``dataset`` (so the command line reuses the book's cache)."""
    return OFFLINE_SPLIT_SIZES.get(dataset, DEFAULT_SIZES)


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
        validation.dataset(self.dataset)
        names = tuple(validation.backbones(self.backbones))
        object.__setattr__(self, "backbones", names)
        if self.sizes is None:
            object.__setattr__(self, "sizes", default_sizes(self.dataset))
        if not isinstance(self.sizes, SplitSizes):
            raise validation.ParameterError(
                f"sizes must be a SplitSizes(train, val, test), got {self.sizes!r}"
            )
        validation.integer(self.seed, "the data seed", 0)
        object.__setattr__(self, "input_size", validation.input_size(self.input_size, names))
        validation.thumbnail_size(self.thumbnail_size)
        if not isinstance(self.weights, str):  # the names and files are load_backbone's to check
            raise validation.ParameterError(
                f"weights must be 'auto', 'hub', 'random' or a file path, got {self.weights!r}"
            )
        if self.root is not None and not isinstance(self.root, str):
            raise validation.ParameterError(f"root must be a folder path or None, got {self.root!r}")
        for flag in ("download", "skip_bad_images", "fast_identity"):
            validation.boolean(getattr(self, flag), flag)
        object.__setattr__(self, "background", validation.background(self.background))
        validation.split_sizes(self.dataset, self.sizes, online=self.online)

    @property
    def online(self) -> bool:
        """Whether a torchvision root or download is used (the dataset's full pool, not the offline one)."""
        return self.root is not None or self.download

    def replace(self, **changes: Any) -> "FeatureSpec":
        """This spec with some fields changed (checked again)."""
        return replace(self, **changes)
