"""Notebook 03's figures: drawn for the column (at most two panels a row, never a strip) from a real
run on a planted feature set, and the gallery shows the images where the experts disagree."""

from __future__ import annotations

from dataclasses import replace

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from configs import experiment  # noqa: E402

from fusion_lib.book.chapters import moe_figures  # noqa: E402
from fusion_lib.book.figures import COLUMN_WIDTH, MAX_COLUMNS, panel_grid  # noqa: E402
from fusion_lib.data.datasets import SplitSizes, from_arrays  # noqa: E402
from fusion_lib.studies.claims import ZOO_PAIRS  # noqa: E402
from fusion_lib.studies.gate_analysis import disagreement_examples  # noqa: E402
from fusion_lib.studies.registry import SINGLE_PREFIX  # noqa: E402
from fusion_lib.studies.runner import run_experiment  # noqa: E402
from fusion_lib.studies.study import Study  # noqa: E402

SIGNAL = {"a": 1.2, "b": 0.8, "c": 0.5}
METHODS = [
    *(f"{SINGLE_PREFIX}{b}" for b in SIGNAL),
    "best_single",
    "prob_avg",
    "best_fixed",
    "moe_thumbnail",
    "oracle",
]


@pytest.fixture(scope="module")
def runs(make_planted):
    pools = {
        name: make_planted(SIGNAL, n_classes=3, sizes=(150, 60, 90), seed=i, thumb_size=16)
        for i, name in enumerate(["one", "two", "three"])
    }
    config = experiment(methods=METHODS, seeds=[0, 1], epochs=8)
    return Study.of(
        list(pools),
        lambda name: (run_experiment(config, feature_set=pools[name], progress=False), pools[name]),
    )


def _check_layout(fig, n_panels: int | None = None) -> None:
    """At most two panels a row, the column's width, no strip, and every data panel's axes labelled."""
    width, height = fig.get_size_inches()
    assert width <= COLUMN_WIDTH + 1e-9
    assert width / height <= 2.2
    panels = [ax for ax in fig.axes if ax.get_subplotspec() is not None and ax.get_label() != "<colorbar>"]
    columns = {ax.get_subplotspec().colspan.start for ax in panels}
    assert max(columns) < MAX_COLUMNS
    if n_panels is not None:
        assert len(panels) == n_panels


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_panel_grid_wraps_panels_two_a_row(n):
    fig, axes = panel_grid(n)
    assert len(axes) == n == len(fig.axes)
    assert max(ax.get_subplotspec().colspan.start for ax in axes) == min(n, 2) - 1
    assert fig.get_size_inches()[0] == COLUMN_WIDTH
    with pytest.raises(ValueError, match="at most 2 panels a row"):
        panel_grid(n, columns=3)
    with pytest.raises(ValueError, match="number of panels"):
        panel_grid(0)


def test_notebook_three_figures_fit_the_column(runs):
    comparisons = runs.compare_pairs()
    _check_layout(moe_figures.forest_figure(comparisons), 3)
    zoos = Study([*(replace(r, zoo="all") for r in runs.runs), *(replace(r, zoo="two") for r in runs.runs)])
    _check_layout(moe_figures.zoo_forest_figure(zoos.compare_pairs(ZOO_PAIRS)), 3)
    assert not zoos.diversity_effect(high="all", low="two").empty
    _check_layout(moe_figures.gate_by_class_figure(runs, 0, "moe_thumbnail"))
    frontier = runs.frontier()
    _check_layout(moe_figures.frontier_figure(frontier), 3)
    assert list(dict.fromkeys(frontier["dataset"])) == runs.datasets and frontier["on_frontier"].any()
    assert not frontier["on_frontier"].all()  # some method is dominated on each dataset
    fav = moe_figures.favourites_figure(runs, 0, "moe_thumbnail", n=4)
    assert fav.get_size_inches()[0] == COLUMN_WIDTH and len(fav.axes) == 4 * 3 * len(SIGNAL)


def test_gallery_shows_disagreements_with_the_gates_weights(runs):
    run = runs.result("one")
    examples = disagreement_examples(run, 0, "moe_thumbnail", n=3)
    rows = examples["row"].unique()
    assert len(rows) == 3 and len(examples) == 3 * len(SIGNAL)
    labels = run.labels[0]["test"]
    for row in rows:
        part = examples[examples["row"] == row]
        assert part["right"].any() and not part["right"].all()  # the experts disagree on it
        assert (part["label"] == labels[row]).all()
        np.testing.assert_allclose(part["weight"], run.outputs[("moe_thumbnail", 0)].gate_weights[row])
        assert (part["right"] == (part["prediction"] == labels[row])).all()
    # half (rounded up) fused right, the rest fused wrong, when there are enough of each
    fused_right = examples.groupby("row")[["fused", "label"]].first().eval("fused == label")
    assert fused_right.sum() >= 1
    assert disagreement_examples(run, 0, "moe_thumbnail", n=3).equals(examples)  # seeded
    with pytest.raises(ValueError, match="no per-image gate weights"):
        disagreement_examples(run, 0, "prob_avg")

    rng = np.random.default_rng(0)
    images = {
        name: from_arrays(
            name,
            rng.integers(0, 255, (400, 20, 20, 3), dtype=np.uint8),
            np.arange(400) % 3,
            r.pool.class_names,
            SplitSizes(150, 60, 90),
        )
        for name, r in ((r.dataset, r) for r in runs.runs)
    }
    fig = moe_figures.disagreement_gallery(runs, images.__getitem__, seed=0, n=2)
    _check_layout(fig, 2 * 2 * len(runs.runs))
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith("fused: ") for t in titles) == 2 * len(runs.runs)
    one = runs.get("one").pool
    shown = moe_figures.stored_test_images(images["one"], one.draw(0), [0, 5])
    assert shown[0].shape == (20, 20, 3) and shown[0].dtype == np.uint8
    assert moe_figures.gate_view(one.thumbnails["test"][:2], 8).shape == (2, 8, 8, 3)
