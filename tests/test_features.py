"""Feature extraction and its cache: hits, corruption, resumption, and keys."""

import numpy as np
import pytest
import torch

from fusion_lib.data import extraction as features
from fusion_lib.data.cache import CorruptCacheWarning
from fusion_lib.data.datasets import SplitSizes, load_dataset
from fusion_lib.data.spec import FeatureSpec

SIZE = 64
FP32_CPU = ("auto", "fp32", features.BATCH_SIZE["cpu"])  # weights, precision, batch size


@pytest.fixture
def digits():
    return load_dataset("digits", SplitSizes(60, 20, 40), seed=0)


def test_cold_then_warm_gives_identical_features(digits, tmp_path):
    cold, gflops = features.extract_features(
        "squeezenet1_1", digits, "train", SIZE, progress=False, cache_dir=tmp_path
    )
    assert cold.shape == (60, 512) and cold.dtype == np.float32 and gflops > 0
    assert np.isfinite(cold).all() and cold.std() > 0
    assert (
        list(tmp_path.rglob("*.json"))
        and not list(tmp_path.rglob("*.tmp"))
        and not list(tmp_path.rglob("*.partial"))
    )
    warm, gflops2 = features.extract_features(
        "squeezenet1_1", digits, "train", SIZE, progress=False, cache_dir=tmp_path
    )
    assert np.array_equal(cold, warm) and gflops2 == gflops


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar"])
def test_corrupt_cache_is_detected_and_recomputed(digits, tmp_path, damage):
    ref, _ = features.extract_features(
        "squeezenet1_1", digits, "val", SIZE, progress=False, cache_dir=tmp_path
    )
    npy = next(tmp_path.rglob("*.npy"))
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "flip":
        data = bytearray(npy.read_bytes())
        data[-5] ^= 0xFF
        npy.write_bytes(bytes(data))
    else:
        npy.with_suffix(".json").write_text("{not json")
    with pytest.warns(CorruptCacheWarning):
        again, _ = features.extract_features(
            "squeezenet1_1", digits, "val", SIZE, progress=False, cache_dir=tmp_path
        )
    assert np.allclose(again, ref)


def test_interrupted_run_resumes_from_finished_chunks(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "CHUNK_ROWS", 16)
    real_forward = features.FeatureExtractor.forward
    calls = {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_forward(self, batch)

    monkeypatch.setattr(features.FeatureExtractor, "forward", flaky)
    with pytest.raises(KeyboardInterrupt):
        features.extract_features("squeezenet1_1", digits, "train", SIZE, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("chunk_*.npy"))) == 2
    calls["n"] = 100
    resumed, _ = features.extract_features(
        "squeezenet1_1", digits, "train", SIZE, progress=False, cache_dir=tmp_path
    )
    assert calls["n"] == 100 + 2  # only the two unfinished chunks (rows 32..59) ran
    monkeypatch.setattr(features.FeatureExtractor, "forward", real_forward)
    fresh, _ = features.extract_features(
        "squeezenet1_1", digits, "train", SIZE, progress=False, cache_dir=tmp_path / "fresh"
    )
    assert np.allclose(resumed, fresh, atol=1e-5)
    assert not list(tmp_path.rglob("*.partial"))


def test_cache_key_covers_images_size_and_weights(digits):
    base = features.feature_spec("squeezenet1_1", digits, "train", SIZE, *FP32_CPU)
    other = load_dataset("digits", SplitSizes(60, 20, 40), seed=1)
    assert features.feature_spec("squeezenet1_1", other, "train", SIZE, *FP32_CPU)["images"] != base["images"]
    assert features.feature_spec("squeezenet1_1", digits, "train", 96, *FP32_CPU) != base
    assert (
        features.feature_spec("tf_efficientnet_lite0", digits, "train", SIZE, *FP32_CPU)["weights"]
        != base["weights"]
    )
    assert features.feature_spec("squeezenet1_1", digits, "train", SIZE, "auto", "fp32", 7) != base


def test_extraction_uses_the_device_batch_size_and_keys_it(digits, tmp_path):
    from fusion_lib.data.cache import cache_key

    ex = features.FeatureExtractor(features.load_backbone("squeezenet1_1", input_size=SIZE), "cpu")
    assert ex.batch_size == features.BATCH_SIZE["cpu"]
    feats, _ = features.extract_features(
        "squeezenet1_1", digits, "val", SIZE, progress=False, cache_dir=tmp_path
    )
    cache = features.feature_cache("digits", "squeezenet1_1", tmp_path)

    def cached(batch_size: int) -> np.ndarray | None:
        hit = cache.load(
            cache_key(features.feature_spec("squeezenet1_1", digits, "val", SIZE, "auto", "fp32", batch_size))
        )
        return None if hit is None else hit[0]

    assert np.array_equal(cached(features.BATCH_SIZE["cpu"]), feats) and cached(64) is None


