"""The recommendation (``studies.recommend``) on planted results: the cheapest method within the margin of
the best on validation, confirmed on test or called indistinguishable; leave-one-out drops a backbone that
sees nothing; the per-class table counts the images gained and lost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from configs import experiment
from conftest import planted_feature_set

from fusion_lib.studies.recommend import leave_one_out, per_class_changes, recommend
from fusion_lib.studies.registry import MethodOutput
from fusion_lib.studies.runner import RESULT_COLUMNS, ExperimentResult, run_experiment

# method: (validation accuracy, GFLOPs per image)
PLANTED = {
    "single:a": (0.80, 1.0),
    "single:b": (0.70, 2.0),
    "best_single": (0.80, 1.0),
    "concat": (0.85, 2.5),
    "prob_avg": (0.900, 3.0),
    "moe_thumbnail": (0.902, 3.1),  # the best on validation, but prob_avg is within 0.5 points and cheaper
    "oracle": (0.99, 3.0),  # never a candidate
    "best_fixed": (0.900, 2.9),  # a rule, not a method: never recommended though cheaper and as good
}


def _result(
    test_gain: int, n: int = 400, seeds: tuple[int, ...] = (0, 1), test_loss: int = 0
) -> ExperimentResult:
    """Seeds of ``n`` test images each (the same images); the single backbones are right on the first
    three quarters of them, the fusions on ``test_gain`` more and on ``test_loss`` of those fewer."""
    rows, outputs, labels = [], {}, {}
    for seed in seeds:
        y = np.zeros(n, dtype=np.int64)
        labels[seed] = {"val": y, "test": y}
        for method, (val, gflops) in PLANTED.items():
            single = method.startswith("single") or method == "best_single"
            right = 3 * n // 4 + (0 if single else test_gain)
            preds = np.where((np.arange(n) < right) & (single or np.arange(n) >= test_loss), 0, 1)
            outputs[(method, seed)] = MethodOutput(
                preds={"val": preds, "test": preds}, gflops_per_image=gflops
            )
            rows += [
                ("planted", method, seed, "val_accuracy", val),
                ("planted", method, seed, "accuracy", float(np.mean(preds == 0))),
                ("planted", method, seed, "gflops_per_image", gflops),
            ]
    ids = {s: np.arange(n) for s in seeds}  # the same images in every seed
    return ExperimentResult(pd.DataFrame(rows, columns=RESULT_COLUMNS), outputs, labels, image_ids=ids)


def test_the_cheapest_method_within_the_margin_confirmed_on_test():
    advice = recommend(_result(test_gain=40))
    assert (advice.method, advice.best, advice.single, advice.compared) == (
        "prob_avg",
        "moe_thumbnail",
        "single:a",
        "prob_avg",
    )
    assert not {"oracle", "best_single", "best_fixed"} & set(advice.candidates.index)
    assert advice.distinguishable and advice.gain.diff == pytest.approx(10.0)
    assert advice.sentence().startswith("Use prob_avg: the cheapest method within 0.5 points")
    assert "3.00 GFLOPs per image" in advice.sentence()
    # a wider margin lets the cheaper concat in; a narrower one only the best
    assert recommend(_result(test_gain=40), margin=6.0).method == "concat"
    assert recommend(_result(test_gain=40), margin=0.1).method == "moe_thumbnail"


def test_nothing_distinguishable_when_the_interval_straddles_zero():
    advice = recommend(_result(test_gain=3, n=60, seeds=(0,), test_loss=2))
    assert not advice.distinguishable and advice.gain.low < 0 < advice.gain.high
    sentence = advice.sentence()
    assert sentence.startswith("Nothing is distinguishable on these images")
    assert f"{advice.width():.1f} points wide with 60 test images" in sentence
    assert f"about {advice.width(2):.1f} with 2 times" in sentence and "1/sqrt(images)" in sentence
    assert advice.width(4) == pytest.approx(advice.width() / 2)
    assert "the single backbone a (1.00 GFLOPs per image)" in sentence


def test_a_single_backbone_recommended_when_fusion_adds_nothing_on_validation():
    result = _result(test_gain=0)
    result.metrics.loc[result.metrics["method"] == "single:a", "value"] = result.metrics.loc[
        result.metrics["method"] == "single:a", "value"
    ].where(result.metrics["metric"] != "val_accuracy", 0.905)
    advice = recommend(result)
    assert advice.method == "single:a" and advice.compared == "moe_thumbnail"
    assert advice.sentence().startswith("Use the single backbone a (1.00 GFLOPs per image)")


def test_leave_one_out_drops_a_backbone_that_sees_nothing():
    fs = planted_feature_set({"a": 1.2, "b": 1.2, "noise": 0.0}, sizes=(300, 300, 60), seed=2)
    config = experiment(seeds=[0], epochs=20, methods="single:a,single:b,single:noise,best_single,prob_avg")
    result = run_experiment(config, feature_set=fs, progress=False)
    table = leave_one_out(result, fs, config, "prob_avg", margin=1.0)
    assert list(table.index) == ["a", "b", "noise"] and table.attrs["method"] == "prob_avg"
    assert table.loc["noise", "droppable"] and not table.loc["a", "droppable"]
    advice = recommend(result, margin=1.0, leave_one_out=table)
    assert advice.method == "prob_avg" and advice.droppable == ["noise"]
    assert "it could drop noise" in advice.sentence()
    with pytest.raises(ValueError, match="nothing to leave out"):
        leave_one_out(result, fs, config, "single:a")


def test_per_class_changes_count_images_gained_and_lost():
    y = np.array([0, 0, 0, 1, 1, 2])
    fused = np.array([0, 0, 1, 1, 0, 2])  # right on 0, 1, 3, 5
    single = np.array([1, 0, 0, 0, 0, 2])  # right on 1, 2, 5
    outputs = {
        ("prob_avg", 0): MethodOutput(preds={"val": fused, "test": fused}),
        ("best_single", 0): MethodOutput(preds={"val": single, "test": single}),
    }
    result = ExperimentResult(pd.DataFrame(columns=RESULT_COLUMNS), outputs, {0: {"val": y, "test": y}})
    table = per_class_changes(result, "prob_avg", ["cat", "dog", "owl"])
    assert table.loc["cat", ["tests", "gained", "lost", "net"]].tolist() == [3, 1, 1, 0]
    assert table.loc["dog", ["tests", "gained", "lost", "net"]].tolist() == [2, 1, 0, 1]
    assert table.loc["owl", ["gained", "lost"]].tolist() == [0, 0]
    assert table.index[0] == "dog"  # most helped first
    assert table.loc["cat", "prob_avg %"] == pytest.approx(200 / 3)
