"""The generic checks of user-facing parameters, run before any work: one place for their rules and messages.

The data spec (``spec.FeatureSpec``), ``ExperimentConfig``, the command lines and the notebook profiles
(``profiles.get_profile``) all call these checks, so a bad value fails at once, with a message that
names the value and the valid range, before weights load or features are extracted. This module is a
leaf (it imports only the asset registry's cache root): a check that needs what another module defines
lives with that module (the dataset name, its split sizes, the backbones and their input size in
``spec``; the background colour in ``datasets``), so that no module these checks read imports this one
back. Each check raises ``ValueError`` (``ParameterError``) and returns the value in its normal form.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

from fusion_lib.data.assets.registry import cache_root
from fusion_lib.data.device import resolve_device

# Below 4 px a resize has nothing to average; above 128 px it is no longer a thumbnail. What a gate can take
# (the thumbnail gate's stride) is the gate's own rule: fusion_lib.fusion.gates.ThumbnailGate.check_size.
MIN_THUMBNAIL, MAX_THUMBNAIL = 4, 128
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


def thumbnail_size(value: Any) -> int:
    """A stored thumbnail's side in pixels, from 4 to 128."""
    return integer(value, "thumbnail_size", MIN_THUMBNAIL, MAX_THUMBNAIL)


def device(value: Any) -> str:
    """A device this machine has: 'auto', 'cpu', 'cuda[:N]' (if CUDA is here) or 'mps' (if MPS is here)."""
    # torch is imported only when a device is checked, so that the other checks stay light
    import torch

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
    if path is not None:
        return writable_dir(path, "cache_dir")
    return writable_dir(cache_root() / "features", "FUSION_CACHE (the cache folder)")


def split_names(spec: str | Sequence[str]) -> list[str]:
    """Names from a comma-separated string or a sequence of names: stripped, blanks dropped, in order."""
    parts = spec.split(",") if isinstance(spec, str) else spec
    return [name.strip() for name in parts if name.strip()]
