"""Gate analysis on weights whose answers are known by construction."""
import numpy as np
import pandas as pd
import pytest

from fusion_lib.gate_analysis import favourite_images, gate_by_class, topk_curve


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


def test_topk_curve_from_results():
    rows = []
    for seed in (0, 1):
        rows += [("d", "moe_thumbnail", seed, "accuracy", 0.9), ("d", "moe_thumbnail", seed, "gflops_per_image", 3.0),
                 ("d", "moe_thumbnail", seed, "accuracy_top1", 0.8), ("d", "moe_thumbnail", seed, "gflops_per_image_top1", 1.0),
                 ("d", "prob_avg", seed, "accuracy", 0.85), ("d", "prob_avg", seed, "gflops_per_image", 3.0)]
    df = pd.DataFrame(rows, columns=["dataset", "method", "seed", "metric", "value"])
    curve = topk_curve(df, n_experts=3)
    assert set(curve["method"]) == {"moe_thumbnail"}  # prob_avg reports no top-k, so it is no curve
    one = curve[(curve["seed"] == 0)].set_index("k")
    assert one.loc[1, "accuracy"] == 0.8 and one.loc[3, "gflops_per_image"] == 3.0


def test_gate_usage_detects_collapse_and_spread():
    from fusion_lib.gate_analysis import gate_usage

    collapsed = gate_usage(np.tile([1.0, 0.0, 0.0, 0.0], (5, 1)))
    assert collapsed == {"mean_max_weight": 1.0, "effective_experts": 1.0}
    spread = gate_usage(np.full((5, 4), 0.25))
    assert spread["effective_experts"] == pytest.approx(4.0) and spread["mean_max_weight"] == 0.25
    hard_but_balanced = gate_usage(np.eye(4))  # each image one expert, every expert used
    assert hard_but_balanced["mean_max_weight"] == 1.0 and hard_but_balanced["effective_experts"] == pytest.approx(4.0)
