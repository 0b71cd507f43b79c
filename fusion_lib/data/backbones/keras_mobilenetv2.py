"""Keras' MobileNetV2 1.0 (``keras.applications.MobileNetV2(alpha=1.0, include_top=False)``, ImageNet, its
last blocks fine-tuned on dog breeds; a legacy Keras HDF5 classifier built at 160 px): the trunk's last
activation (``out_relu``), global-average-pooled to 1280-d.

timm's ``mobilenetv2_100`` is the same network; built with TF's "same" padding and Keras' batch-norm epsilon
(1e-3), as timm builds its ``tf_`` EfficientNets, it computes what Keras does: Keras pads its stride-2
depthwise convolutions by ``correct_pad`` for the size it is built at, which is TF's "same". The saved
classifier froze the pads of 160 px (bottom/right only); where a strided layer's input is odd (80 px: 5x5 at
block 13) that graph forced to another size differs from both, so the port follows Keras' builder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusion_lib.data.assets import AssetError
from fusion_lib.data.atomic import atomic_path
from fusion_lib.data.backbones.config import BACKBONE_CFGS

H5_FILE = "dog_breed_mobilenetv2.h5"
INNER_PREFIX = "mobilenetv2_1.00"  # the trunk's name in the classifier: mobilenetv2_1.00_<size>
BN_EPS = 1e-3
BN_VARS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


class MobileNetV2Features(nn.Module):
    """timm's ``mobilenetv2_100`` without its classifier, padded as TF: (n, 3, s, s) -> (n, 1280), the spatial
    mean of the last ReLU6. Takes RGB scaled to [-1, 1]."""

    feature_dim = 1280

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(
            "mobilenetv2_100", pretrained=False, num_classes=0, pad_type="same", bn_eps=BN_EPS
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build() -> MobileNetV2Features:
    """The architecture, randomly initialised."""
    return MobileNetV2Features()


def _keras_names(model: MobileNetV2Features) -> dict[str, str]:
    """torch module path -> Keras layer name, for every convolution and batch norm of the trunk."""
    names = {
        "net.conv_stem": "Conv1",
        "net.bn1": "bn_Conv1",
        "net.conv_head": "Conv_1",
        "net.bn2": "Conv_1_bn",
    }
    first = "expanded_conv"  # Keras' block 0, timm's DepthwiseSeparableConv: no expansion
    names |= {
        "net.blocks.0.0.conv_dw": f"{first}_depthwise",
        "net.blocks.0.0.bn1": f"{first}_depthwise_BN",
        "net.blocks.0.0.conv_pw": f"{first}_project",
        "net.blocks.0.0.bn2": f"{first}_project_BN",
    }
    k = 0
    for stage, blocks in enumerate(model.net.blocks):
        for index in range(len(blocks)):
            if k > 0:  # Keras numbers the inverted residuals block_1 ... block_16
                prefix = f"net.blocks.{stage}.{index}"
                for torch_conv, torch_bn, keras in (
                    ("conv_pw", "bn1", "expand"),
                    ("conv_dw", "bn2", "depthwise"),
                    ("conv_pwl", "bn3", "project"),
                ):
                    names[f"{prefix}.{torch_conv}"] = f"block_{k}_{keras}"
                    names[f"{prefix}.{torch_bn}"] = f"block_{k}_{keras}_BN"
            k += 1
    return names


def convert(dest: Path) -> None:
    """The classifier's MobileNetV2 trunk (legacy Keras HDF5) -> a ``MobileNetV2Features`` state dict."""
    # h5py and timm: imported where used, since only converting this port's Keras weights needs them
    import h5py

    src = dest / H5_FILE
    try:
        h5 = h5py.File(src, "r")
    except OSError as exc:
        raise AssetError(f"{src} is not an HDF5 file: {exc}") from None
    with h5:
        try:
            config = json.loads(h5.attrs["model_config"])
            weights = h5["model_weights"]
        except (KeyError, json.JSONDecodeError) as exc:
            raise AssetError(
                f"{src} is not a legacy Keras model (model_config, model_weights): {exc}"
            ) from None
        inner = [
            la
            for la in config["config"]["layers"]
            if str(la["config"].get("name", "")).startswith(INNER_PREFIX)
        ]
        if len(inner) != 1 or inner[0]["config"]["name"] not in weights:
            raise AssetError(f"{src}: expected one nested Keras MobileNetV2 ({INNER_PREFIX}_<size>)")
        layers = {la["config"]["name"]: la for la in inner[0]["config"]["layers"]}
        group = weights[inner[0]["config"]["name"]]
        model = build()
        modules = dict(model.named_modules())
        state: dict[str, torch.Tensor] = {}
        for path, keras in _keras_names(model).items():
            if keras not in layers or keras not in group:
                raise AssetError(f"{src}: the trunk has no weights for Keras layer {keras!r}")
            if isinstance(modules[path], nn.BatchNorm2d):
                if layers[keras]["config"]["epsilon"] != BN_EPS:
                    raise AssetError(f"{src}: {keras} has epsilon {layers[keras]['config']['epsilon']}")
                for key, var in BN_VARS.items():
                    state[f"{path}.{key}"] = torch.from_numpy(group[f"{keras}/{var}"][()])
                state[f"{path}.num_batches_tracked"] = torch.tensor(0)
            else:
                kernel = group[f"{keras}/kernel"][()]
                # Keras: conv (kh, kw, in, out), depthwise (kh, kw, in, 1); torch: (out, in/groups, kh, kw)
                perm = (2, 3, 0, 1) if keras.endswith("depthwise") else (3, 2, 0, 1)
                state[f"{path}.weight"] = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, perm)))
    expected = model.state_dict()
    wrong = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if wrong or len(state) != len(expected):
        raise AssetError(
            f"{src}: the trunk's weights do not fit MobileNetV2 1.0 (missing or misshapen: {wrong[:5]})"
        )
    with atomic_path(dest / BACKBONE_CFGS["keras_mobilenetv2_dogs"].weights_file) as tmp:
        torch.save(state, tmp)
