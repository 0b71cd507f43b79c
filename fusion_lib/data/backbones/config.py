"""What is known about each offline backbone before it is built (``BackboneCfg``), and the named zoos."""

from __future__ import annotations

import re
from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keras applications scale to [-1, 1] (x / 127.5 - 1); the 2015 TF Inception graph takes (x - 128) / 128.
KERAS_MEAN = KERAS_STD = (0.5, 0.5, 0.5)
TF_INCEPTION_MEAN = TF_INCEPTION_STD = (128 / 255,) * 3
# Caffe/Keras VGG: 0..255 minus the ImageNet mean, unscaled (the port takes RGB; conv1 is flipped from BGR).
CAFFE_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
CAFFE_STD = (1 / 255,) * 3


@dataclass(frozen=True)
class BackboneCfg:
    """Everything known about one offline backbone before it is built, in the style of timm's
    ``pretrained_cfg``: its display name, the asset and file holding its weights, what they were trained on,
    which library builds it and, for torchvision models and ports (timm models carry their own in their
    ``pretrained_cfg``), how its images are prepared.

    ``library`` is "timm", "torchvision" or "port": an architecture of ``fusion_lib.data.backbones.<port>``
    whose weights were converted from another framework when the asset was fetched (checked against that
    framework's own output by ``tests/test_ports.py``). ``hub_name`` is the timm hub model these weights
    stand in for where the hub is unreachable.
    """

    name: str
    short_name: str  # for plots and tables
    family: str  # architecture family, for the zoo's diversity
    asset: str  # the offline asset with the weights (``fusion_lib.data.assets``)
    weights_file: str  # the weights file in that asset (a port's name carries its conversion version)
    imagenet_top1: float | None  # published ImageNet top-1 (%) of these weights; None once fine-tuned
    trained_on: str = "ImageNet-1k"
    licence: str = ""
    library: str = "timm"
    port: str | None = None  # the module of fusion_lib.data.backbones that builds a port
    hub_name: str | None = None
    input_size: int = 224
    min_input_size: int = 32  # the smallest input its stem and strides take
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875


def _lite(variant: int, file_hash: str, top1: float) -> BackboneCfg:
    return BackboneCfg(
        f"tf_efficientnet_lite{variant}",
        f"lite{variant}",
        "EfficientNet",
        f"efficientnet_lite{variant}",
        f"efficientnet-lite{variant}-{file_hash}.pth",
        top1,
        licence="Apache-2.0",
    )


# Published top-1: timm's results table for the EfficientNet-Lite ports, the SqueezeNet paper's repository
# for the Caffe model 1.1, the Keras applications table for Xception and VGG16 (whose convolutions in the MRI
# classifier equal the Keras ImageNet weights, checked value by value) and the Inception-v3 paper's
# single-crop figure for the 2015 TF graph.
BACKBONE_CFGS: dict[str, BackboneCfg] = {
    cfg.name: cfg
    for cfg in (
        _lite(0, "57934424", 74.83),
        _lite(1, "77cc7160", 76.64),
        _lite(2, "9656183e", 77.46),
        BackboneCfg(
            "squeezenet1_1",
            "squeezenet",
            "SqueezeNet",
            "squeezenet1_1",
            "squeezenet1_1.pt",
            58.18,
            licence="BSD-2-Clause",
            library="torchvision",
        ),
        BackboneCfg(
            "keras_xception",
            "xception",
            "Xception",
            "keras_xception",
            "keras_xception.port-v1.pt",
            79.0,
            licence="none declared (Keras weights: MIT)",
            library="port",
            port="keras_xception",
            hub_name="legacy_xception",
            input_size=299,
            min_input_size=71,
            mean=KERAS_MEAN,
            std=KERAS_STD,
            crop_pct=0.8975,
        ),
        BackboneCfg(
            "fid_inception_v3",
            "inception",
            "Inception",
            "fid_inception_v3",
            "fid_inception_v3.port-v1.pt",
            78.0,
            licence="MIT (package), Apache-2.0 (graph)",
            library="port",
            port="torchscript_inception",
            hub_name="inception_v3",
            input_size=299,
            min_input_size=75,
            mean=TF_INCEPTION_MEAN,
            std=TF_INCEPTION_STD,
        ),
        BackboneCfg(
            "keras_mobilenetv2_dogs",
            "mobilenetv2",
            "MobileNet",
            "keras_mobilenetv2_dogs",
            "keras_mobilenetv2_dogs.port-v1.pt",
            None,
            trained_on="ImageNet-1k, then 19 dog breeds (its last blocks)",
            licence="MIT",
            library="port",
            port="keras_mobilenetv2",
            input_size=160,
            min_input_size=32,
            mean=KERAS_MEAN,
            std=KERAS_STD,
        ),
        BackboneCfg(
            "onnx_vgg16_mri",
            "vgg16",
            "VGG",
            "onnx_vgg16_mri",
            "onnx_vgg16_mri.port-v1.pt",
            71.3,
            trained_on="ImageNet-1k (Keras weights, unchanged under an MRI head)",
            licence="none (unfilled template)",
            library="port",
            port="onnx_vgg16",
            hub_name="vgg16",
            input_size=240,
            min_input_size=32,
            mean=CAFFE_MEAN,
            std=CAFFE_STD,
        ),
    )
}
OFFLINE_BACKBONES: tuple[str, ...] = tuple(BACKBONE_CFGS)
# The two zoos of four experts the book compares (notebooks 02 and 03): one architecture family plus
# SqueezeNet, and four families; see the methods chapter for why these four.
ZOOS: dict[str, tuple[str, ...]] = {
    "homogeneous": (
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite1",
        "tf_efficientnet_lite2",
        "squeezenet1_1",
    ),
    "diverse": ("tf_efficientnet_lite0", "keras_xception", "fid_inception_v3", "squeezenet1_1"),
}
_SHORT_PATTERN = re.compile("|".join(sorted(map(re.escape, BACKBONE_CFGS), key=len, reverse=True)))
# Stems that shrink the image more than the others, among timm's hub models: torchvision's and Keras's minimum.
_HUB_MIN_INPUT = {cfg.hub_name: cfg.min_input_size for cfg in BACKBONE_CFGS.values() if cfg.hub_name}


def short_name(label: str) -> str:
    """A backbone's display name (``"tf_efficientnet_lite0"`` -> ``"lite0"``). In a method or expert
    label the backbone part is shortened and the rest kept (``"single:squeezenet1_1"`` ->
    ``"single:squeezenet"``); labels without a known backbone come back unchanged."""
    return _SHORT_PATTERN.sub(lambda m: BACKBONE_CFGS[m.group(0)].short_name, label)


def min_input_size(name: str) -> int:
    """The smallest input (pixels) the backbone ``name`` takes: its ``BackboneCfg``'s, or, for a hub model
    that an offline port stands in for (Xception, Inception-v3), the port's."""
    cfg = BACKBONE_CFGS.get(name)
    return cfg.min_input_size if cfg is not None else _HUB_MIN_INPUT.get(name, 32)
