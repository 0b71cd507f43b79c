"""Gates and the mixture of experts on planted problems with known answers."""

import numpy as np
import pytest
import torch

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.gates import GATES, ThumbnailGate, count_macs, gate_weights, make_gate
from fusion_lib.fusion.moe import MoE, MoEConfig
from fusion_lib.fusion.training import TrainConfig

C, D, T = 4, 16, 16
COST = {"a": 1.0, "b": 2.0}


def planted(seed: int = 0, sizes=(400, 200, 200)) -> tuple[FeatureSet, dict[str, np.ndarray]]:
    """Dark images (cluster 0): only backbone a sees the class; bright images (cluster 1): only b does."""
    rng = np.random.default_rng(seed)
    means = {b: 3.0 * rng.normal(size=(C, D)) for b in COST}
    feats, labels, thumbs, clusters = {}, {}, {}, {}
    for split, n in zip(("train", "val", "test"), sizes):
        y, c = rng.integers(0, C, n), rng.integers(0, 2, n)
        feats[split] = {
            b: (np.where(c[:, None] == k, means[b][y], 0.0) + rng.normal(size=(n, D))).astype(np.float32)
            for k, b in enumerate(COST)
        }
        level = np.where(c == 0, 0.2, 0.8)[:, None, None, None]
        thumbs[split] = np.clip(level + 0.05 * rng.normal(size=(n, 3, T, T)), 0, 1).astype(np.float32)
        labels[split], clusters[split] = y.astype(np.int64), c
    fs = FeatureSet("planted", list(COST), [f"class{i}" for i in range(C)], feats, labels, thumbs, dict(COST))
    return fs, clusters


@pytest.fixture(scope="module")
def problem():
    return planted()


@pytest.fixture(scope="module")
def thumb_moe(problem):
    return MoE(MoEConfig(gate="thumbnail"), TrainConfig()).fit(problem[0], seed=0)


def test_thumbnail_gate_routes_planted_clusters_to_the_right_experts(problem, thumb_moe):
    fs, clusters = problem
    w = thumb_moe.gate_weights(fs, "test")
    assert w.shape == (200, 2) and np.allclose(w.sum(1), 1.0, atol=1e-5)
    assert np.mean(w.argmax(1) == clusters["test"]) > 0.95
    assert np.mean(thumb_moe.predict(fs, "test") == fs.labels["test"]) > 0.9
    # top-1 gating keeps the accuracy and runs one backbone per image: about (1 + 2) / 2 GFLOPs
    assert np.mean(thumb_moe.predict(fs, "test", top_k=1) == fs.labels["test"]) > 0.9
    gflops = thumb_moe.expected_gflops(fs, "test", top_k=1)
    assert 1.3 < gflops < 1.7
    assert thumb_moe.expected_gflops(fs, "test") == pytest.approx(3.0 + thumb_moe.gate_flops / 1e9)


def test_feature_gate_routes_but_saves_no_compute(problem):
    fs, clusters = problem
    moe = MoE(MoEConfig(gate="feature"), TrainConfig()).fit(fs, seed=0)
    assert np.mean(moe.gate_weights(fs, "test").argmax(1) == clusters["test"]) > 0.8
    assert moe.expected_gflops(fs, "test", top_k=1) == pytest.approx(3.0 + moe.gate_flops / 1e9)


def test_expert_outputs_and_mixture_are_consistent(problem, thumb_moe):
    fs, _ = problem
    p_exp, w = thumb_moe.expert_proba(fs, "test"), thumb_moe.gate_weights(fs, "test")
    assert p_exp.shape == (200, 2, C) and thumb_moe.expert_names == ["a", "b"]
    np.testing.assert_allclose((w[:, :, None] * p_exp).sum(1), thumb_moe.predict_proba(fs, "test"), atol=1e-5)


def test_uniform_gate_is_plain_averaging(problem):
    fs, _ = problem
    moe = MoE(MoEConfig(gate="uniform"), TrainConfig(epochs=5)).fit(fs)
    np.testing.assert_allclose(moe.gate_weights(fs, "val"), 0.5)
    np.testing.assert_allclose(moe.predict_proba(fs, "val"), moe.expert_proba(fs, "val").mean(1), atol=1e-6)
    assert moe.gate_params == 0 and moe.gate_flops == 0


def test_static_gate_prefers_the_informative_expert():
    fs, _ = planted(1)
    # make backbone b pure noise everywhere: the static gate should put its weight on a
    for split in fs.features:
        fs.features[split]["b"] = (
            np.random.default_rng(2).normal(size=fs.features[split]["b"].shape).astype(np.float32)
        )
    moe = MoE(MoEConfig(gate="static", aux_weight=0.0), TrainConfig(lr=1e-2)).fit(fs)
    w = moe.gate_weights(fs, "test")
    assert np.allclose(w, w[0]) and w[0, 0] > 0.6
    assert moe.gate_params == 2


