"""The ablation runner, paired comparisons and the stratified train subsample, on tiny synthetic data."""

import numpy as np
import pandas as pd
import pytest

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.moe import MoE, MoEConfig
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.ablations import (
    RESULT_COLUMNS,
    Variant,
    paired_deltas,
    run_ablation,
    subsample_train,
    summarize,
    summary_table,
    verdicts,
)

C, D, T = 3, 6, 16
COST = {"a": 1.0, "b": 2.0, "c": 0.5}
TRAIN = TrainConfig(epochs=3, patience=2)


def tiny(sizes=(90, 30, 30), seed: int = 0, fixed_test: bool = True) -> FeatureSet:
    """Class-separable features; the first feature column holds the row number, so alignment is checkable."""
    rng = np.random.default_rng(seed)
    feats, labels, thumbs, indices = {}, {}, {}, {}
    for split, n in zip(("train", "val", "test"), sizes):
        y = np.arange(n) % C if split == "train" else rng.integers(0, C, n)
        rng.shuffle(y)
        feats[split] = {}
        for b in COST:
            x = rng.normal(size=(n, D)) + 2.0 * np.eye(C, D)[y]
            x[:, 0] = np.arange(n)
            feats[split][b] = x.astype(np.float32)
        ramp = (np.arange(n) / n)[:, None, None, None]
        thumbs[split] = np.broadcast_to(ramp, (n, 3, T, T)).astype(np.float32)
        labels[split], indices[split] = y.astype(np.int64), 1000 + np.arange(n)
    return FeatureSet(
        "tiny",
        list(COST),
        [f"c{i}" for i in range(C)],
        feats,
        labels,
        thumbs,
        dict(COST),
        indices,
        fixed_test=fixed_test,
    )


@pytest.fixture(scope="module")
def fs():
    return tiny()


# ---------------------------------------------------------------- subsample_train


def test_subsample_is_stratified_aligned_and_leaves_other_splits(fs):
    sub = subsample_train(fs, 0.2, seed=3)
    assert np.bincount(sub.labels["train"], minlength=C).tolist() == [6, 6, 6]  # 30 per class -> 6 each
    rows = sub.features["train"]["a"][:, 0].astype(int)
    assert np.all(np.diff(rows) > 0), "rows keep their original order"
    for b in COST:
        np.testing.assert_array_equal(sub.features["train"][b][:, 0].astype(int), rows)
    np.testing.assert_array_equal(sub.labels["train"], fs.labels["train"][rows])
    np.testing.assert_array_equal(sub.thumbnails["train"], fs.thumbnails["train"][rows])
    np.testing.assert_array_equal(sub.indices["train"], fs.indices["train"][rows])
    for split in ("val", "test"):
        assert sub.labels[split] is fs.labels[split] and sub.thumbnails[split] is fs.thumbnails[split]
        assert sub.features[split]["b"] is fs.features[split]["b"]
    assert sub.backbone_gflops == fs.backbone_gflops and sub.class_names == fs.class_names
    assert subsample_train(tiny(fixed_test=False), 0.5).fixed_test is False


