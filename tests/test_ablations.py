"""The ablation runner and the stratified train subsample, on a tiny synthetic FeatureSet."""
import numpy as np
import pandas as pd
import pytest

from fusion_lib.ablations import RESULT_COLUMNS, Variant, paired_deltas, run_ablation, subsample_train, summarize
from fusion_lib.feature_set import FeatureSet
from fusion_lib.moe import MoE, MoEConfig
from fusion_lib.training import TrainConfig

C, D, T = 3, 6, 16
COST = {"a": 1.0, "b": 2.0, "c": 0.5}
TRAIN = TrainConfig(epochs=3, patience=2)


def tiny(sizes=(90, 30, 30), seed: int = 0) -> FeatureSet:
    """Class-separable features; the first feature column holds the row number, so row alignment is checkable."""
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
        thumbs[split] = np.broadcast_to((np.arange(n) / n)[:, None, None, None], (n, 3, T, T)).astype(np.float32)
        labels[split], indices[split] = y.astype(np.int64), 1000 + np.arange(n)
    return FeatureSet("tiny", list(COST), [f"c{i}" for i in range(C)], feats, labels, thumbs, dict(COST), indices)


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
    }
    return run_ablation("demo", variants, seeds=[0, 1], train=TRAIN, reference="all", progress=False)


def test_run_ablation_rows_and_costs(results):
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 5 * 2 and set(results["seed"]) == {0, 1}
    by = results.groupby("setting")
    assert by["reference"].all().to_dict() == {"8 px": False, "all": True, "all, top-1": False, "no c": False,
                                               "wide gate": False}
    assert results["accuracy"].between(0, 1).all()
    n_exp = by["n_experts"].first()
    assert (n_exp["all"], n_exp["no c"]) == (3, 2)
    assert (by["inference"].first()[["all", "all, top-1"]] == ["soft", "top-1"]).all()
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


def test_soft_and_top1_share_one_fit_and_the_cache_spans_calls(fs, monkeypatch):
    fits = []
    original = MoE.fit

    def counting_fit(self, features, seed=0):
        fits.append(seed)
        return original(self, features, seed)

    monkeypatch.setattr(MoE, "fit", counting_fit)
    cfg, cache = MoEConfig(gate="thumbnail"), {}
    first = run_ablation("a", {"soft": (cfg, fs), "top-1": (cfg, fs, 1)}, [0, 1], TRAIN, cache=cache, progress=False)
    assert sorted(fits) == [0, 1]
    again = run_ablation("b", {"same": (MoEConfig(gate="thumbnail"), fs)}, [0], TRAIN, cache=cache, progress=False)
    assert sorted(fits) == [0, 1], "an equal config on the same FeatureSet is not refit"
    assert again["accuracy"].iloc[0] == first.loc[(first["setting"] == "soft") & (first["seed"] == 0),
                                                  "accuracy"].iloc[0]
    run_ablation("c", {"other data": (cfg, subsample_train(fs, 0.5))}, [0], TRAIN, cache=cache, progress=False)
    assert len(fits) == 3


def test_run_ablation_is_deterministic(fs):
    variants = {"x": (MoEConfig(gate="thumbnail"), fs)}
    a = run_ablation("d", variants, [0], TRAIN, progress=False)
    b = run_ablation("d", variants, [0], TRAIN, progress=False)
    pd.testing.assert_frame_equal(a, b)


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


# ---------------------------------------------------------------- summarize

def test_summarize_pairs_seeds_against_the_reference():
    rows = []
    for ablation, settings in {"one": {"ref": [0.5, 0.7], "alt": [0.6, 0.9], "mixed": [0.6, 0.6]}, "two": {"p": [0.9, 0.8]}}.items():
        for setting, accs in settings.items():
            for seed, acc in enumerate(accs):
                rows.append({"ablation": ablation, "setting": setting, "reference": setting == "ref", "seed": seed,
                             "inference": "soft", "accuracy": acc, "gflops_per_image": 1.0 + seed,
                             "gate_params": 10, "gate_mflops": 0.1, "mean_max_gate_weight": 0.5, "n_train": 9,
                             "n_experts": 2})
    s = summarize(pd.DataFrame(rows)).set_index(["ablation", "setting"])
    assert s.loc[("one", "ref"), "accuracy_mean"] == pytest.approx(0.6)
    assert s.loc[("one", "ref"), "accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s.loc[("one", "ref"), "accuracy (mean ± std)"] == "0.600 ± 0.141"
    assert s.loc[("one", "ref"), "Δ accuracy vs reference"] == pytest.approx(0.0)
    assert s.loc[("one", "alt"), "Δ accuracy vs reference"] == pytest.approx(0.15)  # seed-wise +0.1, +0.2
    assert s.loc[("one", "alt"), "Δ same sign on every seed"]
    assert not s.loc[("one", "mixed"), "Δ same sign on every seed"]  # +0.1 then -0.1
    assert s.loc[("one", "ref"), "Δ same sign on every seed"] is pd.NA
    assert s.loc[("two", "p"), "Δ same sign on every seed"] is pd.NA
    assert np.isnan(s.loc[("two", "p"), "Δ accuracy vs reference"])
    d = paired_deltas(pd.DataFrame(rows))
    np.testing.assert_allclose(d.loc[d["setting"] == "alt", "delta"], [0.1, 0.2])
    assert s.loc[("one", "alt"), "gflops_per_image"] == pytest.approx(1.5)
    assert list(s.index) == [("one", "ref"), ("one", "alt"), ("one", "mixed"), ("two", "p")]
    with pytest.raises(ValueError, match="lack columns.*reference"):
        summarize(pd.DataFrame(rows).drop(columns="reference"))