def test_training_is_deterministic(problem):
    fs, _ = problem
    cfg, train = MoEConfig(gate="thumbnail", regularizer="entropy"), TrainConfig(epochs=3)
    a = MoE(cfg, train).fit(fs, seed=3).predict_proba(fs, "test")
    b = MoE(cfg, train).fit(fs, seed=3).predict_proba(fs, "test")
    np.testing.assert_array_equal(a, b)


def test_thumbnail_gate_flops_are_counted_exactly_and_tiny():
    gate = ThumbnailGate(n_experts=4, thumbnail_size=32)
    # patch conv 4x4/4: 8*8 outputs * 16 ch * (3*4*4); conv 3x3/2: 4*4 * 32 ch * (16*9); linear 32*4
    expected = 8 * 8 * 16 * 48 + 4 * 4 * 32 * 144 + 32 * 4
    assert gate.flops() == expected == count_macs(gate, torch.zeros(1, 3, 32, 32))
    squeezenet_112_gflops = 0.0875  # SqueezeNet 1.1 at 112 px: 0.35 GMACs at 224 px / 4
    assert gate.flops() / 1e9 < 0.01 * squeezenet_112_gflops
    assert gate.n_params() == sum(p.numel() for p in gate.parameters())


@pytest.mark.parametrize("size", [0, 4, 12, 30])
def test_thumbnail_size_the_gate_cannot_take_is_an_error(size):
    with pytest.raises(ValueError, match="multiple of 8"):
        ThumbnailGate(n_experts=2, thumbnail_size=size)


def test_moe_resizes_thumbnails_to_the_configured_size(problem):
    fs, _ = problem
    moe = MoE(MoEConfig(gate="thumbnail", thumbnail_size=8), TrainConfig(epochs=2)).fit(fs)
    assert moe.model_.gate.thumbnail_size == 8 and moe.predict_proba(fs, "test").shape == (200, C)
    with pytest.raises(ValueError, match="multiple of 8"):
        MoE(MoEConfig(gate="thumbnail", thumbnail_size=6), TrainConfig(epochs=1)).fit(fs)


def test_gate_weights_temperature_and_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    w = gate_weights(logits)
    assert torch.allclose(w.sum(), torch.tensor(1.0))
    hot = gate_weights(logits, temperature=10.0)
    assert hot.max() < w.max()  # a higher temperature flattens the weights
    top2 = gate_weights(logits, top_k=2)
    assert (top2 > 0).sum() == 2 and torch.allclose(top2[0, :2], torch.softmax(logits[0, :2], 0))
    with pytest.raises(ValueError, match="top_k"):
        gate_weights(logits, top_k=5)
    with pytest.raises(ValueError, match="temperature"):
        gate_weights(logits, temperature=0.0)


def test_bad_configuration_errors_name_the_valid_choices(problem):
    with pytest.raises(ValueError, match="valid gates"):
        MoEConfig(gate="attention")
    with pytest.raises(ValueError, match="valid gates"):
        make_gate("attention", 2)
    with pytest.raises(ValueError, match="valid kinds"):
        MoEConfig(expert="transformer")
    with pytest.raises(ValueError, match="class_vecs"):
        MoE(MoEConfig(label_experts=True))
    with pytest.raises(RuntimeError, match="not fitted"):
        MoE().predict_proba(problem[0], "test")
    assert set(GATES) == {"uniform", "static", "feature", "thumbnail"}


def test_mismatched_feature_and_label_lengths_are_an_error(problem):
    fs, _ = problem
    feats = {s: dict(f) for s, f in fs.features.items()}
    feats["train"]["a"] = feats["train"]["a"][:-1]
    with pytest.raises(ValueError, match="aligned"):
        FeatureSet("bad", fs.backbones, fs.class_names, feats, fs.labels, fs.thumbnails)


def test_entropy_regulariser_sign_sharpens_or_softens_the_gate(problem):
    fs, _ = problem

    def mean_entropy(weight: float) -> float:
        cfg = MoEConfig(gate="thumbnail", regularizer="entropy", reg_weight=weight)
        w = MoE(cfg, TrainConfig(epochs=10, patience=10)).fit(fs).gate_weights(fs, "test")
        return float(-(w * np.log(w + 1e-12)).sum(1).mean())

    assert mean_entropy(-1.0) > mean_entropy(1.0)
