"""Subset averages chosen on validation, the Pareto frontier and its plot, on planted probabilities."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fusion_lib.data.feature_set import FeatureSet  # noqa: E402
from fusion_lib.studies.frontier import (  # noqa: E402
    best_subset_average,
    best_subsets,
    choose_on_validation,
    pareto_mask,
    plot_frontier,
    runner_points,
    subset_points,
    subset_table,
)
from fusion_lib.studies.runner import TOP_K_COLUMNS  # noqa: E402

C, N = 3, 60
COST = {"a": 1.0, "b": 2.0, "c": 4.0}
# where two probes disagree, the more confident one wins the average
CONFIDENCE = {"a": 0.9, "b": 0.8, "c": 0.7}


def planted(correct: dict[str, dict[str, np.ndarray]]):
    """A FeatureSet and probes whose probe for backbone b is right exactly where correct[b][split]."""
    labels = {s: np.arange(N) % C for s in ("train", "val", "test")}
    feats = {s: {b: np.zeros((N, 1), np.float32) for b in COST} for s in labels}
    fs = FeatureSet("planted", list(COST), [f"c{i}" for i in range(C)], feats, labels, {}, dict(COST))
    probes = {}
    for b in COST:
        probes[b] = {}
        for s, y in labels.items():
            pred = np.where(correct[b][s], y, (y + 1) % C)
            probes[b][s] = np.where(np.eye(C, dtype=bool)[pred], CONFIDENCE[b], (1 - CONFIDENCE[b]) / (C - 1))
    return fs, probes


def mask(*ranges):
    m = np.zeros(N, bool)
    for lo, hi in ranges:
        m[lo:hi] = True
    return m


@pytest.fixture()
def setup():
    # val: a 40 right, b 30, c 50; test: a 20, b 55, c 50. A pair scores like its more confident
    # member, so a+b and a+c lead on val and b+c on test: choices made on test would differ.
    correct = {
        "a": {"train": mask((0, 60)), "val": mask((0, 40)), "test": mask((0, 20))},
        "b": {"train": mask((0, 60)), "val": mask((0, 30)), "test": mask((0, 55))},
        "c": {"train": mask((0, 60)), "val": mask((10, 60)), "test": mask((0, 50))},
    }
    return planted(correct)


def test_subset_table_scores_every_subset(setup):
    fs, probes = setup
    t = subset_table(probes, fs)
    assert len(t) == 7 and t["size"].value_counts().sort_index().tolist() == [3, 3, 1]
    val, test = dict(zip(t["subset"], t["val_accuracy"])), dict(zip(t["subset"], t["accuracy"]))
    assert val[("a",)] == pytest.approx(40 / N) and test[("c",)] == pytest.approx(50 / N)
    assert val[("a", "b")] == pytest.approx(40 / N) and test[("b", "c")] == pytest.approx(55 / N)
    assert dict(zip(t["subset"], t["gflops"]))[("a", "c")] == 5.0
    assert list(t["subset"])[-1] == ("a", "b", "c")


def test_best_subsets_are_chosen_on_validation_not_test(setup):
    fs, probes = setup
    t = subset_table(probes, fs)
    best = best_subsets(t).set_index("size")
    assert best.loc[1, "subset"] == ("c",)  # best on val (50) though b is best on test (55)
    assert best.loc[2, "subset"] in {("a", "b"), ("a", "c")}  # b+c would win on test
    subset, avg = best_subset_average(probes, fs, 1)
    assert subset == ("c",)
    np.testing.assert_allclose(avg["test"], probes["c"]["test"])
    with pytest.raises(ValueError, match=r"size must be in \[1, 3\]"):
        best_subset_average(probes, fs, 4)


def test_best_subsets_per_seed_and_points(setup):
    fs, probes = setup
    t = subset_table(probes, fs)
    two = pd.concat(
        [
            t.assign(seed=0),
            t.assign(seed=1, val_accuracy=np.where(t["subset"] == ("b",), 1.0, t["val_accuracy"])),
        ]
    )
    best = best_subsets(two)
    assert len(best) == 6
    assert best.set_index(["seed", "size"]).loc[(1, 1), "subset"] == ("b",)
    pts = subset_points(best, names={"c": "C"})
    assert pts["k"].tolist() == [1, 2, 3]
    assert pts.loc[0, "label"] == "avg, best 1 (per seed)"  # seeds chose c and b
    assert pts.loc[0, "gflops"] == pytest.approx((4.0 + 2.0) / 2)
    assert pts.loc[2, "label"] == "avg a+b+C"


def test_ties_in_validation_go_to_lower_nll_then_cheaper():
    t = pd.DataFrame(
        {
            "subset": [("x",), ("y",), ("z",)],
            "size": 1,
            "val_accuracy": [0.9, 0.9, 0.9],
            "val_nll": [0.5, 0.4, 0.4],
            "gflops": [1.0, 3.0, 2.0],
            "accuracy": [0.1, 0.2, 0.3],
        }
    )
    assert best_subsets(t)["subset"].item() == ("z",)
    with pytest.raises(ValueError, match=r"lacks columns \[.val_nll.\]"):
        best_subsets(t.drop(columns="val_nll"))


def test_choose_on_validation():
    assert choose_on_validation({8: [0.90, 0.92], 16: [0.93, 0.91], 32: 0.90}) == 16
    # equal means: the cheaper setting wins, and without costs the first one
    assert choose_on_validation({32: 0.9, 8: 0.9, 16: 0.8}, costs={32: 1.0, 8: 0.1, 16: 0.3}) == 8
    assert choose_on_validation({"x": 0.5, "y": 0.5}) == "x"
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_on_validation({})
    with pytest.raises(ValueError, match="same keys"):
        choose_on_validation({"x": 0.5}, costs={"y": 1.0})


def test_pareto_mask():
    cost = [1, 2, 3, 4, 2, 4]
    acc = [0.5, 0.7, 0.6, 0.9, 0.7, 0.8]
    # (3, 0.6) is beaten by (2, 0.7); (4, 0.8) by (4, 0.9); the two equal points (2, 0.7) both stay
    assert pareto_mask(cost, acc).tolist() == [True, True, False, True, True, False]
    assert pareto_mask([1.0], [0.3]).tolist() == [True]
    with pytest.raises(ValueError, match="aligned"):
        pareto_mask([1, 2], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask([1, np.nan], [0.5, 0.6])


def test_plot_frontier_draws_points_frontier_and_k_labels():
    pts = pd.DataFrame(
        {
            "label": ["a", "b", "avg a+b", "moe top-1", "moe soft"],
            "family": [
                "single backbone",
                "single backbone",
                "subset average",
                "gated mixture",
                "gated mixture",
            ],
            "k": [1, 1, 2, 1, 2],
            "gflops": [1.0, 2.0, 3.0, 1.5, 3.1],
            "accuracy": [0.6, 0.7, 0.75, 0.72, 0.74],
            "low": [0.55, 0.65, 0.7, 0.7, 0.7],
            "high": [0.65, 0.75, 0.8, 0.74, 0.78],
        }
    )
    fig, ax = plt.subplots()
    out = plot_frontier(ax, pts)
    assert out["on_frontier"].tolist() == [True, False, True, True, False]
    texts = [t.get_text() for t in ax.texts]
    assert "moe top-1 (k=1)" in texts and "avg a+b (k=2)" in texts
    frontier = [ln for ln in ax.lines if ln.get_label() == "Pareto frontier"]
    assert len(frontier) == 1
    # the staircase passes through the three frontier points in order of cost
    x, y = frontier[0].get_data()
    assert {(1.0, 0.6), (1.5, 0.72), (3.0, 0.75)} <= set(zip(np.round(x, 3), np.round(y, 3)))
    assert ax.get_xscale() == "log"
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "single backbone",
        "subset average",
        "gated mixture",
        "Pareto frontier",
    }
    plt.close(fig)
    with pytest.raises(ValueError, match=r"points lack columns \[.k.\]"):
        plot_frontier(ax, pts.drop(columns="k"))


def test_runner_points_read_singles_mixtures_top_k_and_skip_the_oracle():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for method, metric, value in [
            ("single:tf_efficientnet_lite0", "accuracy", 0.80),
            ("single:tf_efficientnet_lite0", "gflops_per_image", 0.1),
            ("prob_avg", "accuracy", 0.85),
            ("prob_avg", "gflops_per_image", 0.3),
            ("oracle", "accuracy", 0.95),
            ("oracle", "gflops_per_image", 0.3),
            ("moe_thumbnail", "accuracy", 0.84),
            ("moe_thumbnail", "gflops_per_image", 0.31),
            ("moe_thumbnail_noisy", "accuracy", 0.83),
            ("moe_thumbnail_noisy", "gflops_per_image", 0.2),
            ("moe_thumbnail_noisy", "active_experts", 2.0),
            ("label_space", "accuracy", 0.7),
        ]:
            rows.append(
                {
                    "dataset": "d",
                    "method": method,
                    "seed": seed,
                    "metric": metric,
                    "value": value + (shift if metric.startswith("accuracy") else 0.0),
                }
            )
    top_k = pd.DataFrame(
        [("d", "moe_thumbnail", seed, 1, 0.82 + shift, 0.12) for seed, shift in ((0, 0.0), (1, 0.02))],
        columns=TOP_K_COLUMNS,
    )
    pts = runner_points(
        pd.DataFrame(rows),
        n_backbones=3,
        names={"tf_efficientnet_lite0": "lite0"},
        accuracy_ci=lambda m: (0.0, 50.0, 90.0),
        top_k=top_k,
    ).set_index("label")
    assert list(pts.index) == [
        "lite0",
        "prob_avg",
        "moe_thumbnail",
        "moe_thumbnail top-1",
        "moe_thumbnail_noisy",
    ]
    assert pts.loc["moe_thumbnail top-1", "accuracy"] == pytest.approx(0.83)
    assert pts.loc["lite0", "family"] == "single backbone" and pts.loc["lite0", "k"] == 1
    assert pts.loc["lite0", "accuracy"] == pytest.approx(0.81)  # mean over seeds
    assert pts.loc["prob_avg", "family"] == "other fusion" and pts.loc["prob_avg", "k"] == 3
    assert pts.loc["moe_thumbnail", "k"] == 3 and pts.loc["moe_thumbnail top-1", "k"] == 1
    assert pts.loc["moe_thumbnail top-1", "gflops"] == pytest.approx(0.12)
    assert pts.loc["moe_thumbnail_noisy", "k"] == 2, "a sparse recipe's k is the number of experts it runs"
    assert (pts.loc["prob_avg", "low"], pts.loc["prob_avg", "high"]) == (0.5, 0.9)
    assert np.isnan(pts.loc["moe_thumbnail top-1", "low"])
    with pytest.raises(ValueError, match="lack columns"):
        runner_points(pd.DataFrame({"method": []}), 3)
