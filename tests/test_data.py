"""Datasets: offline sets, torchvision's on-disk formats made small here, ImageFolders and bad input."""

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from fusion_lib.data.datasets import DatasetError, SplitSizes, from_arrays, load_dataset

SMALL = SplitSizes(train=40, val=20, test=30)


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    code = {1: 0x0801, 3: 0x0803}[arr.ndim]
    with open(path, "wb") as fh:
        fh.write(struct.pack(">I", code) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes())


def test_offline_datasets_are_stratified_disjoint_and_seeded():
    for name in ["fashion_mnist", "digits", "mnist"]:
        d = load_dataset(name, SMALL, seed=3)
        assert {s: len(v) for s, v in d.labels.items()} == {"train": 40, "val": 20, "test": 30}
        counts = np.bincount(d.labels["train"], minlength=10)
        assert counts.min() >= 3 and counts.max() <= 5  # 40 images over 10 classes, stratified
        assert len(d.class_names) == 10
        same_pool = d.pools["train"] is d.pools["test"]
        assert not set(d.indices["train"]) & set(d.indices["val"])
        if same_pool:
            assert not set(d.indices["train"]) & set(d.indices["test"])
        again = load_dataset(name, SMALL, seed=3)
        assert all(np.array_equal(d.indices[s], again.indices[s]) for s in d.indices)
        assert not np.array_equal(d.indices["train"], load_dataset(name, SMALL, seed=4).indices["train"])
        img = d.image("train", 0)
        assert img.mode == "RGB"
        thumbs = d.thumbnails("val", 16)
        assert thumbs.shape == (20, 3, 16, 16) and thumbs.dtype == np.float32
        assert 0 <= thumbs.min() and thumbs.max() <= 1 and thumbs.max() > 0.5


def test_fashion_mnist_class_names():
    assert load_dataset("fashion_mnist", SMALL).class_names[0] == "T-shirt/top"


def test_cifar_cats_dogs_is_colour_with_test_drawn_from_the_pool():
    d = load_dataset("cifar_cats_dogs", SplitSizes(train=40, val=20, test=30), seed=1)
    assert d.class_names == ["cat", "dog"] and not d.official_test
    assert d.identity.startswith("cifar_cats_dogs:npm:")
    assert np.bincount(d.labels["test"]).tolist() == [15, 15]
    assert not set(d.indices["test"]) & (set(d.indices["train"]) | set(d.indices["val"]))
    img = d.tensor("train", 0)
    assert img.shape == (3, 32, 32) and not torch.equal(img[0], img[2])


def test_cifar10_from_torchvision_pickles(cifar10_pickles):
    d = load_dataset("cifar10", SMALL, root=cifar10_pickles.parent)
    assert d.class_names == [f"c{i}" for i in range(10)]
    assert d.tensor("test", 0).shape == (3, 32, 32)
    raw = pickle.loads((cifar10_pickles / "test_batch").read_bytes())["data"][d.indices["test"][0]]
    assert np.array_equal(d.tensor("test", 0).numpy().reshape(-1), raw)


def test_cifar_missing_offline_says_download(tmp_path):
    with pytest.raises(DatasetError, match="download=True"):
        load_dataset("cifar100", SMALL, root=tmp_path)


def test_mnist_from_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in [("train", 100), ("t10k", 40)]:
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    d = load_dataset("mnist", SMALL, root=tmp_path)
    assert d.identity.startswith("mnist:files:")
    assert d.image("train", 0).size == (28, 28)


def test_image_folder_with_mixed_modes(tmp_path):
    rng = np.random.default_rng(2)
    modes = {"cat": "L", "dog": "RGBA", "owl": "I;16"}
    for cls, mode in modes.items():
        (tmp_path / cls).mkdir()
        for i in range(6):
            if mode == "I;16":
                img = Image.fromarray(rng.integers(0, 4000, (12, 10)).astype(np.uint16))
            else:
                img = Image.fromarray(rng.integers(0, 256, (12, 10, len(mode)), dtype=np.uint8).squeeze())
            img.save(tmp_path / cls / f"{i}.png")
    d = load_dataset(str(tmp_path), SplitSizes(6, 3, 6))
    assert d.class_names == ["cat", "dog", "owl"]
    for i in range(6):
        assert d.image("test", i).mode == "RGB"
    assert d.thumbnails("train", 8).shape == (6, 3, 8, 8)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet22k'.*fashion_mnist.*cifar10"):
        load_dataset("imagenet22k", SMALL)


def test_bad_sizes_and_splits():
    with pytest.raises(DatasetError, match="positive integer"):
        SplitSizes(train=0)
    with pytest.raises(DatasetError, match="only"):
        load_dataset("digits", SplitSizes(1500, 200, 200))
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset("digits", SMALL).image("holdout", 0)


def test_wrong_image_shapes_and_dtypes():
    labels = np.arange(90) % 3
    with pytest.raises(DatasetError, match="shape"):
        from_arrays("toy", np.zeros((90, 8, 8, 4), np.uint8), labels, ["a", "b", "c"], SplitSizes(30, 15, 30))
    with pytest.raises(DatasetError, match="uint8"):
        from_arrays("toy", np.zeros((90, 8, 8), np.float32), labels, ["a", "b", "c"], SplitSizes(30, 15, 30))
    with pytest.raises(DatasetError, match="match"):
        from_arrays("toy", np.zeros((80, 8, 8), np.uint8), labels, ["a", "b", "c"], SplitSizes(30, 15, 30))
    d = from_arrays("toy", np.zeros((90, 8, 8, 3), np.uint8), labels, ["a", "b", "c"], SplitSizes(30, 15, 30))
    assert d.tensor("train", 0).shape == (3, 8, 8)
