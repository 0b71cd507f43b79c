"""The benchmarks run end to end, at tiny sizes, and print the ratios they promise."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from fusion_lib.bench import extraction as bench


def test_median_rates_interleaves_runs_and_takes_the_median():
    order = []
    rates = bench.median_rates(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, n=10, repeats=3
    )
    assert order == ["a", "b"] * 3 and set(rates) == {"a", "b"} and all(r > 0 for r in rates.values())


class _FakeExtractor:
    """Records what the pipeline benchmark asks of an extractor."""

    def __init__(self, n_batches: int) -> None:
        self.n_batches, self.calls, self.loaders = n_batches, [], 0

    def loader(self, data, split, rows):
        self.loaders += 1
        return iter([f"u8-L{self.loaders}-{i}" for i in range(self.n_batches)])

    def prepare(self, images):
        return images.replace("u8", "ready")

    def forward(self, x):
        self.calls.append(x)


def test_pipeline_rates_alternate_raw_and_pipeline_batch_by_batch():
    ex = _FakeExtractor(3)
    rates = bench.pipeline_rates(ex, None, "test", np.arange(30), repeats=2)
    assert ex.loaders == 1 + 2  # the inputs prepared in advance, then one loader per repeat
    # after the warm-up, each batch runs raw (inputs from loader 1) and pipeline (from the repeat's own
    # loader) in turns, the pipeline first on even batches
    assert ex.calls[1:7] == [
        "ready-L2-0",
        "ready-L1-0",
        "ready-L1-1",
        "ready-L2-1",
        "ready-L2-2",
        "ready-L1-2",
    ]
    assert set(rates) == {"raw", "pipeline"} and all(r > 0 for r in rates.values())


def test_probe_accuracy_separates_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 5)) + 4 * np.eye(3, 5)[y]
    assert bench.probe_accuracy(x[::2], y[::2], x[1::2], y[1::2]) > 95
    noise = rng.normal(size=(120, 5))
    assert bench.probe_accuracy(noise[::2], y[::2], noise[1::2], y[1::2]) < 70


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_says_no_cuda_and_fails():
    run = subprocess.run([sys.executable, "-m", "fusion_lib.bench", "gpu"], capture_output=True, text=True)
    assert run.returncode == 1 and "no CUDA device is present" in run.stdout


def test_feature_benchmark_prints_ratios():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion_lib.bench",
            "features",
            "--backbones",
            "squeezenet1_1",
            "--images",
            "64",
            "--repeats",
            "1",
            "--sweep",
            "64,96",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line for line in out.splitlines() if line.startswith("squeezenet1_1"))
    raw, pipe, ratio = (float(x) for x in row.split()[1:4])
    assert raw > 0 and pipe > 0 and ratio == pytest.approx(pipe / raw, abs=0.01)
    assert re.search(r"\d+x$", row)  # warm-over-cold speed-up
    assert "96px" in out


def test_fusion_benchmark_prints_each_methods_time_shared_fits_and_arithmetic(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion_lib.bench",
            "fusion",
            "--dataset",
            "digits",
            "--train",
            "300",
            "--val",
            "100",
            "--test",
            "200",
            "--methods",
            "single_squeezenet1_1,best_single,prob_avg,moe_thumbnail_oof,moe_thumbnail",
            "--backbones",
            "squeezenet1_1,tf_efficientnet_lite0",
            "--epochs",
            "3",
            "--out",
            str(tmp_path / "methods.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"matrix rate: \d+ GFLOP/s", out)
    assert re.search(r"one seed, 5 methods: [\d.]+s", out)
    table = pd.read_csv(tmp_path / "methods.csv", index_col="method")
    lists = ["makes (for later methods too)", "shares (made earlier)"]
    table[lists] = table[lists].astype(object).fillna("")
    assert list(table.index) == [
        "single:squeezenet1_1",
        "best_single",
        "prob_avg",
        "moe_thumbnail_oof",
        "moe_thumbnail",
    ]
    assert table.loc["single:squeezenet1_1", "fits made"] == 2  # both probes, made once
    assert table.loc["best_single", "fits made"] == 0
    assert "probes" in table.loc["best_single", "shares (made earlier)"]
    oof = table.loc["moe_thumbnail_oof"]
    assert oof["GFLOP"] > 0 and oof["time / arithmetic"] >= 1  # no fit beats its own arithmetic
    # the recipe tries three thumbnail sizes: the 32 px gate is the one moe_thumbnail_oof made
    assert "32 px" in table.loc["moe_thumbnail", "shares (made earlier)"]
    assert table.loc["moe_thumbnail", "fits made"] == 2
    assert "scikit-learn LogisticRegression" in out


def test_fusion_benchmark_beside_another_checkout_times_the_common_methods_side_by_side(tmp_path):
    """Against a copy of this very code: both sides run the same methods and print a ratio near 1."""
    import shutil
    from pathlib import Path

    import fusion_lib

    other = tmp_path / "other"
    shutil.copytree(
        Path(fusion_lib.__file__).parent, other / "fusion_lib", ignore=shutil.ignore_patterns("__pycache__")
    )
    args = [sys.executable, "-m", "fusion_lib.bench", "fusion", "--dataset", "digits", "--train", "300"]
    args += [
        "--val",
        "100",
        "--test",
        "200",
        "--backbones",
        "squeezenet1_1,tf_efficientnet_lite0",
        "--epochs",
        "2",
    ]
    args += ["--methods", "best_single,prob_avg", "--out", str(tmp_path / "beside.csv")]
    out = subprocess.run(args + ["--beside", str(other)], capture_output=True, text=True, check=True).stdout
    ratio = float(
        re.search(r"this / other: ([\d.]+) \(2 methods, one seed each, side by side\)", out).group(1)
    )
    assert 0.2 < ratio < 5  # the same code: the same work, whatever the machine's load
    table = pd.read_csv(tmp_path / "beside.csv", index_col="code")
    assert list(table.index) == ["this", "other"] and (table["seconds"] > 0).all()
    assert table.loc["other", "checkout"] == str(other.resolve())
    assert table["registered here only"].isna().all()  # the same registry on both sides
    missing = subprocess.run(args + ["--beside", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode != 0 and "no fusion_lib package there" in missing.stderr
