"""Baselines on planted problems: probes, best single, concat, averaging, stacking, oracle."""

import numpy as np
import pytest

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion import baselines as B
from fusion_lib.fusion.training import TrainConfig

C, D = 3, 8


@pytest.fixture(scope="module")
def fs(make_planted):
    """Backbone "good" sees the class clearly, "weak" faintly, "noise" not at all."""
    return make_planted(
        {"good": 4.0, "weak": 0.6, "noise": 0.0},
        n_classes=C,
        dim=D,
        class_names="xyz",
        costs={"good": 1.0, "weak": 0.5, "noise": 0.1},
    )


@pytest.fixture(scope="module")
def probes(fs):
    return B.fit_single_probes(fs, seed=0)


def acc(p, y):
    return float(np.mean(p.argmax(1) == y))


def test_single_probes_reflect_what_each_backbone_sees(fs, probes):
    assert set(probes) == {"good", "weak", "noise"}
    assert all(probes[b]["test"].shape == (150, C) for b in probes)
    y = fs.labels["test"]
    assert acc(probes["good"]["test"], y) > 0.95
    assert acc(probes["noise"]["test"], y) < 0.5  # chance is 1/3
    assert acc(probes["good"]["test"], y) > acc(probes["weak"]["test"], y) > acc(probes["noise"]["test"], y)


def test_best_single_is_chosen_on_validation(fs, probes):
    assert B.best_single(probes, fs) == "good"
    # flip which probe looks best on validation only: the choice must follow validation, not test
    swapped = {b: dict(p) for b, p in probes.items()}
    swapped["noise"]["val"], swapped["good"]["val"] = probes["good"]["val"], probes["noise"]["val"]
    assert B.best_single(swapped, fs) == "noise"


def test_concat_and_prob_average(fs, probes):
    y = fs.labels["test"]
    assert acc(B.fit_concat(fs, seed=0)["test"], y) > 0.9
    avg = B.prob_average(probes)
    np.testing.assert_allclose(
        avg["val"], (probes["good"]["val"] + probes["weak"]["val"] + probes["noise"]["val"]) / 3
    )


@pytest.mark.parametrize("source", ["val", "oof"])
def test_stacking_learns_to_trust_the_good_probe(fs, probes, source):
    train = TrainConfig(epochs=20)
    out = B.fit_stacking(fs, probes, source=source, seed=0, train=train, n_folds=3)
    assert np.allclose(out["test"].sum(1), 1.0)
    assert acc(out["test"], fs.labels["test"]) >= acc(probes["good"]["test"], fs.labels["test"]) - 0.03


@pytest.mark.parametrize("source", ["val", "oof"])
def test_stacking_never_sees_test_labels(fs, probes, source):
    train = TrainConfig(epochs=10)
    base = B.fit_stacking(fs, probes, source=source, seed=0, train=train, n_folds=3)["test"]
    labels = dict(fs.labels, test=np.random.default_rng(5).permutation(fs.labels["test"]))
    shuffled = FeatureSet(
        fs.dataset, fs.backbones, fs.class_names, fs.features, labels, fs.thumbnails, fs.backbone_gflops
    )
    np.testing.assert_array_equal(
        B.fit_stacking(shuffled, probes, source=source, seed=0, train=train, n_folds=3)["test"], base
    )


def test_oracle_predictions_by_hand():
    y = np.array([0, 1, 2, 1])
    preds = {"a": np.array([0, 0, 0, 0]), "b": np.array([2, 1, 0, 0])}
    # right somewhere on 0 (a) and 1 (b); nobody on 2 and 3 -> first model's wrong prediction
    np.testing.assert_array_equal(B.oracle_predictions(preds, y), [0, 1, 0, 0])


def test_probes_are_deterministic(fs):
    a = B.fit_probe(fs, "weak", seed=1)[0]
    b = B.fit_probe(fs, "weak", seed=1)[0]
    np.testing.assert_array_equal(B.probe_proba(a, fs, "test", "weak"), B.probe_proba(b, fs, "test", "weak"))


def test_bad_input_errors(fs, probes):
    with pytest.raises(ValueError, match="unknown backbones"):
        B.fit_probe(fs, "resnet50")
    with pytest.raises(ValueError, match="valid sources"):
        B.fit_stacking(fs, probes, source="test")
    with pytest.raises(ValueError, match="entries but y_true"):
        B.oracle_predictions({"a": np.zeros(3, int)}, np.zeros(4, int))


def test_train_statistics_are_computed_once_per_array_and_copied_for_each_caller(monkeypatch):
    import gc

    import torch

    from fusion_lib.fusion import experts as E

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (200, 5)).astype(np.float32)
    calls = []
    real = E._statistics
    monkeypatch.setattr(E, "_statistics", lambda f, floor: calls.append(floor) or real(f, floor))
    a, b = E.Standardize(x), E.Standardize(x)
    assert calls == [0.05] and a.same_as(b)
    torch.testing.assert_close(a.mean, torch.as_tensor(x.mean(0)))
    a.mean += 1.0  # each caller's copy: changing one changes neither the memo nor the other
    for other in (b, E.Standardize(x)):
        torch.testing.assert_close(other.mean, torch.as_tensor(x.mean(0)))
    assert calls == [0.05]
    E.Standardize(x, floor=0.5)  # another floor is another computation
    E.Standardize(x.copy())  # an equal array is not the same array: nothing is served by content
    assert calls == [0.05, 0.5, 0.05]
    key = id(x)
    del x
    gc.collect()
    assert key not in E._STATISTICS  # the entry went with its array


def test_deterministic_mode_skips_the_nan_fill_and_restores_the_settings():
    import torch

    from fusion_lib.fusion.training import deterministic

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory
    assert (
        torch.are_deterministic_algorithms_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    ) == before
