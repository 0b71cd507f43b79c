"""Reviewer-grade verdicts: selection that cannot cheat, the gate's anchor, the strongest fixed fusion,
the gate on the cheapest backbone, claim tables and the routing diagnostic on disagreement images."""

import numpy as np
import pandas as pd
import pytest
from test_experiment import planted, small_config
from test_two_stage import TRAIN

from fusion_lib.fusion import baselines
from fusion_lib.fusion.two_stage import Anchor, TwoStageConfig, TwoStageMoE, expert_outputs
from fusion_lib.studies import metrics as M
from fusion_lib.studies.claims import C2_QUESTIONS, claim_word
from fusion_lib.studies.gate_analysis import disagreement_routing, disagreement_table
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.runs import StudyRun
from fusion_lib.studies.seed_run import ANCHORS, NON_ADAPTIVE, SeedRun
from fusion_lib.studies.study import Study

METHODS = [
    *NON_ADAPTIVE,
    "best_single",
    "best_fixed",
    "stacking_val",
    "moe_thumbnail",
    "moe_cheap_feature",
    "oracle",
]


@pytest.fixture(scope="module")
def run():
    fs, _ = planted()
    return fs, run_experiment(small_config(methods=METHODS), feature_set=fs, progress=False)


def test_a_choice_on_validation_never_picks_a_method_fit_on_validation(run):
    _, result = run
    val = result.mean_metric("val_accuracy")
    # stacking_val is fit on validation: its validation accuracy is in-sample and beats every other
    assert val.drop(["oracle"]).idxmax() == "stacking_val"
    best = result.best_on_validation()
    assert best not in ("stacking_val", "oracle")
    assert best == val.drop(["stacking_val", "oracle"]).idxmax()
    with pytest.raises(ValueError, match="cannot choose"):
        result.best_on_validation(["stacking_val", "oracle"])


def test_best_fixed_is_the_fixed_fusion_best_on_each_seeds_validation(run):
    _, result = run
    m = result.metrics
    for seed in result.seeds:
        val = m[(m["seed"] == seed) & (m["metric"] == "val_accuracy")].set_index("method")["value"]
        chosen = NON_ADAPTIVE[
            int(m[(m["seed"] == seed) & (m["metric"] == "chosen_fixed_index")]["value"].iat[0])
        ]
        assert val[chosen] == val[list(NON_ADAPTIVE)].max()
        np.testing.assert_array_equal(
            result.outputs[("best_fixed", seed)].probs["test"], result.outputs[(chosen, seed)].probs["test"]
        )


def test_the_gate_is_shrunk_towards_the_fixed_fusion_with_the_best_validation_nll(run):
    fs, result = run
    for seed in result.seeds:
        y = result.labels[seed]["val"]
        nll = {
            a: M.log_loss(result.outputs[(a, seed)].probs["val"], y)
            for a in ANCHORS
            if (a, seed) in result.outputs
        }
        m = result.metrics
        idx = m[(m["seed"] == seed) & (m["method"] == "moe_thumbnail") & (m["metric"] == "anchor_index")][
            "value"
        ]
        assert ANCHORS[int(idx.iat[0])] == min(nll, key=nll.get)


def test_alpha_zero_returns_the_anchor_itself_and_top_k_renormalises_its_weights():
    fs, _ = planted()
    probes = baselines.fit_single_probes(fs, 0, TRAIN)
    ex = expert_outputs(fs, probes, baselines.oof_train_probs(fs, 0, TRAIN, n_folds=3))
    raw_avg = baselines.prob_average(probes)
    anchor = Anchor("prob_avg", {s: raw_avg[s] for s in ("val", "test")}, np.array([0.25, 0.75]))
    cfg = TwoStageConfig(gate="thumbnail", thumbnail_sizes=(8,), alphas=(0.0,))
    m = TwoStageMoE(cfg, TRAIN).fit(fs, ex, anchor=anchor)
    np.testing.assert_allclose(m.predict_proba(fs, ex, "test"), raw_avg["test"], atol=1e-6)
    np.testing.assert_allclose(
        m.gate_weights(fs, ex, "test"), np.tile([0.25, 0.75], (len(fs.labels["test"]), 1))
    )
    top1 = m.gate_weights(fs, ex, "test", top_k=1)
    assert set(np.unique(top1)) <= {0.0, 1.0}  # one expert runs, with all the anchor's weight
    with pytest.raises(ValueError, match="weighs 3 experts"):
        TwoStageMoE(cfg, TRAIN).fit(fs, ex, anchor=Anchor("x", anchor.probs, np.full(3, 1 / 3)))
    with pytest.raises(ValueError, match="probability vector"):
        Anchor("x", anchor.probs, np.array([0.5, 0.6]))


