"""Tiny stand-ins, in torchvision's own on-disk formats, for every dataset of the paper profile, and stand-in
weights for its hub backbones, so that the path users run online is the path the tests run offline."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

PER_CLASS = 6  # images per class and official split: enough for stratified train/val/test subsets
N_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10, "oxford_pets": 37}


def _images(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, 3, size, size): a class-dependent colour plus noise, so that features carry the label."""
    base = rng.integers(0, 256, size=(labels.max() + 1, 3, 1, 1))
    noise = rng.integers(-40, 41, size=(len(labels), 3, size, size))
    return np.clip(base[labels] + noise, 0, 255).astype(np.uint8)


def _labels(n_classes: int) -> np.ndarray:
    return np.repeat(np.arange(n_classes), PER_CLASS)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _cifar10(root: Path, rng: np.random.Generator) -> None:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(base / "batches.meta", {"label_names": names})
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        labels = _labels(10)
        _pickle(
            base / name, {"data": _images(rng, labels, 32).reshape(len(labels), -1), "labels": list(labels)}
        )


def _cifar100(root: Path, rng: np.random.Generator) -> None:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    _pickle(base / "meta", {"fine_label_names": [f"class_{i}" for i in range(100)]})
    for name in ("train", "test"):
        labels = _labels(100)
        _pickle(
            base / name,
            {
                "data": _images(rng, labels, 32).reshape(len(labels), -1),
                "fine_labels": list(labels),
                "coarse_labels": list(labels // 5),
            },
        )


def _stl10(root: Path, rng: np.random.Generator) -> None:
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (base / "class_names.txt").write_text("\n".join(names) + "\n")
    for split in ("train", "test"):
        labels = _labels(10)
        # STL-10 stores each 96x96 plane column-major and labels as 1..10
        _images(rng, labels, 96).transpose(0, 1, 3, 2).tofile(base / f"{split}_X.bin")
        (labels + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")


def _oxford_pets(root: Path, rng: np.random.Generator) -> None:
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    breeds = [f"breed{i:02d}" for i in range(37)]
    for split in ("trainval", "test"):
        labels = _labels(37)
        lines = []
        for j, (label, img) in enumerate(zip(labels, _images(rng, labels, 48))):
            image_id = f"{breeds[label]}_{split}{j}"
            # photos come in many sizes: crop some so the loader's mixed-size batching is exercised
            Image.fromarray(img.transpose(1, 2, 0)[: 48 - (j % 3) * 8]).save(
                base / "images" / f"{image_id}.jpg"
            )
            lines.append(f"{image_id} {label + 1} {1 + label % 2} {label + 1}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")


def build_paper_datasets(root: Path, seed: int = 0) -> Path:
    """Write tiny CIFAR-10, CIFAR-100, STL-10 and Oxford-IIIT Pet folders under ``root``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for build in (_cifar10, _cifar100, _stl10, _oxford_pets):
        build(Path(root), rng)
    return Path(root)


def standin_weights(folder: Path, names) -> dict[str, str]:
    """Seeded random weights for each hub backbone, saved as state dicts; returns the environment
    (``FUSION_WEIGHTS_<NAME>``) that makes ``load_backbone`` read them instead of the hub."""
    import timm
    import torch

    env = {}
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.manual_seed(0)
        path = Path(folder) / f"{name}.pt"
        torch.save(timm.create_model(name, pretrained=False).state_dict(), path)
        env["FUSION_WEIGHTS_" + name.upper().replace("-", "_").replace(".", "_")] = str(path)
    return env
