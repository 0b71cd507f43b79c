"""Content-addressed dataset identities and the pre-flight of unreadable images."""

import os
import pickle
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from fusion_lib.data import datasets as D
from fusion_lib.data.datasets import BadImagesError, SkippedImagesWarning, SplitSizes, load_dataset
from fusion_lib.data.extraction import extract_features

SIZES = SplitSizes(6, 2, 4)


def _folder(root, n=6, seed=0, ext="bmp"):
    """Two classes of n small random RGB images each; BMP keeps the file size fixed for a given shape."""
    rng = np.random.default_rng(seed)
    for cls in ("ant", "bee"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / cls / f"{i}.{ext}")
    return root


def _rewrite_in_place(path, seed=99):
    """New pixels, same size and same mtime: what a path-, size- or mtime-keyed cache cannot see."""
    st = os.stat(path)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def test_rewritten_image_with_same_size_and_mtime_gets_new_features(tmp_path):
    folder = _folder(tmp_path / "imgs")
    d = load_dataset(str(folder), SIZES)
    before, _ = extract_features(
        "squeezenet1_1", d, "train", 32, progress=False, cache_dir=tmp_path / "cache"
    )
    row = 0
    _rewrite_in_place(D.PILSource.where(d.pools["train"].source, int(d.indices["train"][row])))
    d2 = load_dataset(str(folder), SIZES)
    assert d2.identity != d.identity
    after, _ = extract_features(
        "squeezenet1_1", d2, "train", 32, progress=False, cache_dir=tmp_path / "cache"
    )
    assert not np.allclose(after[row], before[row])
    np.testing.assert_array_equal(np.delete(after, row, 0), np.delete(before, row, 0))  # only it changed


def test_identity_follows_contents_and_labels_not_the_path(tmp_path):
    d = load_dataset(str(_folder(tmp_path / "a")), SIZES)
    assert d.identity.startswith("folder:files:") and str(tmp_path) not in d.identity  # no v1 path-only key
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_dataset(str(tmp_path / "b"), SIZES).identity == d.identity  # moved: the cache still fits
    os.rename(tmp_path / "b" / "ant" / "0.bmp", tmp_path / "b" / "bee" / "moved.bmp")  # one label changes
    assert load_dataset(str(tmp_path / "b"), SplitSizes(4, 2, 4)).identity != d.identity


def test_fast_identity_is_keyed_on_size_and_mtime_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_fast_identity_warned", False)
    folder = _folder(tmp_path / "imgs")
    with pytest.warns(D.FastIdentityWarning, match="same size and mtime"):
        fast = load_dataset(str(folder), SIZES, fast_identity=True)
    assert (
        fast.identity.startswith("folder:stat:")
        and fast.identity != load_dataset(str(folder), SIZES).identity
    )
    _rewrite_in_place(folder / "ant" / "3.bmp")
    with warnings.catch_warnings():
        warnings.simplefilter("error", D.FastIdentityWarning)  # once per process
        assert (
            load_dataset(str(folder), SIZES, fast_identity=True).identity == fast.identity
        )  # the documented miss
    os.utime(folder / "ant" / "3.bmp")
    assert load_dataset(str(folder), SIZES, fast_identity=True).identity != fast.identity


def test_torchvision_root_identity_hashes_the_files_read(cifar10_pickles, tmp_path):
    small = SplitSizes(20, 10, 20)
    first = load_dataset("cifar10", small, root=tmp_path).identity  # the pickles are under tmp_path
    assert first.startswith("cifar10:files:") and str(tmp_path) not in first
    test_batch = cifar10_pickles / "test_batch"
    batch = pickle.loads(test_batch.read_bytes())
    batch["data"][0, 0] ^= 1  # one pixel, one bit
    test_batch.write_bytes(pickle.dumps(batch))
    assert load_dataset("cifar10", small, root=tmp_path).identity != first


def _break(folder):
    """One truncated PNG and one text file with an image extension."""
    png = folder / "ant" / "0.png"
    png.write_bytes(png.read_bytes()[:200])
    (folder / "bee" / "notes.png").write_text("not an image")
    return [str(png), str(folder / "bee" / "notes.png")]


def test_unreadable_images_are_all_reported_before_extraction(tmp_path):
    folder = _folder(tmp_path / "imgs", n=8, ext="png")
    bad = _break(folder)
    with pytest.raises(BadImagesError) as err:
        load_dataset(str(folder), SplitSizes(8, 4, 5))  # 17 of 17 images are selected
    msg = str(err.value)
    assert all(p in msg for p in bad) and "2 of the 17" in msg and "skip_bad_images=True" in msg
    assert "truncated" in msg


def test_skip_bad_images_leaves_them_out_lists_them_and_counts_them(tmp_path):
    folder = _folder(tmp_path / "imgs", n=8, ext="png")
    clean = load_dataset(str(folder), SplitSizes(6, 4, 3))
    bad = _break(folder)
    with pytest.warns(SkippedImagesWarning, match="left out 2 unreadable") as caught:
        d = load_dataset(str(folder), SplitSizes(6, 4, 3), skip_bad_images=True)  # 13 of the 15 readable
    assert set(d.skipped) == set(bad)  # every bad one, found before the split, whichever are drawn
    assert all(p in str(caught[0].message) for p in d.skipped)
    assert "skipped-2-" in d.identity and d.identity != clean.identity
    assert {s: len(v) for s, v in d.indices.items()} == {"train": 6, "val": 4, "test": 3}
    used = {d.pools[s].source.where(int(i)) for s in d.indices for i in d.indices[s]}
    assert not used & set(bad)
    assert all(d.tensor(s, i).shape == (3, 20, 20) for s in d.indices for i in range(len(d.indices[s])))
