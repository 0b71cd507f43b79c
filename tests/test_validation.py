"""Bad input gets a clear message before any work: the CLI, ExperimentConfig, load_feature_set, profiles.

``CASES`` is also the source of the "what bad input gets" table in book/reproducibility.md
(``python tests/test_validation.py`` prints it from the real messages).
"""

import contextlib
import io
import sys
from pathlib import Path

import pytest

from fusion_lib.book.profiles import get_profile
from fusion_lib.data import backbones
from fusion_lib.data import extraction as features
from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.extraction import load_feature_set
from fusion_lib.data.spec import FeatureSpec
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies import cli as E
from fusion_lib.studies.config import ExperimentConfig

# a file, by absolute path: some tests run notebooks that change the working directory
README = Path(__file__).resolve().parents[1] / "README.md"


def cli(*args):
    def run():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = E.main(["run", *args])
        if code != 2:
            raise AssertionError(f"exit code {code}, expected 2")
        raise ValueError(err.getvalue().strip().removeprefix("error: "))

    return run


def config(**kw):
    return lambda: ExperimentConfig(**kw)


def train(**kw):
    return lambda: TrainConfig(**kw)


def spec(dataset="digits", **kw):
    return lambda: FeatureSpec(dataset, **{"sizes": SplitSizes(100, 50, 50), **kw})


def feats(dataset="digits", **kw):
    return lambda: load_feature_set(FeatureSpec(dataset, sizes=SplitSizes(100, 50, 50)), progress=False, **kw)


def profile(name="ci", **kw):
    return lambda: get_profile(name, **kw)


