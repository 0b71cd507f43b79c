"""Metrics against hand-computed cases and scikit-learn."""

import numpy as np
import pytest
import sklearn.metrics as skm

from fusion_lib.studies import metrics as M

Y = np.array([0, 0, 1, 1, 2, 2])
A = np.array([0, 1, 1, 1, 2, 0])  # right on 0, 2, 3, 4
B = np.array([0, 0, 2, 1, 1, 0])  # right on 0, 1, 3


def test_accuracy_and_agreement_by_hand():
    assert M.accuracy(Y, A) == pytest.approx(4 / 6)
    assert M.agreement(A, B) == pytest.approx(3 / 6)  # equal at 0, 3, 5


def test_confusion_matrix_matches_sklearn_and_hand():
    cm = M.confusion_matrix(Y, A)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    np.testing.assert_array_equal(M.confusion_matrix(y, p, 5), skm.confusion_matrix(y, p, labels=range(5)))


def test_per_class_accuracy_is_recall_and_nan_for_absent_class():
    np.testing.assert_allclose(M.per_class_accuracy(Y, A, n_classes=4), [0.5, 1.0, 0.5, np.nan])
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    np.testing.assert_allclose(M.per_class_accuracy(y, p), skm.recall_score(y, p, average=None))


def test_cohen_kappa_by_hand_and_sklearn():
    # observed agreement 3/6; marginals A: (2, 3, 1), B: (3, 2, 1) -> chance (6 + 6 + 1) / 36
    p_chance = 13 / 36
    assert M.cohen_kappa(A, B) == pytest.approx((0.5 - p_chance) / (1 - p_chance))
    rng = np.random.default_rng(2)
    a = rng.integers(0, 6, 500)
    b = np.where(rng.random(500) < 0.6, a, rng.integers(0, 6, 500))
    assert M.cohen_kappa(a, b) == pytest.approx(skm.cohen_kappa_score(a, b))
    assert M.cohen_kappa(a, a) == pytest.approx(1.0)


def test_double_fault_and_oracle_by_hand():
    # A wrong on 1, 5; B wrong on 2, 4, 5 -> both wrong on 5 only
    assert M.double_fault(A, B, Y) == pytest.approx(1 / 6)
    # someone right on 0, 1, 2, 3, 4; nobody on 5
    assert M.oracle_accuracy({"a": A, "b": B}, Y) == pytest.approx(5 / 6)
    assert M.oracle_accuracy([A], Y) == pytest.approx(M.accuracy(Y, A))


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=100)
    y = rng.integers(0, 4, 100)
    assert M.log_loss(p, y) == pytest.approx(skm.log_loss(y, p, labels=range(4)))


def test_ece_and_reliability_by_hand():
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.55, 0.45], [0.45, 0.55]])
    y = np.array([0, 1, 0, 1])
    # bin (0.8, 0.9]: conf 0.85, acc 0.5 -> gap 0.35 (2 examples); bin (0.5, 0.6]: conf 0.55, acc 1 -> gap 0.45 (2)
    assert M.expected_calibration_error(probs, y, n_bins=10) == pytest.approx((0.35 * 2 + 0.45 * 2) / 4)
    table = M.reliability_diagram(probs, y, n_bins=10)
    assert len(table) == 10 and table["count"].sum() == 4
    row = table[table["count"] == 2].iloc[-1]
    assert row["confidence"] == pytest.approx(0.85) and row["accuracy"] == pytest.approx(0.5)
    assert table.loc[table["count"] == 0, "accuracy"].isna().all()


def test_ece_is_zero_for_perfectly_calibrated_bins():
    # confidence 0.75 with 3 of 4 right in that bin
    probs = np.tile([0.75, 0.25], (4, 1))
    assert M.expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_pairwise_matrices():
    preds = {"a": A, "b": B}
    agree = M.agreement_matrix(preds)
    assert list(agree.index) == ["a", "b"] and agree.loc["a", "b"] == pytest.approx(0.5)
    assert np.allclose(np.diag(agree), 1.0)
    kappa = M.kappa_matrix(preds)
    assert kappa.loc["a", "b"] == pytest.approx(kappa.loc["b", "a"])
    df = M.double_fault_matrix(preds, Y)
    assert df.loc["a", "a"] == pytest.approx(1 - M.accuracy(Y, A))  # diagonal is the error rate
    assert df.loc["a", "b"] == pytest.approx(1 / 6)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="same length"):
        M.accuracy(Y, A[:4])
    with pytest.raises(ValueError, match="integer class indices"):
        M.accuracy(Y, A.astype(float))
    with pytest.raises(ValueError, match="same length"):
        M.expected_calibration_error(np.full((3, 2), 0.5), Y)
    with pytest.raises(ValueError, match="entries like y_true"):
        M.oracle_accuracy({"a": A[:3]}, Y)
    with pytest.raises(ValueError, match="n_classes"):
        M.confusion_matrix(Y, A, n_classes=2)
