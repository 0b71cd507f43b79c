"""Experiment runner: method registry, tidy results, determinism, files, summary, CLI, end to end."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from configs import experiment

from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.training import TrainConfig, fit_module
from fusion_lib.studies import cli
from fusion_lib.studies import runner as E
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.registry import method_names, resolve_methods
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.seed_run import SeedRun

C, D, T = 3, 8, 8
NAMES = ["cat", "dog", "fish"]


def planted(seed: int = 0, sizes=(240, 120, 120)) -> tuple[FeatureSet, dict[str, np.ndarray]]:
    """Two backbones, each seeing the class only on its own half of the images (told apart by brightness)."""
    rng = np.random.default_rng(seed)
    means = {b: 3.0 * rng.normal(size=(C, D)) for b in ("a", "b")}
    feats, labels, thumbs = {}, {}, {}
    for split, n in zip(("train", "val", "test"), sizes):
        y, c = rng.integers(0, C, n), rng.integers(0, 2, n)
        feats[split] = {
            b: (np.where(c[:, None] == k, m[y], 0.0) + rng.normal(size=(n, D))).astype(np.float32)
            for k, (b, m) in enumerate(means.items())
        }
        thumbs[split] = np.broadcast_to(np.where(c == 0, 0.2, 0.8)[:, None, None, None], (n, 3, T, T)).astype(
            np.float32
        )
        labels[split] = y.astype(np.int64)
    fs = FeatureSet("planted", ["a", "b"], list(NAMES), feats, labels, thumbs, {"a": 0.1, "b": 0.3})
    vectors = {w: v for w, v in zip(NAMES, rng.normal(size=(C, 10)))}
    return fs, vectors


def small_config(**kw) -> ExperimentConfig:
    return experiment(**{"seeds": [0, 1], "epochs": 15, **kw})


@pytest.fixture(scope="module")
def planted_run():
    fs, vectors = planted()
    result = run_experiment(small_config(), feature_set=fs, word_vectors=vectors, progress=False)
    return fs, vectors, result.metrics, result


def test_all_expands_to_every_registered_method():
    names = resolve_methods("all", ["a", "b"])
    assert names == ["single:a", "single:b"] + method_names()
    assert {
        "best_single",
        "concat",
        "prob_avg",
        "prob_avg_cal",
        "stacking",
        "stacking_val",
        "oracle",
        "moe_uniform",
        "moe_static",
        "moe_feature",
        "moe_feature_joint",
        "moe_thumbnail",
        "moe_thumbnail_joint",
        "moe_thumbnail_oof",
        "moe_thumbnail_noisy",
        "moe_confidence",
        "moe_thumbnail_conf",
        "moe_thumbnail_label",
        "blend_label",
        "label_space",
    } <= set(names)
    assert resolve_methods("single_a, prob_avg,prob_avg", ["a", "b"]) == ["single:a", "prob_avg"]
    assert resolve_methods(["oracle", "all"], ["a"])[0] == "oracle"


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown method 'mixture'.*single:a.*moe_thumbnail"):
        resolve_methods("mixture", ["a", "b"])
    with pytest.raises(ValueError, match="unknown method 'single:c'"):
        resolve_methods("single:c", ["a", "b"])
    fs, _ = planted()
    with pytest.raises(ValueError, match="valid methods"):
        run_experiment(small_config(methods="prob_avg,nope"), feature_set=fs, progress=False)


def test_results_are_tidy_and_complete(planted_run):
    fs, _, df, _ = planted_run
    assert list(df.columns) == ["dataset", "method", "seed", "metric", "value"]
    assert df["value"].dtype == np.float64 and set(df["seed"]) == {0, 1} and set(df["dataset"]) == {"planted"}
    methods = resolve_methods("all", fs.backbones)
    assert list(dict.fromkeys(df["method"])) == methods
    per = df.pivot_table(index=["method", "seed"], columns="metric", values="value")
    assert per["accuracy"].notna().all() and per["gflops_per_image"].notna().all()
    assert per.loc["oracle", "ece"].isna().all()  # the oracle has no probabilities to calibrate
    assert per.drop(index="oracle", level=0)["ece"].notna().all()
    # oracle bounds every single backbone; gflops add up; top-k gating runs fewer backbones
    mean = per.groupby(level=0).mean()
    assert mean.loc["oracle", "accuracy"] >= mean.loc[["single:a", "single:b"], "accuracy"].max()
    assert mean.loc["prob_avg", "gflops_per_image"] == pytest.approx(0.4)
    assert mean.loc["moe_thumbnail", "gflops_per_image_top1"] < mean.loc["moe_thumbnail", "gflops_per_image"]
    # the planted problem needs per-image routing: the thumbnail gate beats either single backbone
    assert mean.loc["moe_thumbnail", "accuracy"] > mean.loc[["single:a", "single:b"], "accuracy"].max() + 0.1
    assert 0.0 <= mean.loc["blend_label", "blend_weight"] <= 1.0
    assert mean.loc["moe_thumbnail_noisy", "active_experts"] == 2


def test_paired_comparison_of_two_methods(planted_run):
    fs, _, df, result = planted_run
    d = result.compare("moe_thumbnail", "prob_avg")
    assert d.n_seeds == 2 and d.n_images == 2 * len(fs.labels["test"])
    acc = df[df["metric"] == "accuracy"].groupby("method")["value"].mean()
    assert d.diff == pytest.approx(100 * (acc["moe_thumbnail"] - acc["prob_avg"]))
    assert d.low > 0  # the planted routing gain is large enough to be told apart
    table = result.comparisons("prob_avg")
    assert (
        "prob_avg" not in set(table["method"])
        and table["vs baseline (points, 95% CI)"].str.contains(r"\[").all()
    )
    with pytest.raises(ValueError, match="was not run"):
        result.compare("nope", "prob_avg")


def test_each_seed_trains_on_its_own_split_of_the_pool(planted_run):
    fs, _, _, result = planted_run
    assert not np.array_equal(result.labels[0]["val"], result.labels[1]["val"])
    np.testing.assert_array_equal(result.labels[0]["test"], fs.labels["test"])  # planted: a fixed test split


def test_same_config_and_seeds_give_identical_numbers(planted_run):
    fs, vectors, df, _ = planted_run
    again = run_experiment(small_config(), feature_set=fs, word_vectors=vectors, progress=False).metrics
    pd.testing.assert_frame_equal(df, again)


def test_results_and_config_are_written(tmp_path):
    fs, _ = planted()
    cfg = small_config(seeds=[0], methods="prob_avg,oracle", out_dir=str(tmp_path / "run"))
    df = run_experiment(cfg, feature_set=fs, progress=False).metrics
    assert ExperimentConfig.from_json(tmp_path / "run" / "config.json") == cfg
    pd.testing.assert_frame_equal(E.load_results(tmp_path / "run"), df)
    records = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(records) == len(df) and set(records[0]) == set(E.RESULT_COLUMNS)


def test_backbone_subset_of_a_given_feature_set():
    fs, _ = planted()
    df = run_experiment(
        small_config(seeds=[0], methods="all"),
        feature_set=fs.subset_backbones(["b"]),
        word_vectors=planted()[1],
        progress=False,
    ).metrics
    assert "single:a" not in set(df["method"]) and "single:b" in set(df["method"])


def test_cli_runs_and_prints_a_table(tmp_path, monkeypatch, capsys):
    planted_fs, _ = planted()
    real = {"a": "squeezenet1_1", "b": "tf_efficientnet_lite0"}  # the CLI checks names against the registry
    fs = FeatureSet(
        "digits",
        list(real.values()),
        planted_fs.class_names,
        {s: {real[b]: x for b, x in f.items()} for s, f in planted_fs.features.items()},
        planted_fs.labels,
        planted_fs.thumbnails,
        {real[b]: g for b, g in planted_fs.backbone_gflops.items()},
    )
    seen = {}

    def fake_load(config):
        seen["config"] = config
        return fs

    monkeypatch.setattr(E, "load_features", fake_load)
    out = tmp_path / "cli"
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--backbones",
            "squeezenet1_1,tf_efficientnet_lite0",
            "--methods",
            "moe_thumbnail,moe_thumbnail_joint",
            "--seeds",
            "2",
            "--epochs",
            "5",
            "--thumbnail-size",
            "8",
            "--train",
            "240",
            "--compare",
            "prob_avg",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    cfg = seen["config"]
    assert cfg.seeds == [0, 1] and cfg.train.epochs == 5 and cfg.data.dataset == "digits"
    assert cfg.data.sizes == SplitSizes(240, 297, 500)  # the sizes not given are the book's for digits
    assert cfg.methods[0] == "prob_avg"  # the baseline is run even when not listed
    printed = capsys.readouterr().out
    assert "vs prob_avg (points, 95% CI)" in printed and "verdict (Holm)" in printed
    # the header says what the intervals cover, and how the words are read
    assert "hierarchical bootstrap over seeds and test images" in printed
    assert "the 2 comparisons (4 p-values) under one Holm correction" in printed and "±0.5 points" in printed
    for line in printed.splitlines():
        if line.startswith("moe_thumbnail"):
            assert re.search(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", line), line
            assert re.search(r"(better|worse|equivalent|inconclusive)$", line.rstrip()), line
    assert (out / "results.csv").exists() and (out / "config.json").exists()


def test_moe_options_reach_every_mixture_and_are_validated():
    fs, _ = planted()
    run = SeedRun(fs, 0, small_config(moe={"regularizer": "entropy", "reg_weight": -0.1}), None)
    assert run.moe("static").config.regularizer == "entropy" and run.moe("static").config.reg_weight == -0.1
    with pytest.raises(ValueError, match="unknown moe options.*valid options"):
        small_config(moe={"gates": "thumbnail"})


def test_mismatched_tensor_lengths_are_an_error():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="share their first dimension"):
        fit_module(
            model, lambda m, b: m(b[0]).sum(), (torch.zeros(5, 2), torch.zeros(4)), None, TrainConfig()
        )


def test_end_to_end_on_real_cached_digits_features():
    from fusion_lib.data.datasets import SplitSizes
    from fusion_lib.data.extraction import load_feature_set
    from fusion_lib.data.spec import FeatureSpec
    from fusion_lib.fusion.gates import ThumbnailGate

    spec = FeatureSpec("digits", sizes=SplitSizes(300, 100, 200))
    fs = load_feature_set(spec, progress=False)
    df = run_experiment(ExperimentConfig(data=spec, seeds=[0]), feature_set=fs, progress=False).metrics
    assert list(df.columns) == E.RESULT_COLUMNS
    acc = df[df["metric"] == "accuracy"].set_index("method")["value"]
    assert list(acc.index) == resolve_methods("all", fs.backbones)
    assert (acc > 0.6).all(), acc[acc <= 0.6]  # chance is 0.1 on ten digits
    # the paper's premise: the thumbnail gate costs under 1% of the cheapest backbone
    gate = ThumbnailGate(len(fs.backbones), fs.thumbnail_size)
    assert gate.flops() / 1e9 < 0.01 * min(fs.backbone_gflops.values())
