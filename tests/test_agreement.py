"""The agreement study on planted problems whose answers are known."""

import numpy as np
import pytest

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.agreement import (
    AgreementStudy,
    c1_verdict,
    mean_std,
    run_agreement_study,
    variation_summary,
    variation_table,
)


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
    study = run_agreement_study(fs, seeds=[0, 1], train=TrainConfig(epochs=40, lr=0.05, batch_size=None))
    acc = study.accuracy.groupby("backbone")["accuracy"].mean()
    assert acc["c"] > 0.9 and 0.5 < acc["a"] < 0.8 and 0.5 < acc["b"] < 0.8
    agree = study.matrix("agreement")
    assert np.allclose(np.diag(agree), 1.0)
    assert agree.loc["a", "b"] < agree.loc["a", "c"]  # a and b are right on disjoint halves
    df = study.matrix("double_fault")
    assert df.loc["a", "b"] < 0.15 < df.loc["a", "a"]
    bounds = study.bounds
    assert (bounds["oracle"] >= bounds["best_single"]).all() and (bounds["best_single_backbone"] == "c").all()
    assert set(study.pairs.columns) >= {"dataset", "seed", "a", "b", "agreement", "kappa", "double_fault"}


def test_each_seed_draws_its_split_and_keeps_per_image_correctness():
    fs = _planted(n=120)
    study = run_agreement_study(fs, seeds=[0, 1], train=TrainConfig(epochs=20, lr=0.05, batch_size=None))
    for seed in (0, 1):
        y = fs.draw(seed).labels["test"]
        assert study.correct[("c", seed)].shape == y.shape
        acc = study.accuracy.query("seed == @seed and backbone == 'c'")["accuracy"].iloc[0]
        assert study.correct[("c", seed)].mean() == pytest.approx(acc)
        assert (study.correct[("oracle", seed)] >= study.correct[("best_single", seed)]).all()
        assert study.agree[seed].shape == y.shape and 0 <= study.agree[seed].min() <= 1


def test_c1_verdict_separates_an_easy_from_a_hard_dataset():
    train = TrainConfig(epochs=40, lr=0.05, batch_size=None)
    easy = run_agreement_study(_planted(signal=6.0), seeds=[0, 1], train=train)
    hard = run_agreement_study(_planted(signal=1.0), seeds=[0, 1], train=train)
    summary = variation_summary({"easy": easy, "hard": hard}, n_boot=300)
    s = summary.set_index("dataset")
    assert s.loc["easy", "accuracy"] > s.loc["hard", "accuracy_high"]
    assert (summary["accuracy_low"] <= summary["accuracy"]).all() and (summary["oracle_gain"] >= 0).all()
    shown = variation_table(summary)
    assert list(shown.index) == ["easy", "hard"] and shown.loc["easy", "oracle gain (points)"].startswith("+")
    supported, text = c1_verdict(summary)
    assert supported and text.startswith("C1 supported") and "hard" in text and "easy" in text
    same, text = c1_verdict(variation_summary({"a": easy, "b": easy}, n_boot=300))
    assert not same and "overlapping" in text
    assert c1_verdict(summary.iloc[:1])[0] is False


def test_bad_arguments():
    fs = _planted(n=40)
    with pytest.raises(ValueError, match="at least one seed"):
        run_agreement_study(fs, seeds=[])
    empty = AgreementStudy(*(None,) * 3)
    with pytest.raises(ValueError, match="valid: agreement"):
        empty.matrix("correlation")


def test_mean_std_labels():
    import pandas as pd

    df = pd.DataFrame({"m": ["x", "x", "y"], "v": [0.5, 0.7, 0.9]})
    out = mean_std(df, ["m"], "v").set_index("m")
    assert out.loc["x", "mean ± std"] == "0.600 ± 0.141" and out.loc["y", "std"] == 0.0
