"""The FID Inception-v3 port against the original TorchScript's features (``tests/fixtures/ports``,
made by ``make_fid_inception_v3_reference.py``): at 299 px its whole output, at 80 px its layers up to
Mixed_7c and their spatial mean (its fixed 8x8 last pool does not fit there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_lib.data.backbones import load_backbone

pytestmark = pytest.mark.assets

NAME = "fid_inception_v3"
FIXTURE = Path(__file__).parent / "fixtures" / "ports" / f"{NAME}.npz"
TOLERANCE = 1e-3  # max |port - original| relative to max |original|, image by image


@pytest.mark.parametrize("size", [299, 80])
def test_port_matches_the_torchscript(size: int) -> None:
    ref = np.load(FIXTURE)
    images, expected = ref[f"images_{size}"], ref[f"features_{size}"]
    backbone = load_backbone(NAME, input_size=size)
    assert backbone.feature_dim == 2048
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    with torch.no_grad():
        got = backbone.model((x - mean) / std).numpy()
    assert got.shape == (len(images), backbone.feature_dim)
    for port, original in zip(got, expected):
        assert np.abs(port - original).max() <= TOLERANCE * np.abs(original).max()
