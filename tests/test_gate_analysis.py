"""Gate analysis on weights whose answers are known by construction."""

import numpy as np
import pandas as pd
import pytest

from fusion_lib.studies.gate_analysis import favourite_images, gate_by_class


def test_gate_by_class_means_per_class():
    w = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.4, 0.6]])
    table = gate_by_class(w, np.array([0, 0, 1, 1]), ["cat", "dog"], ["a", "b"])
    assert table.loc["cat", "a"] == pytest.approx(0.9) and table.loc["dog", "b"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="aligned"):
        gate_by_class(w, np.array([0, 1]), ["cat", "dog"], ["a", "b"])
    with pytest.raises(ValueError, match="expert names"):
        gate_by_class(w, np.array([0, 0, 1, 1]), ["cat", "dog"], ["a"])


def test_favourite_images_best_first_and_stable():
    w = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.5, 0.5]])
    fav = favourite_images(w, k=2)
    assert fav.tolist() == [[0, 1], [2, 1]]
    with pytest.raises(ValueError, match="k must be"):
        favourite_images(w, k=9)
    with pytest.raises(ValueError, match="n_images, n_experts"):
        favourite_images(np.zeros(3))


def test_gate_usage_detects_collapse_and_spread():
    from fusion_lib.studies.gate_analysis import gate_usage

    collapsed = gate_usage(np.tile([1.0, 0.0, 0.0, 0.0], (5, 1)))
    assert collapsed == {"mean_max_weight": 1.0, "effective_experts": 1.0}
    spread = gate_usage(np.full((5, 4), 0.25))
    assert spread["effective_experts"] == pytest.approx(4.0) and spread["mean_max_weight"] == 0.25
    hard_but_balanced = gate_usage(np.eye(4))  # each image one expert, every expert used
    assert hard_but_balanced["mean_max_weight"] == 1.0 and hard_but_balanced[
        "effective_experts"
    ] == pytest.approx(4.0)


def test_routing_auc_sees_the_planted_signal_and_its_absence():
    from test_experiment import planted

    from fusion_lib.fusion import baselines
    from fusion_lib.fusion.training import TrainConfig
    from fusion_lib.fusion.two_stage import expert_outputs
    from fusion_lib.studies.gate_analysis import routing_auc

    fs, _ = planted(sizes=(480, 240, 120))
    train = TrainConfig(epochs=20, lr=0.01, batch_size=128)
    probes = baselines.fit_single_probes(fs, 0, train)
    ex = expert_outputs(fs, probes, baselines.oof_train_probs(fs, 0, train, n_folds=3))
    auc = routing_auc(fs, ex, 0, train).set_index(["input", "expert"])["auc"]
    assert (auc.loc["thumbnail"] > 0.75).all()  # brightness says which backbone sees the class
    rng = np.random.default_rng(0)
    for s in fs.thumbnails:  # shuffled thumbnails carry no routing signal
        fs.thumbnails[s] = fs.thumbnails[s][rng.permutation(len(fs.thumbnails[s]))]
    shuffled = routing_auc(fs, ex, 0, train).set_index(["input", "expert"])["auc"]
    assert (shuffled.loc["thumbnail"] < 0.65).all()


def test_routing_auc_does_not_depend_on_what_trained_before():
    """Its models are built after seeding, so it gives the same numbers whether the fits before it ran
    or came from the fit cache (which leaves torch's global generator elsewhere)."""
    import torch
    from test_experiment import planted

    from fusion_lib.fusion import baselines
    from fusion_lib.fusion.training import TrainConfig
    from fusion_lib.fusion.two_stage import expert_outputs
    from fusion_lib.studies.gate_analysis import routing_auc

    fs, _ = planted()
    train = TrainConfig(epochs=3)
    ex = expert_outputs(
        fs, baselines.fit_single_probes(fs, 0, train), baselines.oof_train_probs(fs, 0, train)
    )
    runs = []
    for state in (1, 2):
        torch.manual_seed(state)
        runs.append(routing_auc(fs, ex, 0, train))
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)


def test_gap_closed_scales_averaging_to_zero_and_oracle_to_one():

    from fusion_lib.studies.gate_analysis import gap_closed

    acc = pd.DataFrame(
        {
            "method": ["prob_avg", "oracle", "gate", "bad"] * 2,
            "seed": [0] * 4 + [1] * 4,
            "value": [0.8, 0.9, 0.85, 0.75, 0.7, 0.9, 0.9, 0.7],
        }
    )
    g = gap_closed(acc, ["gate", "bad"]).set_index(["seed", "method"])["gap_closed"]
    assert g[(0, "gate")] == pytest.approx(0.5) and g[(1, "gate")] == pytest.approx(1.0)
    assert g[(0, "bad")] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="run those methods"):
        gap_closed(acc, ["missing"])
