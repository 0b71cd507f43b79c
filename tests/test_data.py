"""Datasets: offline sets, torchvision's on-disk formats made small here, ImageFolders and bad input."""

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from fusion_lib.data.datasets import (
    BadImagesError,
    DatasetError,
    SkippedImagesWarning,
    SplitSizes,
    from_arrays,
    load_dataset,
)

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


# ---------------------------------------------------------------- the one split: its indices and its messages


def _cats_and_dogs(root, cats=61, dogs=60):
    """An ImageFolder of tiny PNGs: ``cats`` + ``dogs`` images in two classes."""
    rng = np.random.default_rng(0)
    for cls, n in (("cat", cats), ("dog", dogs)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_a_split_that_cannot_be_drawn_says_which_sizes_fit(tmp_path):
    # 60 + 20 of 121 leave 41 for test: a stratified 40 of them would leave one class out of the rest
    folder = _cats_and_dogs(tmp_path / "imgs")
    with pytest.raises(DatasetError) as err:
        load_dataset(str(folder), SplitSizes(60, 20, 40))
    msg = str(err.value)
    assert msg.startswith(f"{folder}: cannot draw test = 40 images")
    assert "the 41 images left of 121 after train + val ('cat' 21, 'dog' 20)" in msg
    assert "Asked for train=60, val=20, test=40" in msg and "test can be 2 to 39 or all 41" in msg
    assert "test_size" not in msg  # scikit-learn's wording
    assert {s: len(v) for s, v in load_dataset(str(folder), SplitSizes(60, 20, 39)).indices.items()} == {
        "train": 60,
        "val": 20,
        "test": 39,
    }


def test_an_unreadable_image_is_named_before_the_split(tmp_path):
    folder = _cats_and_dogs(tmp_path / "imgs")
    bad = folder / "dog" / "7.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadImagesError, match="1 of the 121 images") as err:
        load_dataset(str(folder), SplitSizes(60, 20, 40))  # sizes that cannot be drawn from 121
    assert str(bad) in str(err.value)
    with pytest.warns(SkippedImagesWarning, match="left out 1 unreadable") as caught:
        d = load_dataset(str(folder), SplitSizes(60, 20, 40), skip_bad_images=True)  # 120: test takes all 40
    assert str(bad) in str(caught[0].message) and d.skipped == (str(bad),)
    with pytest.warns(SkippedImagesWarning), pytest.raises(DatasetError, match="cannot draw test = 39"):
        load_dataset(str(folder), SplitSizes(60, 20, 39), skip_bad_images=True)


def test_feature_set_draw_that_cannot_be_drawn_says_which_sizes_fit(make_planted):
    fs = make_planted(
        {"a": 1.0}, sizes=(12, 1, 6)
    )  # train 12 of the 13 pooled would leave val 1 of 3 classes
    with pytest.raises(DatasetError) as err:
        fs.draw(0)
    msg = str(err.value)
    assert msg.startswith("planted (seed 0): cannot draw train = 12 images")
    assert "Asked for train=12, val=1, test=6" in msg and "train can be 3 to 10 here" in msg


def test_split_indices_are_those_the_book_was_drawn_with(make_planted):
    # pinned from the code before the split was one function; a change here changes the book's numbers
    d = from_arrays(
        "toy", np.zeros((30, 4, 4), np.uint8), np.arange(30) % 3, list("abc"), SplitSizes(9, 6, 9)
    )
    assert {s: v.tolist() for s, v in d.indices.items()} == {
        "train": [4, 6, 10, 11, 12, 14, 17, 27, 28],
        "val": [3, 7, 8, 16, 24, 26],
        "test": [1, 2, 9, 13, 15, 21, 23, 25, 29],
    }
    pinned = {
        True: {"train": [1, 2, 3, 9, 10, 11, 12, 13, 14, 15, 16, 17], "val": [0, 4, 5, 6, 7, 8]},
        False: {"train": [1, 2, 3, 12, 13, 16, 18, 19, 20, 21, 22, 23], "val": [0, 8, 9, 10, 14, 17]},
    }
    pinned[True]["test"], pinned[False]["test"] = list(range(18, 24)), [4, 5, 6, 7, 11, 15]
    for fixed_test, rows in pinned.items():
        fs = make_planted({"a": 1.0}, sizes=(12, 6, 6), fixed_test=fixed_test)
        fs.indices = {"train": np.arange(12), "val": np.arange(12, 18), "test": np.arange(18, 24)}
        assert {s: v.tolist() for s, v in fs.draw(1).indices.items()} == rows