def test_subsample_is_seeded_and_keeps_every_class(fs):
    rows = lambda s: s.features["train"]["a"][:, 0].tolist()  # noqa: E731
    assert rows(subsample_train(fs, 0.5, seed=1)) == rows(subsample_train(fs, 0.5, seed=1))
    assert rows(subsample_train(fs, 0.5, seed=1)) != rows(subsample_train(fs, 0.5, seed=2))
    assert np.bincount(subsample_train(fs, 0.001).labels["train"]).tolist() == [1, 1, 1]
    assert subsample_train(fs, 1.0) is fs


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_subsample_rejects_bad_fractions(fs, fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        subsample_train(fs, fraction)


# ---------------------------------------------------------------- run_ablation


@pytest.fixture(scope="module")
def results(fs):
    cfg = MoEConfig(gate="thumbnail")
    variants = {
        "all": (cfg, fs),
        "all, top-1": Variant(cfg, fs, top_k=1),
        "no c": (cfg, fs.subset_backbones(["a", "b"])),
        "wide gate": (MoEConfig(gate="thumbnail", gate_kwargs={"channels": (32, 64)}), fs),
        "8 px": (MoEConfig(gate="thumbnail", thumbnail_size=T // 2), fs),
        "half data": Variant(cfg, fs, train_fraction=0.5),
    }
    return run_ablation("demo", variants, seeds=[0, 1], train=TRAIN, reference="all", progress=False)


def test_run_ablation_rows_and_costs(results):
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 6 * 2 and set(results["seed"]) == {0, 1}
    by = results.groupby("setting")
    assert by["reference"].all().to_dict() == {
        "8 px": False,
        "all": True,
        "all, top-1": False,
        "no c": False,
        "wide gate": False,
        "half data": False,
    }
    assert results["accuracy"].between(0, 1).all() and results["val_accuracy"].between(0, 1).all()
    n_exp = by["n_experts"].first()
    assert (n_exp["all"], n_exp["no c"]) == (3, 2)
    assert (by["inference"].first()[["all", "all, top-1"]] == ["soft", "top-1"]).all()
    # half of each class's training rows, rounded per class
    assert abs(by["n_train"].first()["half data"] - 45) <= C / 2 and by["n_train"].first()["all"] == 90
    gate = by["gate_mflops"].first()
    dense = by["gflops_per_image"].first()
    assert dense["all"] == pytest.approx(sum(COST.values()) + gate["all"] / 1e3)
    assert dense["no c"] == pytest.approx(3.0 + gate["no c"] / 1e3)
    assert (results.loc[results["setting"] == "all, top-1", "gflops_per_image"] < dense["all"]).all()
    # top-1 routes each image to one expert; soft weights are spread below 1
    np.testing.assert_allclose(results.loc[results["setting"] == "all, top-1", "mean_max_gate_weight"], 1.0)
    assert (results.loc[results["setting"] == "all", "mean_max_gate_weight"] < 1.0).all()
    assert by["gate_params"].first()["wide gate"] > by["gate_params"].first()["all"]
    assert gate["8 px"] < gate["all"]  # same gate on a quarter of the pixels
    assert by["gate_params"].first()["8 px"] == by["gate_params"].first()["all"]


def test_correctness_is_per_test_image_and_matches_accuracy(results):
    for _, r in results.iterrows():
        assert r["correct"].dtype == bool and len(r["correct"]) == r["n_test"] == 30
        assert r["correct"].mean() == pytest.approx(r["accuracy"])


@pytest.mark.parametrize("fixed_test", [True, False])
def test_each_seed_draws_its_own_split_shared_by_every_variant(fixed_test, monkeypatch):
    pool = tiny(fixed_test=fixed_test)
    seen = []
    original = MoE.fit

    def recording_fit(self, features, seed=0):
        seen.append((seed, features.indices["train"].copy(), features.indices["test"].copy()))
        return original(self, features, seed)

    monkeypatch.setattr(MoE, "fit", recording_fit)
    cfg = MoEConfig(gate="thumbnail")
    run_ablation(
        "draws",
        {"all": (cfg, pool), "no c": (cfg, pool.subset_backbones(["a", "b"]))},
        [0, 1],
        TRAIN,
        progress=False,
    )
    (s0, tr0, te0), (_, tr0b, te0b), (s1, tr1, te1), _ = seen
    assert (s0, s1) == (0, 1)
    np.testing.assert_array_equal(tr0, tr0b)  # both variants of a seed train on the same rows ...
    np.testing.assert_array_equal(te0, te0b)  # ... and are scored on the same images
    assert not np.array_equal(tr0, tr1), "the data seed follows the model seed"
    assert np.array_equal(te0, te1) == fixed_test, "test images are re-drawn only without an official test"


def test_variants_from_different_pools_are_refused():
    cfg = MoEConfig(gate="thumbnail")
    with pytest.raises(ValueError, match="different test images.*one FeatureSet pool"):
        run_ablation("x", {"a": (cfg, tiny(seed=0)), "b": (cfg, tiny(seed=1))}, [0], TRAIN, progress=False)


def test_soft_and_top1_share_one_fit_and_the_cache_spans_calls(fs, monkeypatch):
    fits = []
    original = MoE.fit

    def counting_fit(self, features, seed=0):
        fits.append(seed)
        return original(self, features, seed)

    monkeypatch.setattr(MoE, "fit", counting_fit)
    cfg, cache = MoEConfig(gate="thumbnail"), {}
    first = run_ablation(
        "a", {"soft": (cfg, fs), "top-1": (cfg, fs, 1)}, [0, 1], TRAIN, cache=cache, progress=False
    )
    assert sorted(fits) == [0, 1]
    again = run_ablation(
        "b", {"same": (MoEConfig(gate="thumbnail"), fs)}, [0], TRAIN, cache=cache, progress=False
    )
    assert sorted(fits) == [0, 1], "an equal config on the same FeatureSet is not refit"
    assert (
        again["accuracy"].iloc[0]
        == first.loc[(first["setting"] == "soft") & (first["seed"] == 0), "accuracy"].iloc[0]
    )
    run_ablation(
        "c", {"less data": Variant(cfg, fs, train_fraction=0.5)}, [0], TRAIN, cache=cache, progress=False
    )
    assert len(fits) == 3


def test_run_ablation_is_deterministic(fs):
    variants = {"x": (MoEConfig(gate="thumbnail"), fs)}
    a = run_ablation("d", variants, [0], TRAIN, progress=False)
    b = run_ablation("d", variants, [0], TRAIN, progress=False)
    pd.testing.assert_frame_equal(a.drop(columns="correct"), b.drop(columns="correct"))
    np.testing.assert_array_equal(a["correct"].iloc[0], b["correct"].iloc[0])


def test_run_ablation_rejects_bad_input(fs):
    cfg = MoEConfig(gate="thumbnail")
    with pytest.raises(ValueError, match="no variants"):
        run_ablation("e", {}, [0], TRAIN)
    with pytest.raises(ValueError, match="at least one seed"):
        run_ablation("e", {"x": (cfg, fs)}, [], TRAIN)
    with pytest.raises(ValueError, match=r"reference 'y' is not a variant of 'e'; variants: \['x'\]"):
        run_ablation("e", {"x": (cfg, fs)}, [0], TRAIN, reference="y")
    with pytest.raises(ValueError, match="must be a Variant or a"):
        run_ablation("e", {"x": cfg}, [0], TRAIN)
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\]"):
        Variant(cfg, fs, train_fraction=0)


# ---------------------------------------------------------------- paired comparisons


def planted_results():
    """Two seeds of 400 test images. 'better' fixes 40 of the reference's errors per seed and breaks
    none (+10 points); 'same' flips 10 right and 10 wrong images (0 points); 'other' has no reference."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1):
        ref = rng.random(400) < 0.7
        better = ref.copy()
        better[np.flatnonzero(~ref)[:40]] = True
        same = ref.copy()
        same[np.flatnonzero(ref)[:10]] = False
        same[np.flatnonzero(~ref)[:10]] = True
        settings = [
            ("one", "ref", ref),
            ("one", "better", better),
            ("one", "same", same),
            ("two", "other", ref),
        ]
        for ablation, setting, correct in settings:
            rows.append(
                {
                    "ablation": ablation,
                    "setting": setting,
                    "reference": setting == "ref",
                    "seed": seed,
                    "inference": "soft",
                    "accuracy": correct.mean(),
                    "val_accuracy": 0.5,
                    "gflops_per_image": 1.0 + seed,
                    "gate_params": 10,
                    "gate_mflops": 0.1,
                    "mean_max_gate_weight": 0.5,
                    "n_train": 9,
                    "n_test": 400,
                    "n_experts": 2,
                    "correct": correct,
                }
            )
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_paired_deltas_give_differences_with_confidence_intervals():
    d = paired_deltas(planted_results(), n_boot=500).set_index(["ablation", "setting"])
    better, same = d.loc[("one", "better")], d.loc[("one", "same")]
    assert better["delta"] == pytest.approx(10.0) and better["low"] > 0 and better["significant"]
    assert better["Δ vs reference"].startswith("+10.00 [")
    assert same["delta"] == pytest.approx(0.0) and same["low"] < 0 < same["high"] and not same["significant"]
    assert np.isnan(better["p_mcnemar"]), "McNemar's test is for one seed"
    assert d.loc[("one", "ref"), "Δ vs reference"] == "reference"
    assert np.isnan(d.loc[("two", "other"), "delta"]) and d.loc[("two", "other"), "significant"] is pd.NA
    one_seed = paired_deltas(planted_results().query("seed == 0"), n_boot=500).set_index("setting")
    assert one_seed.loc["better", "p_mcnemar"] < 1e-6


def test_summarize_reports_accuracy_ci_deltas_and_costs():
    res = planted_results()
    s = summarize(res, n_boot=500).set_index(["ablation", "setting"])
    assert list(s.index) == [("one", "ref"), ("one", "better"), ("one", "same"), ("two", "other")]
    ref = s.loc[("one", "ref")]
    expected = np.mean([c.mean() for c in res.loc[res["setting"] == "ref", "correct"]])
    assert ref["accuracy_mean"] == pytest.approx(expected)
    assert ref["accuracy_low"] < ref["accuracy_mean"] < ref["accuracy_high"]
    assert ref["accuracy (95% CI)"].startswith(f"{100 * expected:.2f} [")
    assert ref["gflops_per_image"] == pytest.approx(1.5) and ref["n_seeds"] == 2 and ref["n_test"] == 400
    assert s.loc[("one", "better"), "delta"] == pytest.approx(10.0)
    text = verdicts(s.reset_index())
    assert text.splitlines()[0].startswith("better beats ref by +10.00 [")
    assert "same and ref are not distinguishable" in text and "other" not in text
    table = summary_table(s.reset_index(), costs=("gflops_per_image", "n_train"))
    assert list(table.columns) == [
        "test accuracy, % (95% CI)",
        "Δ vs reference, points (95% CI)",
        "val accuracy, %",
        "GFLOPs / image",
        "train images",
    ]
    with pytest.raises(ValueError, match="unknown cost columns"):
        summary_table(s.reset_index(), costs=("nope",))
    with pytest.raises(ValueError, match="lack columns.*correct"):
        summarize(res.drop(columns="correct"))
    with pytest.raises(ValueError, match="pair them on the same seeds"):
        paired_deltas(res[~((res["setting"] == "better") & (res["seed"] == 1))])


@pytest.mark.parametrize("size", [8, 16, 32])
def test_thumbnail_sizes_of_the_ablation_are_valid_everywhere(size):
    """The thumbnail-size ablation's 8, 16 and 32 px: accepted by the profiles and the gate, whose cost
    grows with the pixel count."""
    import torch

    from fusion_lib.book.profiles import get_profile
    from fusion_lib.fusion.gates import ThumbnailGate

    assert get_profile("ci", thumbnail_size=size).thumbnail_size == size
    gate = ThumbnailGate(3, thumbnail_size=size)
    assert gate([], torch.zeros(5, 3, size, size)).shape == (5, 3)
    assert gate.flops() < ThumbnailGate(3, thumbnail_size=2 * size).flops()
