"""The agreement study on planted problems whose answers are known."""

import numpy as np
import pandas as pd
import pytest
from configs import experiment

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.agreement import (
    PAIRWISE,
    VERDICTS,
    AgreementStudies,
    AgreementStudy,
    c1_verdict,
    correctness_kappa,
    kappa_beyond_accuracy,
    kappa_table,
    mean_std,
    pair_differences,
    rank_reversals,
    reversal_table,
    run_agreement_study,
    variation_summary,
    variation_table,
)
from fusion_lib.studies.runs import EXPERTS, StudyRun


def _planted(seed=0, n=300, classes=4, signal=4.0):
    """Backbone 'a' sees the class on even-indexed images only, 'b' on odd ones, 'c' always."""
    rng = np.random.default_rng(seed)
    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        y = rng.integers(0, classes, n)
        onehot = np.eye(classes)[y] * signal
        mask = (np.arange(n) % 2 == 0)[:, None]
        noise = lambda: rng.normal(size=(n, classes))  # noqa: E731
        feats[split] = {
            "a": np.where(mask, onehot, 0) + noise(),
            "b": np.where(~mask, onehot, 0) + noise(),
            "c": onehot + noise(),
        }
        feats[split] = {k: v.astype(np.float32) for k, v in feats[split].items()}
        labels[split] = y
    thumbs = {s: np.zeros((n, 3, 8, 8), np.float32) for s in labels}
    return FeatureSet("planted", ["a", "b", "c"], [f"k{i}" for i in range(classes)], feats, labels, thumbs)


def test_agreement_study_recovers_planted_structure():
    fs = _planted()
    study = run_agreement_study(fs, experiment(seeds=[0, 1], epochs=40, lr=0.05, batch_size=None))
    acc = study.accuracy.groupby("backbone")["accuracy"].mean()
    assert acc["c"] > 0.9 and 0.5 < acc["a"] < 0.8 and 0.5 < acc["b"] < 0.8
    agree = study.matrix("agreement")
    assert np.allclose(np.diag(agree), 1.0)
    assert agree.loc["a", "b"] < agree.loc["a", "c"]  # a and b are right on disjoint halves
    df = study.matrix("double_fault")
    assert df.loc["a", "b"] < 0.15 < df.loc["a", "a"]
    bounds = study.bounds
    assert (bounds["oracle"] >= bounds["best_single"]).all() and (bounds["best_single_backbone"] == "c").all()
    assert set(study.pairs.columns) >= {"dataset", "seed", "a", "b", "agreement", "kappa", "kappa_correct"}
    assert study.image_ids() is None  # these features carry no pool indices
    means = study.pair_means()  # each unordered pair once, mean over the two seeds
    assert list(means.index) == [("a", "b"), ("a", "c"), ("b", "c")] and list(means.columns) == list(PAIRWISE)
    assert means.loc[("a", "b"), "agreement"] == pytest.approx(agree.loc["a", "b"])


def test_each_seed_draws_its_split_and_keeps_per_image_correctness():
    fs = _planted(n=120)
    study = run_agreement_study(fs, experiment(seeds=[0, 1], epochs=20, lr=0.05, batch_size=None))
    for seed in (0, 1):
        y = fs.draw(seed).labels["test"]
        assert study.correct[("c", seed)].shape == y.shape
        acc = study.accuracy.query("seed == @seed and backbone == 'c'")["accuracy"].iloc[0]
        assert study.correct[("c", seed)].mean() == pytest.approx(acc)
        assert (study.correct[("oracle", seed)] >= study.correct[("best_single", seed)]).all()
        assert study.agree[seed].shape == y.shape and 0 <= study.agree[seed].min() <= 1