def test_load_feature_set(tmp_path):
    spec = FeatureSpec(
        "digits",
        "squeezenet1_1,tf_efficientnet_lite0",
        SplitSizes(60, 20, 40),
        input_size=SIZE,
        thumbnail_size=16,
    )
    assert spec.backbones == ("squeezenet1_1", "tf_efficientnet_lite0")
    fs = features.load_feature_set(spec, progress=False, cache_dir=tmp_path)
    assert fs.dims() == {"squeezenet1_1": 512, "tf_efficientnet_lite0": 1280}
    assert fs.thumbnails["test"].shape == (40, 3, 16, 16)
    assert set(fs.backbone_gflops) == set(fs.backbones)
    assert len(fs.class_names) == 10 and fs.labels["val"].shape == (20,)


def test_bad_device_and_loader_settings():
    with pytest.raises(ValueError, match="device"):
        features.resolve_device("tpu")
    from fusion_lib.data.backbones import load_backbone

    with pytest.raises(ValueError, match="batch_size"):
        features.FeatureExtractor(load_backbone("squeezenet1_1", input_size=SIZE), batch_size=0)


def test_backbone_loaded_once_for_all_splits_and_not_at_all_when_cached(digits, tmp_path, monkeypatch):
    calls = []
    real = features.load_backbone
    monkeypatch.setattr(features, "load_backbone", lambda *a, **k: calls.append(a) or real(*a, **k))
    feats, _ = features.extract_splits(
        "squeezenet1_1", digits, ["train", "val", "test"], SIZE, progress=False, cache_dir=tmp_path
    )
    assert len(calls) == 1 and {k: len(v) for k, v in feats.items()} == {"train": 60, "val": 20, "test": 40}
    features.extract_splits(
        "squeezenet1_1", digits, ["train", "val", "test"], SIZE, progress=False, cache_dir=tmp_path
    )
    assert len(calls) == 1


def test_batched_preprocessing_matches_one_image_at_a_time():
    from fusion_lib.data.backbones import IMAGENET_MEAN, IMAGENET_STD

    gen = torch.Generator().manual_seed(0)
    same = torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8, generator=gen)
    batch = features.preprocess_batch(same, SIZE, IMAGENET_MEAN, IMAGENET_STD)
    singles = torch.stack([features.preprocess(img, SIZE, IMAGENET_MEAN, IMAGENET_STD) for img in same])
    assert batch.shape == (5, 3, SIZE, SIZE) and torch.equal(batch, singles)
    # mixed sizes (folders of photos) are resized in the loader's collate, with the same numbers
    mixed = [
        torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen) for h, w in [(40, 70), (90, 50)]
    ]
    stacked = features._stack_uint8(mixed, SIZE)
    got = features.preprocess_batch(stacked, SIZE, IMAGENET_MEAN, IMAGENET_STD)
    want = torch.stack([features.preprocess(img, SIZE, IMAGENET_MEAN, IMAGENET_STD) for img in mixed])
    assert torch.equal(got, want)


def test_loader_reads_whole_batches_with_the_images_of_single_reads(digits):
    """In-memory arrays are read one batch per numpy gather (grey kept as one channel); the loader's
    batches hold the same pixels as reading the images one at a time, in the rows' order."""
    from fusion_lib.data.backbones import load_backbone
    from fusion_lib.data.datasets import from_arrays

    gen = np.random.default_rng(0)
    colour = from_arrays(
        "colour",
        gen.integers(0, 256, (40, 3, 12, 12), dtype=np.uint8),
        np.arange(40) % 2,
        ["a", "b"],
        SplitSizes(20, 10, 10),
    )
    ex = features.FeatureExtractor(load_backbone("squeezenet1_1", input_size=SIZE), "cpu", batch_size=4)
    rows = np.array([7, 2, 9, 0, 5, 1, 3])
    for data, channels in ((digits, 1), (colour, 3)):
        read = data.batch("test", rows.tolist())
        assert isinstance(read, torch.Tensor) and read.dtype == torch.uint8 and read.shape[1] == channels
        singles = torch.stack([data.tensor("test", int(i)) for i in rows])
        assert torch.equal(read.expand(-1, 3, -1, -1), singles)
        assert torch.equal(torch.cat(list(ex.loader(data, "test", rows))), read)


