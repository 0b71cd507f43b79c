"""Every user-facing parameter, checked before any work: one place for the rules and their messages.

The data spec (``spec.FeatureSpec``), ``ExperimentConfig``, the command lines and the notebook profiles
(``profiles.get_profile``) all call these checks, so a bad value fails at once, with a
message that names the value and the valid range, before weights load or features are extracted. The
checks of a whole config or profile live with those objects, in the layers above: this module knows
only parameters.
Each check raises ``ValueError`` (``ParameterError``) and returns the value in its normal form.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

from fusion_lib.data.datasets import KNOWN_POOLS, LOADERS, Colour, SplitSizes

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024
# The thumbnail gate's strides divide the size by 8 (fusion_lib.fusion.gates.ThumbnailGate); above 128 px it is
# no longer a thumbnail.
THUMBNAIL_STEP, MAX_THUMBNAIL = 8, 128
DEVICE_HELP = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ParameterError(ValueError):
    """A parameter outside its valid range; the message names it and the range."""


def integer(value: Any, what: str, low: int, high: int | None = None) -> int:
    """An int in [low, high]; bools and floats are mistakes, not numbers."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise ParameterError(f"{what} must be an integer {bound}, got {value!r}")
    return value


def boolean(value: Any, what: str) -> bool:
    """True or False; 0, 1 and strings such as "false" are mistakes, not truth values."""
    if not isinstance(value, bool):
        raise ParameterError(f"{what} must be true or false, got {value!r}")
    return value


def seeds(value: Any) -> tuple[int, ...]:
    """A count n >= 1 (seeds 0..n-1) or a non-empty list of distinct integers >= 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(integer(value, "seeds (a count)", 1)))
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0:
        out = tuple(integer(v, "each seed", 0) for v in value)
        if len(set(out)) != len(out):
            raise ParameterError(f"seeds must be distinct, got {list(out)}")
        return out
    raise ParameterError(
        f"seeds must be a count n >= 1 (seeds 0..n-1) or a non-empty list of integers >= 0, got {value!r}"
    )


def input_size(value: Any, backbones: Sequence[str] = ()) -> int | None:
    """Pixels fed to the backbones: an int they can take, or None / "native" (each backbone's own size).
    0 or a negative size is an error, never a synonym for "native"."""
    from fusion_lib.data.backbones import min_input_size

    if value is None or value == "native":
        return None
    low = max([MIN_INPUT_SIZE] + [min_input_size(b) for b in backbones])
    if isinstance(value, int) and not isinstance(value, bool) and MIN_INPUT_SIZE <= value < low:
        needy = [b for b in backbones if min_input_size(b) > value]
        raise ParameterError(
            f"input_size {value} is too small for {', '.join(needy)}: it needs at least {low} px; "
            f"use {low} to {MAX_INPUT_SIZE}, or 'native'"
        )
    try:
        return integer(value, "input_size (pixels)", low, MAX_INPUT_SIZE)
    except ParameterError as exc:
        raise ParameterError(f"{exc}; or 'native' (None) for each backbone's own size") from None


def thumbnail_size(value: Any) -> int:
    """The gate's thumbnail side: a multiple of 8 from 8 to 128."""
    integer(value, "thumbnail_size", THUMBNAIL_STEP, MAX_THUMBNAIL)
    if value % THUMBNAIL_STEP:
        raise ParameterError(
            f"thumbnail_size must be a multiple of {THUMBNAIL_STEP} (8, 16, 32, 64, ...) for the "
            f"thumbnail gate's strides, got {value}"
        )
    return value


BACKGROUNDS: dict[str, Colour] = {"white": (255, 255, 255), "black": (0, 0, 0)}


def background(value: Any) -> Colour:
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


def device(value: Any) -> str:
    """A device this machine has: 'auto', 'cpu', 'cuda[:N]' (if CUDA is here) or 'mps' (if MPS is here)."""
    import torch

    from fusion_lib.data.device import resolve_device

    if not isinstance(value, str) or not _DEVICE.match(value):
        raise ParameterError(f"device must be {DEVICE_HELP}, got {value!r}")
    try:
        dev = resolve_device(value)
    except ValueError as exc:  # CUDA asked for but absent
        raise ParameterError(str(exc)) from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ParameterError(
            f"device {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError(f"device {value!r} asked for but MPS is not available; use 'auto' or 'cpu'")
    return value


def dataset(name: Any) -> str:
    """A registered dataset name or an ImageFolder directory."""
    if isinstance(name, str) and (name in LOADERS or Path(name).expanduser().is_dir()):
        return name
    raise ParameterError(
        f"unknown dataset {name!r}; valid datasets: {', '.join(LOADERS)}, "
        f"or a path to an ImageFolder directory"
    )


def split_sizes(name: str, sizes: SplitSizes, online: bool = False) -> SplitSizes:
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
        raise ParameterError(
            f"{name}: {parts} = {want} images, but {where} has only {pool}; use smaller sizes"
        )
    if test_pool and sizes.test > test_pool:
        raise ParameterError(
            f"{name}: test = {sizes.test}, but its official test split has only {test_pool} images"
        )
    small = [f"{s}={getattr(sizes, s)}" for s in ("train", "val", "test") if getattr(sizes, s) < classes]
    if small:
        raise ParameterError(
            f"{name}: {', '.join(small)} is smaller than its {classes} classes; every split is "
            f"stratified, so give each at least {classes} images"
        )
    return sizes


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """A folder that exists and can be written to, or that can be created (nothing is created here)."""
    p = Path(path).expanduser()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ParameterError(
            f"{what} {str(path)!r} cannot be a folder: {probe} is a file; choose another path"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ParameterError(
            f"{what} {str(path)!r} is not writable ({exc.strerror} in {probe}); "
            f"choose a folder you can write to"
        ) from None
    return p


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The feature cache folder (``path``, or ``$FUSION_CACHE/features``), writable."""
    from fusion_lib.data.assets import cache_root

    if path is not None:
        return writable_dir(path, "cache_dir")
    return writable_dir(cache_root() / "features", "FUSION_CACHE (the cache folder)")


def split_names(spec: str | Sequence[str]) -> list[str]:
    """Names from a comma-separated string or a sequence of names: stripped, blanks dropped, in order."""
    parts = spec.split(",") if isinstance(spec, str) else spec
    return [name.strip() for name in parts if name.strip()]


def backbones(spec: Any) -> list[str]:
    """Backbone names ("offline", timm names); unknown ones list the valid choices. Nothing is loaded."""
    from fusion_lib.data.backbones import BackboneError, resolve_backbones

    if not isinstance(spec, str) and not (
        isinstance(spec, Sequence) and all(isinstance(b, str) for b in spec)
    ):
        raise ParameterError(f"backbones must be a comma-separated string or a list of names, got {spec!r}")
    try:
        return resolve_backbones(spec)
    except BackboneError as exc:
        raise ParameterError(str(exc)) from None