def test_variation_summary_separates_an_easy_from_a_hard_dataset():
    config = experiment(seeds=[0, 1], epochs=40, lr=0.05, batch_size=None)
    easy = run_agreement_study(_planted(signal=6.0), config)
    hard = run_agreement_study(_planted(signal=1.0), config)
    summary = variation_summary(_runs({"easy": easy, "hard": hard}), n_boot=300)
    s = summary.set_index("dataset")
    assert s.loc["easy", "accuracy"] > s.loc["hard", "accuracy_high"]
    assert (summary["accuracy_low"] <= summary["accuracy"]).all() and (summary["oracle_gain"] >= 0).all()
    shown = variation_table(summary)
    assert list(shown.index) == ["easy", "hard"] and shown.loc["easy", "oracle gain (points)"].startswith("+")


# ---------------------------------------------------------------- C1 beyond dataset difficulty


def _runs(studies: dict) -> AgreementStudies:
    """The studies as the functions take them, one run per dataset (they read the results, not the pools)."""
    return AgreementStudies(StudyRun(name, EXPERTS, study, None) for name, study in studies.items())


def _study(name, correct, n_seeds=2):
    """An AgreementStudy from planted per-image correctness: ``correct[backbone]`` is one array per seed,
    and every seed shares the same test images."""
    seeds = range(n_seeds)
    accuracy = pd.DataFrame(
        [(name, b, s, c[s].mean()) for b, c in correct.items() for s in seeds],
        columns=["dataset", "backbone", "seed", "accuracy"],
    )
    pairs = pd.DataFrame(
        [(name, s, a, b, 0.0) for s in seeds for a in correct for b in correct],
        columns=["dataset", "seed", "a", "b", "kappa"],
    )
    flat = {(b, s): c[s] for b, c in correct.items() for s in seeds}
    ids = {s: np.arange(len(next(iter(correct.values()))[s])) for s in seeds}
    return AgreementStudy(accuracy, pairs, pd.DataFrame(), flat, test_ids=ids)


def _bernoulli(rng, n, *rates, n_seeds=2):
    """Per backbone, independent per-image correctness at ``rate``, one array per seed."""
    return [[rng.random(n) < r for _ in range(n_seeds)] for r in rates]


def _nested(rng, n, low, high, n_seeds=2):
    """Two backbones whose errors nest: the weaker is right only where the stronger is."""
    u = [rng.random(n) for _ in range(n_seeds)]
    return [x < low for x in u], [x < high for x in u]


def test_a_planted_reversal_survives_holm_and_a_kept_ranking_gives_none():
    rng = np.random.default_rng(0)
    a1, b1 = _bernoulli(rng, 1500, 0.9, 0.6)
    a2, b2 = _bernoulli(rng, 1500, 0.6, 0.9)
    flipped = {"one": _study("one", {"a": a1, "b": b1}), "two": _study("two", {"a": a2, "b": b2})}
    diffs = pair_differences(_runs(flipped), n_boot=300)
    assert len(diffs) == 2 and list(diffs["outcome"]) == ["better", "worse"]
    assert (diffs["p_holm"] >= diffs["p_value"]).all()
    reversals = rank_reversals(diffs)
    assert len(reversals) == 1
    r = reversals.iloc[0]
    assert (r["a"], r["b"], r["a_wins_on"], r["b_wins_on"]) == ("a", "b", "one", "two")
    assert 0 < r["a_lead_low"] < r["a_lead"] < r["a_lead_high"] and r["b_lead_low"] > 0
    shown = reversal_table(reversals)
    assert shown.index[0] == "a vs b" and shown.iloc[0, 0].startswith("one: ")

    c1, c2 = _bernoulli(rng, 1500, 0.7, 0.7)
    kept = {
        "one": _study("one", {"a": a1, "b": b1, "c": c1}),
        "two": _study("two", {"a": b2, "b": a2, "c": c2}),
    }
    diffs = pair_differences(_runs(kept), n_boot=300)
    assert len(diffs) == 6  # 2 datasets x 3 backbone pairs
    assert rank_reversals(diffs).empty
    shown = reversal_table(rank_reversals(diffs))
    assert len(shown) == 1 and shown.index[0].startswith("none") and (shown.iloc[0] == "-").all()


