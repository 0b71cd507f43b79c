"""Frozen ImageNet backbones by name: the offline ones (``config``), built by ``build``; the ports from
other frameworks live one per source format (``keras_xception``, ``keras_mobilenetv2``,
``torchscript_inception``, ``onnx_vgg16``).

A port module provides ``convert(dest)``, run when its asset is fetched (it reads the verified original
file in ``dest`` and writes the ``BackboneCfg.weights_file`` state dict, atomically), and ``build()``, the
architecture with random weights: an ``nn.Module`` mapping normalised images (n, 3, s, s) to features
(n, ``feature_dim``), with ``feature_dim`` as an attribute.
"""

from fusion_lib.data.backbones.build import (
    Backbone,
    BackboneError,
    backbone_table,
    count_gflops,
    default_input_size,
    hub_or_offline,
    imagenet_predictions,
    imagenet_sanity_check,
    load_backbone,
    provenance_table,
    resolve_backbones,
    weights_identity,
)
from fusion_lib.data.backbones.config import (
    BACKBONE_CFGS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFLINE_BACKBONES,
    ZOOS,
    BackboneCfg,
    min_input_size,
    short_name,
)

__all__ = [
    "BACKBONE_CFGS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFLINE_BACKBONES",
    "ZOOS",
    "Backbone",
    "BackboneCfg",
    "BackboneError",
    "backbone_table",
    "count_gflops",
    "default_input_size",
    "hub_or_offline",
    "imagenet_predictions",
    "imagenet_sanity_check",
    "load_backbone",
    "min_input_size",
    "provenance_table",
    "resolve_backbones",
    "short_name",
    "weights_identity",
]