def test_the_cheap_feature_gate_reads_one_backbone_and_bills_it_under_top_k(run):
    fs, result = run
    r = SeedRun(fs.draw(0), 0, small_config(), None)
    assert r.cheapest == "a"  # 0.1 GFLOPs against 0.3
    out = r.output("moe_cheap_feature")
    model = next(m for c, m in r._two_stage.items() if c.feature_backbones == ("a",))
    assert not model.needs_all_backbones
    # top-1 runs the cheapest backbone on every image, plus "b" where the gate picks it
    picks_b = model.gate_weights(r.fs, r.experts, "test", top_k=1)[:, 1] > 0
    expected = 0.1 + 0.3 * picks_b.mean() + model.gate_flops / 1e9
    assert model.expected_gflops(r.fs, r.experts, "test", top_k=1) == pytest.approx(expected)
    assert out.gflops_per_image == pytest.approx(0.4 + model.gate_flops / 1e9)
    with pytest.raises(ValueError, match="feature_backbones"):
        TwoStageConfig(gate="thumbnail", feature_backbones=("a",))


def test_claims_have_two_questions_holm_words_and_a_pooled_row(run):
    fs, result = run
    study = Study(StudyRun(name, "experts", result, fs) for name in ("one", "two"))
    cmp = study.compare_pairs()
    assert set(cmp["verdict"]) <= {"better", "worse", "equivalent", "inconclusive"}
    assert (cmp["p_holm"] >= cmp["p_value"] - 1e-12).all() and (cmp["p_holm"] <= 1).all()
    assert list(dict.fromkeys(cmp["dataset"])) == ["one", "two"] and set(cmp["zoo"]) == {"experts"}
    table = study.question_table(cmp)
    assert list(table.index) == ["one", "two", "pooled"] and len(table.columns) == len(C2_QUESTIONS)
    assert list(study.question_table(cmp, pooled=False).index) == ["one", "two"]
    d = study.pooled(*C2_QUESTIONS["Does fusion help?"])
    assert d.diff == pytest.approx(result.compare("moe_thumbnail", "best_single").diff)
    assert claim_word(d) in ("supported", "not supported", "equivalent", "inconclusive")
    with pytest.raises(ValueError, match="missing on"):
        study.pooled("moe_thumbnail", "concat_nowhere")
    choices = study.validation_choices()
    assert choices.loc["one"].str.contains("×").all()
    assert set(study.metrics.columns) == {"dataset", "zoo", "method", "seed", "metric", "value"}
    assert list(dict.fromkeys(study.metrics["dataset"])) == ["one", "two"]
    with pytest.raises(ValueError, match="runs once"):
        Study([study.runs[0], study.runs[0]])
    with pytest.raises(ValueError, match="at least one dataset"):
        Study([]).frame(lambda r: r.result.metrics)


def test_disagreement_routing_counts_only_images_where_experts_split():
    # 4 images: both experts right, both wrong, only expert 0 right, only expert 1 right
    correct = [np.array([[1, 1], [0, 0], [1, 0], [0, 1]], bool)]
    weights = {"router": [np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])]}
    fused = {"router": [np.array([1, 0, 1, 1], bool)], "prob_avg": [np.array([1, 0, 1, 0], bool)]}
    t = disagreement_routing(correct, weights, fused).set_index("method")
    assert t["images where experts disagree, %"].iat[0] == pytest.approx(50.0)
    assert t.loc["router", "routes to a right expert, %"].startswith("100.0")
    assert t.loc["prob_avg", "routes to a right expert, %"].startswith("50.0")  # a uniform pick
    assert t.loc["router", "gap closed"] == pytest.approx(1.0)  # 50% -> 100% on the split images
    # an easy dataset: the experts never split, and the table says so instead of stopping the notebook
    easy = disagreement_routing([np.ones((3, 2), bool)], {}, {"prob_avg": [np.ones(3, bool)]})
    assert set(easy["routes to a right expert, %"]) == {"no image to route"}
    assert (easy["images where experts disagree, %"] == 0).all()
    with pytest.raises(ValueError, match="lacks"):
        disagreement_routing(correct, weights, {"router": fused["router"]})


def test_disagreement_table_from_a_run(run):
    _, result = run
    t = disagreement_table(result, ["moe_thumbnail", "moe_cheap_feature"])
    assert list(t["method"]) == ["prob_avg", "moe_thumbnail", "moe_cheap_feature", "oracle"]
    assert isinstance(t, pd.DataFrame)
    with pytest.raises(ValueError, match="no per-image gate weights"):
        disagreement_table(result, ["prob_avg"])