def test_a_reversal_among_trained_probes(make_planted):
    """Backbone a sees the class on dataset one, b on dataset two; the study records the test images' ids."""
    config = experiment(seeds=[0, 1], epochs=30, lr=0.05, batch_size=None)
    studies = {
        name: run_agreement_study(make_planted(signal, sizes=(200, 100, 300)), config)
        for name, signal in (("one", {"a": 2.0, "b": 0.2}), ("two", {"a": 0.2, "b": 2.0}))
    }
    study = studies["one"]
    assert all(np.array_equal(i, np.arange(300)) for i in study.image_ids())
    pair = study.pairs.query("seed == 0 and a == 'a' and b == 'b'")["kappa_correct"].iloc[0]
    assert pair == pytest.approx(correctness_kappa(study.correct[("a", 0)], study.correct[("b", 0)]))
    reversals = rank_reversals(pair_differences(_runs(studies), n_boot=300))
    assert list(reversals[["a_wins_on", "b_wins_on"]].iloc[0]) == ["one", "two"]


def test_correctness_kappa_discounts_accuracy():
    rng = np.random.default_rng(1)
    a, b = rng.random(40_000) < 0.8, rng.random(40_000) < 0.8
    assert abs(correctness_kappa(a, b)) < 0.02  # independent errors: agreement is what accuracy implies
    assert correctness_kappa(a, a.copy()) == 1.0  # the same images right and wrong
    half = rng.random(40_000) < 0.5
    assert correctness_kappa(half, ~half) == pytest.approx(-1, abs=0.02)  # always one right, one wrong
    assert correctness_kappa(np.ones(5, bool), np.ones(5, bool)) == 1.0  # nothing to discount
    weak, strong = _nested(rng, 40_000, 0.6, 0.9, n_seeds=1)
    assert correctness_kappa(weak[0], strong[0]) == pytest.approx(0.12 / 0.42, abs=0.02)


def test_kappa_beyond_accuracy_per_dataset_and_between():
    rng = np.random.default_rng(2)
    a, b = _bernoulli(rng, 2000, 0.8, 0.8)
    weak, strong = _nested(rng, 2000, 0.6, 0.9)
    studies = {
        "independent": _study("independent", {"a": a, "b": b}),
        "nested": _study("nested", {"a": weak, "b": strong}),
    }
    per_dataset, between = kappa_beyond_accuracy(_runs(studies), n_boot=300)
    k = per_dataset.set_index("dataset")
    assert k.loc["independent", "low"] < 0 < k.loc["independent", "high"]
    assert k.loc["nested", "low"] < 0.12 / 0.42 < k.loc["nested", "high"] and k.loc["nested", "low"] > 0.2
    assert k["pairs"].tolist() == [1, 1] and (k["kappa"] == 0).all()
    assert len(between) == 1 and between.iloc[0]["outcome"] == "lower" and between.iloc[0]["high"] < 0
    shown, differences = kappa_table(per_dataset, between)
    assert list(shown.index) == ["independent", "nested"] and differences.index[0] == "independent - nested"


