import pytest
import torch
from torch import nn

from fusion_lib.data.backbones import load_backbone
from fusion_lib.data.fold_bn import fold_batchnorm


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


class _BnFirst(nn.Module):
    """Registers conv before bn but runs bn first: folding would change what it computes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_folding_keeps_outputs_and_removes_batch_norms():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.BatchNorm2d(4),
    )
    _randomise_bn(model)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    assert fold_batchnorm(model, x) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_folding_that_would_change_outputs_is_undone():
    model = _BnFirst()
    _randomise_bn(model)
    model.eval()
    x = torch.randn(2, 4, 8, 8)
    expected = model(x)
    with pytest.warns(UserWarning, match="left unfolded"):
        assert fold_batchnorm(model, x) == 0
    assert isinstance(model.bn, nn.BatchNorm2d)
    torch.testing.assert_close(model(x), expected, atol=0, rtol=0)


def test_folding_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), torch.randn(1, 3, 4, 4))


def test_offline_efficientnet_is_folded_with_timm_activations_kept():
    bb = load_backbone("tf_efficientnet_lite0", input_size=64)
    modules = list(bb.model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, nn.ReLU6) for m in modules)  # BatchNormAct2d's activation survives
