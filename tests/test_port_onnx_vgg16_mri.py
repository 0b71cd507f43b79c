"""The VGG16 port (``onnx_vgg16_mri``) against onnxruntime on the original ONNX graph, image by image, at
its native 240 px and at 80 px (reference: ``tests/fixtures/ports/make_onnx_vgg16_mri_reference.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_lib.data.backbones import load_backbone

pytestmark = pytest.mark.assets

NAME = "onnx_vgg16_mri"
REFERENCE = Path(__file__).parent / "fixtures" / "ports" / f"{NAME}.npz"
RTOL = 1e-3  # of the largest reference feature


@pytest.mark.parametrize("size", [240, 80])
def test_port_matches_onnxruntime(size: int) -> None:
    ref = np.load(REFERENCE)
    images, expected = ref[f"images_{size}"], ref[f"features_{size}"]
    backbone = load_backbone(NAME, input_size=size)
    assert backbone.feature_dim == 512
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    with torch.no_grad():
        got = backbone.model((x - mean) / std).numpy()
    assert got.shape == (len(images), backbone.feature_dim)
    for i in range(len(images)):
        scale = np.abs(expected[i]).max()
        assert np.abs(got[i] - expected[i]).max() <= RTOL * scale, f"image {i} at {size} px"