def test_c1_verdict_words():
    rng = np.random.default_rng(3)
    a1, b1 = _bernoulli(rng, 2000, 0.9, 0.6)
    weak, strong = _nested(rng, 2000, 0.6, 0.9)  # a wins on one with independent errors, b on two with nested
    flipped = {"one": _study("one", {"a": a1, "b": b1}), "two": _study("two", {"a": weak, "b": strong})}
    verdict = c1_verdict(
        pair_differences(_runs(flipped), n_boot=300), *kappa_beyond_accuracy(_runs(flipped), n_boot=300)
    )
    assert verdict.word == "supported"
    assert verdict.deciding.startswith("1 rank reversal (Holm, 2 comparisons); κ_c ")
    assert "on one vs" in verdict.deciding and verdict.sentence.startswith("C1 supported: 1 rank reversal")
    assert "(difference -0." in verdict.sentence and "Holm p = " in verdict.sentence

    kept = {"one": flipped["one"], "two": _study("two", {"a": strong, "b": weak})}  # one ranking on both
    verdict = c1_verdict(
        pair_differences(_runs(kept), n_boot=300), *kappa_beyond_accuracy(_runs(kept), n_boot=300)
    )
    assert verdict.word == "not supported" and "no pair changes rank" in verdict.sentence
    assert verdict.deciding.startswith("0 rank reversals")

    small = {name: _study(name, dict(zip("ab", _bernoulli(rng, 40, 0.7, 0.72)))) for name in ("one", "two")}
    verdict = c1_verdict(
        pair_differences(_runs(small), n_boot=300), *kappa_beyond_accuracy(_runs(small), n_boot=300)
    )
    assert verdict.word == "inconclusive" and "undecided" in verdict.sentence

    one = {"one": flipped["one"]}
    verdict = c1_verdict(
        pair_differences(_runs(one), n_boot=300), *kappa_beyond_accuracy(_runs(one), n_boot=300)
    )
    assert verdict.word == "inconclusive" and "one dataset (one)" in verdict.sentence
    assert set(VERDICTS) == {"supported", "not supported", "inconclusive"}


def test_c1_bad_input_says_what_is_wrong():
    rng = np.random.default_rng(4)
    a, b, c = _bernoulli(rng, 50, 0.8, 0.8, 0.8)
    with pytest.raises(ValueError, match="at least one dataset"):
        pair_differences(_runs({}))
    with pytest.raises(ValueError, match="same backbones on every dataset"):
        kappa_beyond_accuracy(
            _runs({"one": _study("one", {"a": a, "b": b}), "two": _study("two", {"a": a, "c": c})})
        )
    with pytest.raises(ValueError, match="at least two"):
        pair_differences(_runs({"one": _study("one", {"a": a})}))
    with pytest.raises(ValueError, match="equal length"):
        correctness_kappa(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="no column"):
        rank_reversals(pd.DataFrame({"dataset": ["one"]}))
    with pytest.raises(ValueError, match="no backbone-pair comparisons"):
        empty = pd.DataFrame(columns=["dataset", "a", "b", "outcome"])
        c1_verdict(
            empty,
            pd.DataFrame(columns=["dataset", "kappa_c", "low", "high"]),
            pd.DataFrame(columns=["d1", "d2", "diff", "low", "high", "p_holm", "outcome"]),
        )


def test_bad_arguments():
    fs = _planted(n=40)
    with pytest.raises(ValueError, match="seeds must be a count n >= 1"):
        run_agreement_study(fs, experiment(seeds=[]))
    empty = AgreementStudy(*(None,) * 3)
    with pytest.raises(ValueError, match="valid: agreement, kappa, kappa_correct"):
        empty.matrix("correlation")


def test_mean_std_labels():
    import pandas as pd

    df = pd.DataFrame({"m": ["x", "x", "y"], "v": [0.5, 0.7, 0.9]})
    out = mean_std(df, ["m"], "v").set_index("m")
    assert out.loc["x", "mean ± std"] == "0.600 ± 0.141" and out.loc["y", "std"] == 0.0


def test_the_agreement_study_can_measure_the_validation_split_only():
    # a choice of experts read off the study must be able to see no test image
    fs = _planted()
    fs.features["val"] = {b: f[:120] for b, f in fs.features["val"].items()}  # val unlike test in size
    fs.labels["val"], fs.thumbnails["val"] = fs.labels["val"][:120], fs.thumbnails["val"][:120]
    config = experiment(seeds=[0], epochs=5, lr=0.05, batch_size=None)
    on_val = run_agreement_study(fs, config, split="val")
    drawn = fs.draw(0)
    for b in fs.backbones:
        assert len(on_val.correct[(b, 0)]) == len(drawn.labels["val"]) != len(drawn.labels["test"])
    if "val" in drawn.indices:
        np.testing.assert_array_equal(on_val.test_ids[0], drawn.indices["val"])
    with pytest.raises(ValueError, match="split must be"):
        run_agreement_study(fs, config, split="train")
