"""Every ported backbone against its original framework's own features on real images.

The references (``tests/fixtures/ports/<name>.npz``: uint8 images at each size checked and the original
model's features of them) were computed with Keras 3, the TorchScript module or onnxruntime by the
``make_*.py`` scripts beside them, so this test needs none of those frameworks.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_lib.data.assets import AssetError, get_asset
from fusion_lib.data.backbones import BACKBONE_CFGS, load_backbone

FIXTURES = Path(__file__).parent / "fixtures" / "ports"
PORTS = [name for name, cfg in BACKBONE_CFGS.items() if cfg.library == "port"]
TOLERANCE = 1e-3  # max |port - original| relative to max |original|, image by image


def _sizes(name: str) -> list[int]:
    with np.load(FIXTURES / f"{name}.npz") as ref:
        return sorted(int(k.split("_")[1]) for k in ref.files if k.startswith("images_"))


CASES = [(name, size) for name in PORTS for size in _sizes(name)]


def test_every_port_has_a_reference_at_its_native_size_and_the_books():
    assert len(PORTS) == 4
    for name in PORTS:
        sizes = _sizes(name)
        assert 80 in sizes and len(sizes) >= 2, f"{name}: reference sizes {sizes}"
        # the script that computed it, with the original framework, is kept beside it
        assert any(f'"{name}"' in script.read_text() for script in FIXTURES.glob("make_*.py")), name


@pytest.mark.assets
@pytest.mark.parametrize("name,size", CASES, ids=[f"{n}-{s}px" for n, s in CASES])
def test_port_matches_the_original(name: str, size: int) -> None:
    with np.load(FIXTURES / f"{name}.npz") as ref:
        images, expected = ref[f"images_{size}"], ref[f"features_{size}"]
    backbone = load_backbone(name, input_size=size)  # batch norms folded, as features are extracted
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    with torch.no_grad():
        got = backbone.model((x - mean) / std).numpy()
    assert got.shape == expected.shape == (len(images), backbone.feature_dim)
    for i, (port, original) in enumerate(zip(got, expected)):
        worst = np.abs(port - original).max() / np.abs(original).max()
        assert worst <= TOLERANCE, f"{name} at {size} px, image {i}: {worst:.2e} of the feature scale"


@pytest.mark.parametrize("name", PORTS)
def test_a_wrong_file_is_a_clear_asset_error(name: str, tmp_path: Path) -> None:
    cfg = BACKBONE_CFGS[name]
    member = next(iter(get_asset(cfg.asset).members)).rsplit("/", 1)[-1]
    (tmp_path / member).write_bytes(b"not a model file")
    with pytest.raises(AssetError):
        importlib.import_module(f"fusion_lib.data.backbones.{cfg.port}").convert(tmp_path)
    assert not (tmp_path / cfg.weights_file).exists()  # nothing half-written


@pytest.mark.parametrize("name", PORTS)
def test_port_takes_every_size_from_its_minimum(name: str) -> None:
    cfg = BACKBONE_CFGS[name]
    net = importlib.import_module(f"fusion_lib.data.backbones.{cfg.port}").build().eval()
    with torch.no_grad():
        for size in (cfg.min_input_size, cfg.min_input_size + 1, 80):
            assert net(torch.zeros(1, 3, size, size)).shape == (1, net.feature_dim)


@pytest.mark.assets
def test_a_port_without_imagenet_head_says_how_it_is_checked() -> None:
    from fusion_lib.data.backbones import BackboneError, backbone_table, imagenet_sanity_check

    backbone = load_backbone("onnx_vgg16_mri", input_size=64)
    assert backbone.imagenet_model is None and backbone.imagenet_top1 == 71.3
    with pytest.raises(BackboneError, match="linear probe"):
        imagenet_sanity_check(backbone)
    table = backbone_table(["onnx_vgg16_mri"], input_size=64, sanity_check=True)
    assert table["imagenet_samples_correct"].tolist() == ["no ImageNet head"]
