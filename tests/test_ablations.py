"""The ablations of the book's recipe: variants of ``moe_thumbnail`` over seeds, paired comparisons and
the stratified train subsample, on tiny planted data."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from configs import experiment

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.two_stage import TwoStageConfig, TwoStageMoE
from fusion_lib.studies.ablations import (
    ABLATION_COLUMNS,
    AblationRuns,
    Variant,
    paired_deltas,
    run_ablation,
    subsample_train,
    summarize,
    summary_table,
    verdicts,
)
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.seed_run import ANCHORS
from fusion_lib.studies.stats import paired_difference

C, D, T = 3, 6, 16
COST = {"a": 1.0, "b": 2.0, "c": 0.5}


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
def pool(make_planted):
    """Three backbones of unequal strength; random thumbnails, so the gate's weights differ per image."""
    fs = make_planted({"a": 1.5, "b": 1.0, "c": 0.5}, sizes=(120, 60, 60), costs=COST, thumb_size=T)
    rng = np.random.default_rng(1)
    return replace(
        fs, thumbnails={s: rng.random(t.shape, dtype=np.float32) for s, t in fs.thumbnails.items()}
    )


def config(**kw) -> ExperimentConfig:
    return experiment(**{"methods": "moe_thumbnail", "seeds": [0, 1], "epochs": 3, "patience": 2, **kw})


@pytest.fixture(scope="module")
def ablation(pool):
    variants = {
        "book recipe": Variant(pool),
        "8 px": Variant(pool, {"thumbnail_sizes": (8,)}),
        "top-1": Variant(pool, top_k=1),
        "alpha = 1": Variant(pool, {"shrink": False}),
        "alpha = 0": Variant(pool, {"alphas": (0.0,)}),
        "raw experts": Variant(pool, {"calibrate": False}),
        "wide gate": Variant(pool, {"gate_channels": (32, 64)}),
        "no c": Variant(pool.subset_backbones(["a", "b"])),
        "half data": Variant(pool, train_fraction=0.5),
        "MLP experts": Variant(pool, expert="mlp"),
    }
    runs = AblationRuns(config())
    results = run_ablation("demo", variants, runs, reference="book recipe", progress=False)
    return variants, runs, results


def rows(results: pd.DataFrame, setting: str) -> pd.DataFrame:
    return results[results["setting"] == setting].sort_values("seed")


def test_the_reference_is_the_books_moe_thumbnail(pool, ablation):
    _, _, results = ablation
    book = run_experiment(config(), feature_set=pool, progress=False)
    ref = rows(results, "book recipe")
    for c_ref, c_book in zip(ref["correct"], book.correct("moe_thumbnail")):
        np.testing.assert_array_equal(c_ref, c_book)
    metrics = book.metrics.pivot_table(index="seed", columns="metric", values="value")
    np.testing.assert_array_equal(ref["val_accuracy"], metrics["val_accuracy"])
    np.testing.assert_array_equal(ref["alpha"], metrics["alpha"])
    np.testing.assert_array_equal(ref["thumbnail_size"], metrics["thumbnail_size"])
    np.testing.assert_allclose(ref["gflops_per_image"], metrics["gflops_per_image"])
    assert set(ref["anchor"]) <= set(ANCHORS)


