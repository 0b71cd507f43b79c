"""Choosing the torch device: one rule for feature extraction and for training."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" picks CUDA when present; anything else (a resolved device too) is passed to torch.device
    (with a clear error)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"bad device {device!r} ({exc}); use 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use 'auto' or 'cpu'")
    return dev
