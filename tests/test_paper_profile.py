"""The paper profile offline: its datasets from tiny torchvision-format fixtures under a data root, its hub
backbones from stand-in weights, and all six notebooks under papermill with the profile at tiny sizes."""

from pathlib import Path

import numpy as np
import pytest
from paper_fixtures import N_CLASSES, build_paper_datasets, standin_weights

from fusion_lib.book.profiles import PAPER_BACKBONES, PAPER_DATASETS, get_profile
from fusion_lib.data.datasets import data_root, load_dataset

# the smallest stratified subsets: at least one image per class in every split
TINY = {
    "cifar10": (20, 10, 10),
    "cifar100": (100, 100, 100),
    "stl10": (20, 10, 10),
    "oxford_pets": (37, 37, 37),
}


@pytest.fixture(scope="module")
def paper_root(tmp_path_factory):
    return build_paper_datasets(tmp_path_factory.mktemp("paper-data"))


def test_data_root_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSION_DATA_ROOT", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env" and data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("FUSION_DATA_ROOT")
    assert data_root().name == "datasets"


def test_paper_profile_downloads_and_takes_a_data_root():
    assert get_profile("paper").download and not get_profile("book").download
    assert get_profile("paper", data_root="/data").data_root == "/data"
    with pytest.raises(ValueError, match="download"):
        get_profile("paper", download="yes")


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_every_paper_dataset_loads_from_its_torchvision_folder(paper_root, monkeypatch, name):
    monkeypatch.setenv("FUSION_DATA_ROOT", str(paper_root))
    train, val, test = TINY[name]
    from fusion_lib.data.datasets import SplitSizes

    # download=True as the paper profile asks: the files are present, so nothing is fetched
    d = load_dataset(name, SplitSizes(train, val, test), download=True)
    assert len(d.class_names) == N_CLASSES[name]
    assert {s: len(v) for s, v in d.labels.items()} == {"train": train, "val": val, "test": test}
    assert set(np.unique(d.labels["train"])) == set(range(N_CLASSES[name]))  # stratified
    img = d.tensor("test", 0)
    assert str(img.dtype) == "torch.uint8" and img.shape[0] == 3


def test_missing_paper_dataset_says_how_to_get_it(tmp_path):
    from fusion_lib.data.datasets import DatasetError, SplitSizes

    with pytest.raises(DatasetError, match="download=True"):
        load_dataset("cifar10", SplitSizes(20, 10, 10), root=tmp_path)


@pytest.mark.paper
def test_every_notebook_runs_with_the_paper_profile_offline(paper_root, tmp_path, monkeypatch):
    from fusion_lib.book.tooling.build import run_notebooks
    from fusion_lib.data.assets import cache_root

    # a fresh cache that still holds the offline assets (weights of the offline backbones, GloVe)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "assets").symlink_to(cache_root() / "assets", target_is_directory=True)
    for key, value in standin_weights(tmp_path / "weights", PAPER_BACKBONES).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUSION_CACHE", str(cache))
    monkeypatch.setenv("FUSION_DATA_ROOT", str(paper_root))
    overrides = {
        "dataset_sizes": {k: list(v) for k, v in TINY.items()},
        "seeds": 1,
        "epochs": 2,
        "zero_shot_splits": 4,  # each split solves a (D, D) system: 4,096-d VGG-16 features make it slow
        "input_size": 75,
        "device": "cpu",
    }  # 75 px: the smallest Inception-v3 and Xception take
    notebooks = sorted(Path(__file__).parents[1].joinpath("notebooks").glob("0*.ipynb"))
    runs = run_notebooks(
        notebooks, tmp_path / "out", {"profile": "paper", "overrides": overrides}, progress=False
    )
    assert len(runs) == 6
    assert [r.error for r in runs] == [None] * 6
