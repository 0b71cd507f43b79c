"""Two-stage mixtures: calibration, out-of-fold gate training, shrinkage, noisy top-k, confidence inputs."""

import numpy as np
import pytest
from test_experiment import planted

from fusion_lib.fusion import baselines
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.fusion.two_stage import (
    TwoStageConfig,
    TwoStageMoE,
    confidence_inputs,
    expert_outputs,
    fit_temperature,
)

TRAIN = TrainConfig(epochs=20, lr=0.01, batch_size=128)


@pytest.fixture(scope="module")
def setup():
    fs, _ = planted()
    probes = baselines.fit_single_probes(fs, 0, TRAIN)
    oof = baselines.oof_train_probs(fs, 0, TRAIN, n_folds=3)
    return fs, probes, oof, expert_outputs(fs, probes, oof)


def test_temperature_scaling_undoes_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5))
    y = np.array([rng.choice(5, p=np.exp(r) / np.exp(r).sum()) for r in logits])
    assert fit_temperature(3.0 * logits, y) == pytest.approx(3.0, rel=0.15)


def test_expert_outputs_use_out_of_fold_train_probabilities(setup):
    fs, probes, oof, ex = setup
    assert ex.log_probs["train"].shape == (len(fs.labels["train"]), 2, fs.n_classes)
    np.testing.assert_allclose(ex.probs("train").sum(2), 1.0, atol=1e-5)
    y = fs.labels["train"]
    for k, b in enumerate(fs.backbones):
        # the train outputs are the out-of-fold ones (temperature keeps the argmax) ...
        np.testing.assert_array_equal(ex.log_probs["train"][:, k].argmax(1), oof[b].argmax(1))
        # ... which are right less often than the in-sample probe on its own train images
        assert (oof[b].argmax(1) == y).mean() < (probes[b]["train"].argmax(1) == y).mean()
    with pytest.raises(ValueError, match="out-of-fold"):
        expert_outputs(fs, probes, {})


def test_alpha_zero_is_calibrated_averaging(setup):
    fs, _, _, ex = setup
    m = TwoStageMoE(TwoStageConfig(gate="thumbnail", thumbnail_sizes=(8,), alphas=(0.0,)), TRAIN).fit(fs, ex)
    np.testing.assert_allclose(m.predict_proba(fs, ex, "test"), ex.probs("test").mean(1), atol=1e-6)


def test_thumbnail_gate_learns_the_planted_routing(setup):
    fs, probes, _, ex = setup
    m = TwoStageMoE(TwoStageConfig(gate="thumbnail", thumbnail_sizes=(8,)), TRAIN).fit(fs, ex)
    acc = (m.predict_proba(fs, ex, "test").argmax(1) == fs.labels["test"]).mean()
    avg = (ex.probs("test").mean(1).argmax(1) == fs.labels["test"]).mean()
    assert m.alpha_ > 0.5 and acc > avg + 0.02 and acc > 0.97
    # the bright images are backbone b's: the gate puts most weight there
    w = m.gate_weights(fs, ex, "test")
    bright = fs.thumbnails["test"][:, 0, 0, 0] > 0.5
    assert w[bright, 1].mean() > 0.7 and w[~bright, 0].mean() > 0.7
    assert m.expected_gflops(fs, ex, "test", top_k=1) < m.expected_gflops(fs, ex, "test")


def test_noisy_top_k_runs_exactly_k_experts(setup):
    fs, _, _, ex = setup
    m = TwoStageMoE(
        TwoStageConfig(gate="thumbnail", thumbnail_sizes=(8,), noisy_top_k=1, shrink=False), TRAIN
    ).fit(fs, ex)
    w = m.gate_weights(fs, ex, "test")
    assert ((w > 0).sum(1) == 1).all()
    assert m.expected_gflops(fs, ex, "test") < sum(fs.backbone_gflops.values())


def test_confidence_gate_reads_expert_outputs(setup):
    fs, _, _, ex = setup
    conf = confidence_inputs(ex.log_probs["val"])
    assert conf.shape == (len(fs.labels["val"]), 4) and (conf >= 0).all() and (conf <= 1 + 1e-6).all()
    m = TwoStageMoE(TwoStageConfig(gate="thumbnail+confidence", thumbnail_sizes=(8,)), TRAIN).fit(fs, ex)
    assert m.needs_all_backbones
    assert m.expected_gflops(fs, ex, "test", top_k=1) == pytest.approx(
        sum(fs.backbone_gflops.values()) + m.gate_flops / 1e9
    )


def test_thumbnail_size_is_chosen_on_validation(setup):
    fs, _, _, ex = setup
    m = TwoStageMoE(TwoStageConfig(gate="thumbnail", thumbnail_sizes=(8, 16)), TRAIN).fit(fs, ex)
    assert m.size_ in (8, 16) and np.isfinite(m.val_nll_)
    # each size is its own fit: the chosen one equals the single-size recipe, which SeedRun shares
    single = {s: m.for_size(s).fit(fs, ex) for s in (8, 16)}
    assert m.val_nll_ == min(f.val_nll_ for f in single.values())
    np.testing.assert_array_equal(
        m.gate_weights(fs, ex, "test"), single[m.size_].gate_weights(fs, ex, "test")
    )


def test_seed_run_shares_single_size_fits():
    from test_experiment import small_config

    from fusion_lib.studies.methods import two_stage_config
    from fusion_lib.studies.seed_run import SeedRun

    fs, _ = planted()
    run = SeedRun(fs, 0, small_config(epochs=5), None)
    stored = 16  # thumbnails are upsampled from the planted 8 px, so sizes 8 and 16 are both tried
    chosen = run.two_stage(two_stage_config("moe_thumbnail", stored, len(fs.backbones)))
    fixed = run.two_stage(two_stage_config("moe_thumbnail_oof", stored, len(fs.backbones)))
    sizes = chosen.sizes
    thumbnail_fits = [c for c in run._two_stage if c.gate == "thumbnail"]  # the anchor adds a static gate
    assert len(sizes) > 1 and len(thumbnail_fits) == len(sizes) + 1  # one fit per size, plus the choice
    assert fixed is run._two_stage[chosen.for_size(stored).config]  # the largest size is moe_thumbnail_oof
    assert chosen.model_ is run._two_stage[chosen.for_size(chosen.size_).config].model_


def test_bad_recipes_are_rejected():
    with pytest.raises(ValueError, match="unknown two-stage gate"):
        TwoStageConfig(gate="pixels")
    with pytest.raises(ValueError, match="multiple of 8"):
        TwoStageConfig(thumbnail_sizes=(12,))
    with pytest.raises(ValueError, match="alphas"):
        TwoStageConfig(alphas=(1.5,))