def test_rows_and_costs(ablation):
    variants, _, results = ablation
    assert list(results.columns) == ABLATION_COLUMNS
    assert len(results) == len(variants) * 2 and set(results["seed"]) == {0, 1}
    by = results.groupby("setting")
    assert by["reference"].any()[lambda s: s].index.tolist() == ["book recipe"]
    assert results["accuracy"].between(0, 1).all() and results["val_accuracy"].between(0, 1).all()
    first = by.first()
    assert (first.loc["book recipe", "n_experts"], first.loc["no c", "n_experts"]) == (3, 2)
    assert (first.loc[["book recipe", "top-1"], "inference"] == ["soft", "top-1"]).all()
    assert first.loc["book recipe", "n_train"] == 120 and abs(first.loc["half data", "n_train"] - 60) <= C / 2
    ref = rows(results, "book recipe")
    assert set(ref["thumbnail_size"]) <= {8, 16}, "the book recipe chooses among 8 and 16 px here"
    assert (rows(results, "8 px")["thumbnail_size"] == 8).all()
    np.testing.assert_allclose(ref["gflops_per_image"], sum(COST.values()) + ref["gate_mflops"] / 1e3)
    assert (rows(results, "top-1")["gflops_per_image"].to_numpy() < ref["gflops_per_image"].to_numpy()).all()
    np.testing.assert_allclose(rows(results, "top-1")["mean_max_gate_weight"], 1.0)
    assert first.loc["wide gate", "gate_params"] > first.loc["book recipe", "gate_params"]
    for _, r in results.iterrows():
        assert r["correct"].dtype == bool and len(r["correct"]) == r["n_test"] == 60
        assert r["correct"].mean() == pytest.approx(r["accuracy"])


def test_every_variant_of_a_seed_is_scored_on_the_same_images(ablation):
    _, _, results = ablation
    for _, g in results.groupby("seed"):
        for ids in g["test_ids"]:
            np.testing.assert_array_equal(ids, g["test_ids"].iloc[0])


def test_shrinkage_variants_are_the_raw_gate_and_the_anchor_alone(ablation):
    variants, runs, results = ablation
    assert (rows(results, "alpha = 1")["alpha"] == 1.0).all()
    assert (rows(results, "alpha = 0")["alpha"] == 0.0).all()
    for seed in (0, 1):
        run, raw = runs.fit(variants["alpha = 1"], seed)
        _, anchor = runs.fit(variants["alpha = 0"], seed)
        fs, ex = run.fs, run.experts
        assert np.ptp(raw.gate_weights(fs, ex, "test"), axis=0).max() > 1e-3, "the raw gate routes per image"
        w = anchor.gate_weights(fs, ex, "test")
        np.testing.assert_allclose(w, np.broadcast_to(w[0], w.shape), atol=1e-6)  # one weighting for all
        anchor_correct = anchor.anchor_.probs["test"].argmax(1) == fs.labels["test"]
        np.testing.assert_array_equal(rows(results, "alpha = 0")["correct"].iloc[seed], anchor_correct)


def test_calibration_off_keeps_the_raw_probabilities_of_the_same_probes(ablation):
    variants, runs, _ = ablation
    for seed in (0, 1):
        calibrated, raw = runs.run(variants["book recipe"], seed), runs.run(variants["raw experts"], seed)
        assert raw.probes is calibrated.probes and raw.oof_probes is calibrated.oof_probes
        np.testing.assert_array_equal(raw.experts.temperatures, 1.0)
        assert not np.allclose(calibrated.experts.temperatures, 1.0)
        assert runs.fit(variants["raw experts"], seed)[1].config.calibrate is False


def test_gate_channels_default_is_the_thumbnail_gates_default():
    from fusion_lib.fusion.gates import ThumbnailGate

    default = ThumbnailGate(3)
    assert TwoStageConfig().gate_channels == (default.features[0].out_channels, default.head.in_features)


def test_settings_equal_to_the_reference_share_fits(pool, monkeypatch):
    fits = []
    original = TwoStageMoE.fit

    def counting_fit(self, *args, **kwargs):
        if self.config.gate == "thumbnail":
            fits.append(self.config.thumbnail_sizes)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TwoStageMoE, "fit", counting_fit)
    runs = AblationRuns(config())
    variants = {
        "chosen": Variant(pool),
        "8 px": Variant(pool, {"thumbnail_sizes": (8,)}),
        "16 px": Variant(pool, {"thumbnail_sizes": (16,)}),
        "top-1": Variant(pool, top_k=1),
    }
    first = run_ablation("a", variants, runs, reference="chosen", progress=False)
    assert sorted(fits) == [(8,), (8,), (16,), (16,)], "one gate per seed and size"
    assert runs.n_gates == 4 and runs.n_runs == 2
    again = run_ablation("b", {"same": Variant(pool)}, runs, seeds=[0], progress=False)
    assert len(fits) == 4, "an equal recipe on the same pool is not refit, between calls too"
    np.testing.assert_array_equal(again["correct"].iloc[0], first["correct"].iloc[0])
    chosen = rows(first, "chosen")
    for seed, size in zip(chosen["seed"], chosen["thumbnail_size"]):
        fixed = first[(first["setting"] == f"{size} px") & (first["seed"] == seed)]
        np.testing.assert_array_equal(fixed["correct"].iloc[0], chosen["correct"].iloc[seed])