# (what, input as a user writes it, the call, a pattern the message must match)
CASES = [
    (
        "input size 0",
        "run --input-size 0",
        cli("--input-size", "0"),
        r"input_size .* 75 to 1024, got 0.*native",
    ),
    ("negative input size", "run --input-size -5", cli("--input-size", "-5"), r"got -5"),
    (
        "input size too small for a backbone",
        "FeatureSpec(..., backbones='inception_v3', input_size=64)",
        spec(backbones="inception_v3", input_size=64),
        r"too small for inception_v3: it needs at least 75",
    ),
    ("input size far too large", "FeatureSpec(..., input_size=5000)", spec(input_size=5000), r"got 5000"),
    ("input size not a number", "FeatureSpec(..., input_size='96')", spec(input_size="96"), r"got '96'"),
    (
        "thumbnail not a multiple of 8",
        "run --thumbnail-size 12",
        cli("--thumbnail-size", "12"),
        r"multiple of 8",
    ),
    (
        "thumbnail too small to store",
        "FeatureSpec(..., thumbnail_size=2)",
        spec(thumbnail_size=2),
        r"thumbnail_size must be an integer from 4 to 128, got 2",
    ),
    (
        "thumbnail too small",
        "get_profile('ci', thumbnail_size=4)",
        profile(thumbnail_size=4),
        r"multiple of 8, at least 8",
    ),
    ("no seeds", "ExperimentConfig(seeds=[])", config(seeds=[]), r"seeds must be a count n >= 1"),
    ("repeated seeds", "ExperimentConfig(seeds=[0, 0])", config(seeds=[0, 0]), r"seeds must be distinct"),
    (
        "negative seed",
        "ExperimentConfig(seeds=[-1])",
        config(seeds=[-1]),
        r"each seed must be an integer >= 0",
    ),
    (
        "zero seeds in a profile",
        "get_profile('book', seeds=0)",
        profile("book", seeds=0),
        r"seeds \(a count\)",
    ),
    (
        "split size 0",
        "run --dataset digits --train 0",
        cli("--dataset", "digits", "--train", "0"),
        r"split size train=0 must be a positive integer",
    ),
    (
        "more images than the dataset has",
        "run --dataset digits --train 1500 --val 500 --test 100",
        cli("--dataset", "digits", "--train", "1500", "--val", "500", "--test", "100"),
        r"digits: train \+ val \+ test = 2100 images, but all of it has only 1797",
    ),
    (
        "more test images than the official test split",
        "FeatureSpec('fashion_mnist', sizes=SplitSizes(1500, 500, 20000))",
        spec("fashion_mnist", sizes=SplitSizes(1500, 500, 20000)),
        r"official test split has only 10000",
    ),
    (
        "fewer images than classes",
        "FeatureSpec('cifar_cats_dogs', sizes=SplitSizes(1000, 1, 500))",
        spec("cifar_cats_dogs", sizes=SplitSizes(1000, 1, 500)),
        r"val=1 is smaller than its 2 classes",
    ),
    (
        "profile sizes beyond the dataset",
        "get_profile('ci', sizes=(5000, 100, 100))",
        profile(sizes=(5000, 100, 100)),
        r"digits: train \+ val \+ test = 5200",
    ),
    (
        "unknown device",
        "run --device gpu",
        cli("--device", "gpu"),
        r"device must be 'auto', 'cpu', .*got 'gpu'",
    ),
    (
        "a CUDA device this machine lacks",
        "get_profile('ci', device='cuda:99')",
        profile(device="cuda:99"),
        r"cuda:99",
    ),
    (
        "device of the wrong type",
        "load_feature_set(spec, device=0)",
        feats(device=0),
        r"device must be 'auto'",
    ),
    (
        "unknown method",
        "run --methods prob_avg,nope",
        cli("--methods", "prob_avg,nope"),
        r"unknown method 'nope'.*valid methods",
    ),
    (
        "single-backbone method of a backbone not used",
        "run --methods single_resnet50",
        cli("--methods", "single_resnet50"),
        r"unknown method 'single_resnet50'",
    ),
    (
        "unknown backbone",
        "run --backbones resnet9000",
        cli("--backbones", "resnet9000"),
        r"unknown backbone 'resnet9000'.*offline backbones",
    ),
    ("unknown compare baseline", "run --compare nope", cli("--compare", "nope"), r"unknown method 'nope'"),
    (
        "compare with several baselines",
        "run --compare prob_avg,oracle",
        cli("--compare", "prob_avg,oracle"),
        r"--compare takes one method name",
    ),
    (
        "unknown dataset",
        "FeatureSpec('imagenet22k')",
        spec("imagenet22k"),
        r"unknown dataset 'imagenet22k'; valid datasets: fashion_mnist",
    ),
    (
        "output folder under a file",
        "run --out README.md/run",
        cli("--out", f"{README}/run"),
        r"output folder .* cannot be a folder: \S*README.md is a file",
    ),
    ("output folder not writable", "run --out /proc/run", cli("--out", "/proc/run"), r"is not writable"),
    (
        "cache folder not writable",
        "FUSION_CACHE=/proc/fusion",
        "FUSION_CACHE",
        r"FUSION_CACHE \(the cache folder\) '/proc/fusion/features' is not writable",
    ),
    (
        "cache_dir under a file",
        "load_feature_set(spec, cache_dir='README.md/c')",
        feats(cache_dir=f"{README}/c"),
        r"cache_dir '\S*README.md/c' cannot be a folder",
    ),
    ("non-positive learning rate", "run --lr -1", cli("--lr", "-1"), r"lr must be > 0"),
    (
        "learning rate not finite",
        "TrainConfig(lr=float('nan'))",
        train(lr=float("nan")),
        r"lr must be a finite number",
    ),
    ("zero epochs", "run --epochs 0", cli("--epochs", "0"), r"epochs must be an integer >= 1, got 0"),
    ("top-k level 0", "ExperimentConfig(top_k=[0])", config(top_k=[0]), r"each top_k level must be"),
    ("unknown profile", "get_profile('nope')", profile("nope"), r"unknown profile 'nope'; valid profiles"),
    (
        "unknown profile key",
        "get_profile('ci', epoch=3)",
        profile(epoch=3),
        r"unknown profile setting\(s\) 'epoch'; valid settings",
    ),
    ("input size 0 in a profile", "get_profile('ci', input_size=0)", profile(input_size=0), r"got 0"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Any image, weight or feature loaded means a check came too late."""

    def work(*a, **k):
        raise AssertionError("work started before the parameters were checked")

    for target in (features, backbones):
        monkeypatch.setattr(target, "load_backbone", work)
    monkeypatch.setattr(features, "load_dataset", work)
    monkeypatch.setattr(features, "extract_splits", work)


def message(call, monkeypatch) -> str:
    if call == "FUSION_CACHE":
        monkeypatch.setenv("FUSION_CACHE", "/proc/fusion")
        call = feats()
    with pytest.raises(ValueError) as err:
        call()
    return str(err.value)


@pytest.mark.parametrize("what, shown, call, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_up_front_with_a_clear_message(
    what, shown, call, pattern, no_work, monkeypatch
):
    assert len(CASES) >= 25
    msg = message(call, monkeypatch)
    assert "Traceback" not in msg
    import re

    assert re.search(pattern, msg, re.S), msg


def test_native_is_a_name_and_good_values_pass():
    assert FeatureSpec("digits", input_size="native").input_size is None
    assert get_profile("ci", thumbnail_size=8, input_size=None).thumbnail_size == 8
    assert FeatureSpec("cifar_cats_dogs", sizes=SplitSizes(1200, 300, 500)).sizes.test == 500


def test_a_spec_is_resolved_once_and_defaults_to_the_books_data():
    book = get_profile("book")
    spec = FeatureSpec("fashion_mnist")
    assert spec == book.feature_spec("fashion_mnist")  # the command line reads the book's cache
    assert FeatureSpec("digits", "offline").backbones == book.backbones
    assert spec.replace(input_size=96).input_size == 96 and spec.input_size == 80
    with pytest.raises(ValueError, match="takes a FeatureSpec"):
        load_feature_set("digits")


if __name__ == "__main__":  # the reproducibility chapter's table, from the real messages
    mp = pytest.MonkeyPatch()
    print("| bad input | as given | message |\n|---|---|---|")
    for what, shown, call, _ in CASES:
        msg = message(call, mp).replace("\n", " ").replace("|", "\\|")
        msg = msg if len(msg) < 200 else msg[:170] + " … (list shortened here)"
        print(f"| {what} | `{shown}` | {msg} |")
    mp.undo()
    sys.exit(0)
