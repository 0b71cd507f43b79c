"""Backbones: real ImageNet weights pass the foolbox check; bad names and missing weights fail clearly."""

import pytest
import torch

from fusion_lib.data import backbones
from fusion_lib.data.assets import AssetError
from fusion_lib.data.backbones import OFFLINE_BACKBONES, BackboneError, load_backbone

pytestmark = pytest.mark.assets  # these tests read the fetched offline assets


@pytest.mark.parametrize(
    "name,minimum",
    [
        ("tf_efficientnet_lite0", 16),
        ("tf_efficientnet_lite1", 16),
        ("tf_efficientnet_lite2", 16),
        ("squeezenet1_1", 12),
    ],
)
def test_imagenet_weights_classify_foolbox_samples(name, minimum):
    correct, total = backbones.imagenet_sanity_check(name)
    assert total == 20 and correct >= minimum


def test_backbone_is_frozen_with_metadata():
    b = load_backbone("squeezenet1_1", input_size=64)
    assert not b.model.training and not any(p.requires_grad for p in b.model.parameters())
    assert b.feature_dim == 512 and b.n_params == 1_235_496
    assert b.mean == backbones.IMAGENET_MEAN and b.input_size == 64 and b.gflops > 0
    with torch.no_grad():
        assert b.model(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_efficientnet_preprocessing_comes_from_timm_cfg():
    b = load_backbone("tf_efficientnet_lite1")
    assert b.mean == (0.5, 0.5, 0.5) and b.std == (0.5, 0.5, 0.5) and b.input_size == 240
    assert b.imagenet_top1 is not None
    assert load_backbone("tf_efficientnet_lite1", input_size=96).gflops < b.gflops


def test_resolve_offline_and_unknown_names():
    assert backbones.resolve_backbones("offline") == list(backbones.ZOOS["diverse"])
    assert backbones.resolve_backbones("all-offline") == list(OFFLINE_BACKBONES)
    assert backbones.resolve_backbones("homogeneous,squeezenet1_1") == list(backbones.ZOOS["homogeneous"])
    assert backbones.resolve_backbones("squeezenet1_1,tf_efficientnet_lite0") == [
        "squeezenet1_1",
        "tf_efficientnet_lite0",
    ]
    with pytest.raises(BackboneError, match="unknown backbone 'resnet5000'.*squeezenet1_1"):
        backbones.resolve_backbones(["resnet5000"])


@pytest.mark.parametrize("name", ["squeezenet1_1", "keras_xception", "fid_inception_v3"])
def test_missing_offline_weights_say_how_to_fetch(monkeypatch, name):
    def gone(asset, filename):
        raise AssetError("not in the cache and the registry is unreachable")

    monkeypatch.setattr(backbones.build, "asset_file", gone)
    with pytest.raises(BackboneError, match=f"assets fetch {backbones.BACKBONE_CFGS[name].asset}"):
        load_backbone(name)


def test_a_port_has_no_hub_copy_of_its_own():
    with pytest.raises(BackboneError, match="load_backbone\\('legacy_xception', weights='hub'\\)"):
        load_backbone("keras_xception", weights="hub")


def test_hub_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    with pytest.raises(BackboneError, match="weights=PATH"):
        load_backbone("resnet18")


def test_weights_from_a_local_file(tmp_path):
    ref = load_backbone("squeezenet1_1", input_size=64)
    path = tmp_path / "sq.pt"
    torch.save(ref.imagenet_model.state_dict(), path)
    mine = load_backbone("squeezenet1_1", input_size=64, weights=path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(mine.model(x), ref.model(x))
    assert backbones.weights_identity("squeezenet1_1", path).startswith("sha256:")
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone("squeezenet1_1", weights=tmp_path / "missing.pt")


def test_backbone_table():
    table = backbones.backbone_table(["squeezenet1_1"], input_size=64)
    assert list(table.columns[:6]) == [
        "backbone",
        "params_m",
        "gflops",
        "input_size",
        "feature_dim",
        "imagenet_top1",
    ]


def test_random_weights_are_seeded_and_keyed_apart():
    x = torch.rand(2, 3, 64, 64)
    a, b = (load_backbone("squeezenet1_1", input_size=64, weights="random") for _ in range(2))
    pretrained = load_backbone("squeezenet1_1", input_size=64)
    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x)) and not torch.allclose(a.model(x), pretrained.model(x))
    assert a.weights == "random init" and a.imagenet_top1 is None
    assert backbones.weights_identity("squeezenet1_1", "random").startswith("random:seed0:torch-")
    assert backbones.weights_identity("squeezenet1_1", "random") != backbones.weights_identity(
        "squeezenet1_1"
    )