def test_preprocessing_matches_the_textbook_transform():
    """Resize (bilinear, on the 8-bit grid), centre-crop, then (x / 255 - mean) / std per channel."""
    from torchvision.transforms.v2 import functional as F

    from fusion_lib.data.backbones import IMAGENET_MEAN, IMAGENET_STD

    gen = torch.Generator().manual_seed(1)
    for shape in [(4, 3, 32, 40), (4, 1, 28, 28), (2, 3, 150, 120)]:  # colour, grey, shrinking
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
        got = features.preprocess_batch(images, SIZE, IMAGENET_MEAN, IMAGENET_STD)
        shrink = SIZE < min(shape[-2:])
        ref = F.resize(images.float(), [SIZE], antialias=shrink)
        ref = F.center_crop(ref, [SIZE, SIZE]).round().clamp(0, 255).expand(-1, 3, -1, -1)
        ref = (ref / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
            1, 3, 1, 1
        )
        assert got.shape == (shape[0], 3, SIZE, SIZE) and got.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(got, ref, atol=1e-5), shape


def test_resize_crop_gives_torchvision_resize_and_center_crop_bit_for_bit():
    """resize_crop calls interpolate itself (torchvision's per-call dispatch showed in the pipeline's
    speed); its pixels must stay torchvision's exactly, or cached features would silently change."""
    from torchvision.transforms.v2 import functional as F

    gen = torch.Generator().manual_seed(2)

    def u8(*shape: int) -> torch.Tensor:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)

    grey_view = u8(1, 33, 47).expand(3, -1, -1)[:1].unsqueeze(0)  # a grey image as the collate resizes it
    cases = [
        u8(4, 3, 32, 40),  # wider than high, enlarged
        u8(4, 1, 28, 28),  # grey, square
        u8(2, 3, 150, 120),  # shrunk (antialiased), higher than wide
        u8(3, 3, SIZE, SIZE),  # already the size: no resize
        u8(2, 1, 81, 200),
        u8(1, 3, 97, 61),  # odd margins for the centre crop
        u8(2, 3, 30, 50).contiguous(memory_format=torch.channels_last),
        u8(1, 3, 30, 50).contiguous(memory_format=torch.channels_last),
        grey_view,
    ]
    for images in cases:
        for size in (SIZE, 80, 29):
            x = images.float()
            want = F.center_crop(
                F.resize(x, [size], antialias=size < min(x.shape[-2:])), [size, size]
            ).round_()
            got = features.resize_crop(images, size)
            assert got.shape == want.shape and torch.equal(got, want), (images.shape, images.stride(), size)


def test_cpu_loader_without_workers_gives_the_dataloader_batches(digits):
    """Without workers (the CPU's default) the loader reads batches in this process; they are the ones a
    DataLoader gives, and no batch spans two groups of rows."""
    from torch.utils.data import DataLoader

    from fusion_lib.data.backbones import load_backbone

    ex = features.FeatureExtractor(load_backbone("squeezenet1_1", input_size=SIZE), "cpu", batch_size=4)
    groups = [np.array([7, 2, 9, 0, 5]), np.array([1, 3])]
    got = list(ex.loader(digits, "test", groups))
    want = DataLoader(
        features._Decoded(digits, "test"),
        batch_sampler=[[7, 2, 9, 0], [5], [1, 3]],
        collate_fn=lambda b: features._stack_uint8(b, SIZE),
    )
    assert [len(b) for b in got] == [4, 1, 2] and len(ex.loader(digits, "test", groups)) == 3
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_channels_last_forward_keeps_the_features(digits):
    from fusion_lib.data.backbones import load_backbone

    bb = load_backbone("squeezenet1_1", input_size=SIZE)
    ex = features.FeatureExtractor(bb, device="cpu", precision="fp32")
    x = ex.prepare(next(iter(ex.loader(digits, "train", np.arange(16)))))
    assert x.is_contiguous(memory_format=torch.channels_last)
    fast = ex.forward(x)
    with torch.inference_mode():  # the same model converted back to the default layout
        plain = bb.model.to(memory_format=torch.contiguous_format)(x.contiguous())
    assert torch.allclose(fast, plain, atol=1e-4)


def test_precision_is_resolved_and_part_of_the_cache_key(digits):
    cpu = torch.device("cpu")
    assert features.resolve_precision("fp32", cpu) == "fp32"
    assert features.resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ValueError, match="CUDA"):
        features.resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision"):
        features.resolve_precision("int8", cpu)
    fp32 = features.feature_spec("squeezenet1_1", digits, "train", SIZE, *FP32_CPU)
    assert (
        features.feature_spec(
            "squeezenet1_1", digits, "train", SIZE, "auto", "bf16", features.BATCH_SIZE["cpu"]
        )
        != fp32
    )