def test_paired_deltas_of_a_run_pair_each_seeds_images(ablation):
    _, _, results = ablation
    d = paired_deltas(results, n_boot=200).set_index("setting")
    assert d.loc["book recipe", "Δ vs reference"] == "reference" and np.isnan(d.loc["book recipe", "delta"])
    ref = rows(results, "book recipe")
    ids = list(ref["test_ids"])  # the planted pool's test split is official: both seeds share its images
    for setting in ("top-1", "alpha = 0", "raw experts", "no c"):
        other = list(rows(results, setting)["correct"])
        expected = paired_difference(other, list(ref["correct"]), n_boot=200, image_ids=ids)
        assert d.loc[setting, "delta"] == pytest.approx(expected.diff)
        assert (d.loc[setting, "low"], d.loc[setting, "high"]) == (expected.low, expected.high)
        assert expected.diff == pytest.approx(
            np.mean([100 * (a.astype(float) - b).mean() for a, b in zip(other, ref["correct"])])
        )


def test_variants_from_different_pools_are_refused(make_planted):
    a, b = (make_planted({"x": 1.0, "y": 1.0}, sizes=(30, 15, 15), seed=s) for s in (0, 1))
    with pytest.raises(ValueError, match="different test images.*one FeatureSet pool"):
        run_ablation("x", {"a": Variant(a), "b": Variant(b)}, AblationRuns(config()), progress=False)


def test_run_ablation_and_variant_reject_bad_input(pool):
    runs = AblationRuns(config())
    with pytest.raises(ValueError, match="no variants"):
        run_ablation("e", {}, runs)
    with pytest.raises(ValueError, match="at least one seed"):
        run_ablation("e", {"x": Variant(pool)}, runs, seeds=[])
    with pytest.raises(ValueError, match=r"reference 'y' is not a variant of 'e'; variants: \['x'\]"):
        run_ablation("e", {"x": Variant(pool)}, runs, reference="y")
    with pytest.raises(ValueError, match="must be Variant objects"):
        run_ablation("e", {"x": pool}, runs)
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\]"):
        Variant(pool, train_fraction=0)
    with pytest.raises(ValueError, match=r"unknown TwoStageConfig fields \['temperature'\]"):
        Variant(pool, {"temperature": 2.0})
    with pytest.raises(ValueError, match="unknown expert kind 'deep'"):
        Variant(pool, expert="deep")


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
                    "alpha": 0.5,
                    "thumbnail_size": 16 + 16 * seed,
                    "anchor": "prob_avg",
                    "n_train": 9,
                    "n_test": 400,
                    "n_experts": 2,
                    "correct": correct,
                    "test_ids": np.arange(400),  # an official test set: the same images every seed
                }
            )
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


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
    assert ref["reference"] and not s.loc[("one", "better"), "reference"]
    assert s.loc[("one", "better"), "delta"] == pytest.approx(10.0)
    text = verdicts(s.reset_index())
    assert text.splitlines()[0].startswith("better beats ref by +10.00 [")
    assert "same and ref are not distinguishable" in text and "other" not in text
    table = summary_table(s.reset_index(), columns=("gflops_per_image", "n_train", "thumbnail sizes"))
    assert list(table.columns) == [
        "test accuracy, % (95% CI)",
        "Δ vs reference, points (95% CI)",
        "val accuracy, %",
        "GFLOPs / image",
        "train images",
        "thumbnail px (per seed)",
    ]
    assert table["thumbnail px (per seed)"].iloc[0] == "16, 32"
    with pytest.raises(ValueError, match="unknown columns"):
        summary_table(s.reset_index(), columns=("nope",))
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
