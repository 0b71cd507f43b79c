"""The figures of notebooks 01, 02 and 04 fit the book's column: at most two panels a row, the column's
width, no wider than about twice their height once laid out, labelled axes and no text under 9.5 pt.
Each is drawn from small synthetic frames of the shape its notebook passes, for 1, 3 and 4 datasets."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from fusion_lib.book.chapters import study_figures as sf  # noqa: E402
from fusion_lib.book.figures import COLUMN_WIDTH, figure, interval_bars  # noqa: E402
from fusion_lib.studies.ablations import ABLATION_COLUMNS, summarize  # noqa: E402
from fusion_lib.studies.agreement import AgreementStudies, AgreementStudy  # noqa: E402
from fusion_lib.studies.runs import EXPERTS, StudyRun  # noqa: E402

DATASETS = ["fashion_mnist", "cifar_cats_dogs", "digits", "mnist"]
BACKBONES = ["tf_efficientnet_lite0", "keras_xception", "fid_inception_v3", "squeezenet1_1"]
ZOO_EXTRA = ["tf_efficientnet_lite1", "tf_efficientnet_lite2"]
SEEDS = [0, 1, 2]
MAX_ASPECT = 2.2  # browser_check's LIMITS["aspect"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- what every figure must satisfy


def check_fits_the_column(fig, *, labelled: bool = True, per_row: int = 2) -> None:
    """The figure as the page shows it: laid out (``glue_figure`` calls tight_layout) and cropped to
    its tight bounding box (the inline backend's PNG), legends hanging under it included. At most
    ``per_row`` panels a row (two for plots; an image gallery has more); ``labelled``: every panel has
    an x label, and a y label in the first column."""
    fig.tight_layout()
    width, height = fig.get_size_inches()
    assert width <= COLUMN_WIDTH + 1e-9, f"figure is {width} in wide, the column {COLUMN_WIDTH} in"
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    assert box.width <= COLUMN_WIDTH + 0.05, f"drawn {box.width:.2f} in wide"
    assert box.width / box.height <= MAX_ASPECT, f"{box.width:.2f} x {box.height:.2f} in is too wide"
    # at most two panels a row: count the top-level grid cells that hold an axes (a heatmap's
    # colour bar lives inside its panel's cell)
    cells: dict[int, set[tuple[int, ...]]] = defaultdict(set)
    panels = []
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        assert spec is not None, "every axes sits in the figure's grid"
        top = spec.get_topmost_subplotspec()
        assert top.get_gridspec().ncols <= per_row
        for row in top.rowspan:
            cells[row].add(tuple(top.colspan))
        if not is_colorbar(ax):
            panels.append(ax)
    assert panels and all(len(c) <= per_row for c in cells.values()), dict(cells)
    for ax in panels if labelled else []:
        assert ax.get_xlabel(), f"panel {ax.get_title()!r} has no x label"
        if ax.get_subplotspec().get_topmost_subplotspec().is_first_col():
            assert ax.get_ylabel(), f"panel {ax.get_title()!r} has no y label"
    small = {
        t.get_text(): t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_text() and t.get_visible() and t.get_fontsize() < sf.MIN_FONT
    }
    assert not small, f"text under {sf.MIN_FONT} pt: {small}"


def is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def panels_of(fig) -> list:
    """The figure's panels, colour bars left out."""
    return [ax for ax in fig.axes if not is_colorbar(ax)]


def ax_count_per_row(fig) -> dict[int, int]:
    """Panels per row of the figure's top-level grid."""
    rows: dict[int, int] = defaultdict(int)
    for ax in panels_of(fig):
        rows[ax.get_subplotspec().get_topmost_subplotspec().rowspan.start] += 1
    return dict(rows)


# ---------------------------------------------------------------- synthetic inputs


def accuracy_frame(datasets: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(len(datasets))
    from fusion_lib.data.backbones import short_name

    return pd.DataFrame(
        [
            {"dataset": d, "backbone": short_name(b), "seed": s, "accuracy": rng.uniform(0.6, 0.99)}
            for d in datasets
            for b in BACKBONES
            for s in SEEDS
        ]
    )


def study(dataset: str, backbones: list[str] = BACKBONES) -> AgreementStudy:
    rng = np.random.default_rng(len(dataset))
    acc = pd.DataFrame(
        [{"dataset": dataset, "backbone": b, "seed": s, "accuracy": rng.uniform(0.6, 0.99)}
         for b in backbones for s in SEEDS]
    )  # fmt: skip
    pairs = pd.DataFrame(
        [
            {
                "dataset": dataset,
                "seed": s,
                "a": a,
                "b": b,
                "agreement": 1.0 if a == b else rng.uniform(0.6, 0.95),
                "kappa": 1.0 if a == b else rng.uniform(0.3, 0.9),
                "kappa_correct": 1.0 if a == b else rng.uniform(0.0, 0.5),
                "double_fault": rng.uniform(0.01, 0.2),
            }
            for s in SEEDS
            for a, b in itertools.product(backbones, repeat=2)
        ]
    )
    bounds = pd.DataFrame(
        [{"dataset": dataset, "seed": s, "best_single": 0.9, "mean_single": 0.85, "oracle": 0.97}
         for s in SEEDS]
    )  # fmt: skip
    return AgreementStudy(accuracy=acc, pairs=pairs, bounds=bounds)


def ablation_results(settings: list[str], ablation: str = "gate width") -> pd.DataFrame:
    """Two seeds of 200 test images per setting, the first setting the reference."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1):
        for i, setting in enumerate(settings):
            correct = rng.random(200) < 0.7 + 0.02 * i
            rows.append(
                {
                    "ablation": ablation,
                    "setting": setting,
                    "reference": i == 0,
                    "seed": seed,
                    "inference": "soft",
                    "accuracy": correct.mean(),
                    "val_accuracy": 0.7,
                    "gflops_per_image": 0.5 + i,
                    "gate_params": 100 * 4**i,
                    "gate_mflops": 0.1 * 4**i,
                    "mean_max_gate_weight": 0.6,
                    "alpha": 0.5,
                    "thumbnail_size": 16,
                    "anchor": "prob_avg",
                    "n_train": 100 * (i + 1),
                    "n_test": 200,
                    "n_experts": 4,
                    "correct": correct,
                    "test_ids": np.arange(200),
                }
            )
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


# ---------------------------------------------------------------- notebook 01


@pytest.mark.parametrize("n_backbones", [3, 6, 8])
def test_backbone_cost_figure(n_backbones):
    names = (BACKBONES + ZOO_EXTRA + ["mobilenetv2_dogs", "vgg16_mri"])[:n_backbones]
    backbones = pd.DataFrame(
        {
            "backbone": names,
            "params_m": np.linspace(1, 20, n_backbones),
            "gflops": np.linspace(0.1, 2, n_backbones),
        }
    )
    for input_size in (80, None):
        fig = sf.backbone_cost_figure(backbones, input_size)
        check_fits_the_column(fig)
        assert ax_count_per_row(fig) == {0: 2}
        size = "80 px input" if input_size else "each backbone's own input size"
        assert fig.axes[1].get_title() == f"Cost at {size}"
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0] == "lite0"


@pytest.fixture(scope="module")
def digits():
    from fusion_lib.data.datasets import SplitSizes, load_dataset

    return load_dataset("digits", SplitSizes(30, 10, 10), seed=0)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_class_gallery_figure(digits, n):
    datasets = [dataclasses.replace(digits, name=name) for name in DATASETS[:n]]
    fig = sf.class_gallery_figure(datasets, size=16)
    check_fits_the_column(fig, labelled=False, per_row=5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * 10 * n, "every class of every dataset: its image and its thumbnail"
    assert [ax.get_title() for ax in shown[:5]] == digits.class_names[:5]  # five classes a row
    first = fig.axes[0]
    assert first.get_ylabel() == f"{DATASETS[0]}\nimage"
    assert fig.axes[5].get_ylabel() == "16x16\nthumbnail"
    with pytest.raises(ValueError, match="at least one"):
        sf.class_gallery_figure([], size=16)


# ---------------------------------------------------------------- notebook 02


@pytest.mark.parametrize("n", [1, 3, 4])
def test_accuracy_and_oracle_figures(n):
    datasets = DATASETS[:n]
    fig = sf.accuracy_figure(accuracy_frame(datasets))
    check_fits_the_column(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "lite0",
        "xception",
        "inception",
        "squeezenet",
    ]
    bounds = pd.concat([study(d).bounds for d in datasets], ignore_index=True)
    measures = {
        "mean_single": "mean of the probes",
        "best_single": "best single (chosen on val)",
        "oracle": "oracle",
    }
    fig = sf.oracle_figure(bounds, measures)
    check_fits_the_column(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(measures.values())


@pytest.mark.parametrize("n", [1, 3, 4])
def test_agreement_matrices_figure(n):
    studies = AgreementStudies(StudyRun(d, EXPERTS, study(d), None) for d in DATASETS[:n])
    fig = sf.agreement_matrices_figure(studies)
    check_fits_the_column(fig)
    panels = panels_of(fig)
    assert len(panels) == 3 * n, "one heatmap per dataset and measure"
    titles = [ax.get_title() for ax in panels]
    assert set(titles) == {f"{d}: {label}" for d in studies.datasets for label in sf.MEASURES.values()}
    if n > 1:  # each measure starts its own rows, datasets two a row
        for row in ax_count_per_row(fig).values():
            assert row <= 2
        first_rows = {
            ax.get_subplotspec().get_topmost_subplotspec().rowspan.start
            for ax in panels
            if ax.get_title().endswith("kappa")
        }
        assert min(first_rows) == (n + 1) // 2
    # every panel is annotated with its numbers, two decimals
    assert all(len(ax.texts) == 16 and all(len(t.get_text()) == 4 for t in ax.texts) for ax in panels)


@pytest.mark.parametrize("n_backbones", [3, 8])
def test_candidates_figure(n_backbones):
    names = (BACKBONES + ZOO_EXTRA + ["mobilenetv2_dogs", "vgg16_mri"])[:n_backbones]
    kappa = study("cifar_cats_dogs", names).matrix("kappa")
    fig = sf.candidates_figure(kappa, "cifar_cats_dogs")
    check_fits_the_column(fig)
    assert fig.axes[0].get_title() == "cifar_cats_dogs: pairwise kappa of every offline backbone"


@pytest.mark.parametrize("n", [1, 3, 4])
def test_zoo_and_c1_figures(n):
    datasets = DATASETS[:n]
    zoos = pd.DataFrame(
        [{"dataset": d, "zoo": z, "kappa": 0.5 + 0.1 * i, "oracle_gain": 3.0 + i}
         for d in datasets for i, z in enumerate(["homogeneous", "diverse"])]
    )  # fmt: skip
    fig = sf.zoo_figure(zoos)
    check_fits_the_column(fig)
    assert ax_count_per_row(fig) == {0: 2}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["homogeneous", "diverse"]
    kappas = pd.DataFrame(
        {"dataset": datasets, "kappa_c": 0.2, "low": 0.1, "high": 0.3, "kappa": 0.7, "pairs": 6}
    )
    fig = sf.c1_difficulty_figure(accuracy_frame(datasets), kappas)
    check_fits_the_column(fig)
    assert ax_count_per_row(fig) == {0: 2}
    ranks, _ = fig.axes
    assert ranks.yaxis_inverted()
    backbones, kappa = fig.legends  # one under each panel
    assert [t.get_text() for t in backbones.get_texts()] == ["lite0", "xception", "inception", "squeezenet"]
    assert len(kappa.get_texts()) == 2


# ---------------------------------------------------------------- notebook 04


def test_ablation_accuracy_figures():
    widths = summarize(ablation_results(["channels 16/32", "channels 4/8", "channels 64/128"]), n_boot=200)
    fig = sf.ablation_accuracy_figure(
        widths, x="gate_params", logx=True, xlabel="gate parameters (log scale)", title="digits: width"
    )
    check_fits_the_column(fig)
    assert [t.get_text() for t in fig.axes[0].texts] == list(widths["setting"])  # settings annotated
    thumb = summarize(ablation_results(["chosen on validation", "8 px", "16 px", "32 px"]), n_boot=200)
    fig = sf.ablation_accuracy_figure(
        thumb, x="gate_mflops", logx=True, reference_band=True, xlabel="gate cost", title="digits: thumbnail"
    )
    check_fits_the_column(fig)
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "chosen on validation"
    gating = summarize(ablation_results(["soft", "top-2", "top-1"]), n_boot=200)
    marks = {"lite0": 0.4, "xception": 1.5, "inception": 2.0, "squeezenet": 0.3}
    fig = sf.ablation_accuracy_figure(
        gating, x="gflops_per_image", marks=marks, xlim=(0, None), xlabel="GFLOPs", title="digits: top-k"
    )
    check_fits_the_column(fig)
    assert fig.axes[0].get_xlim()[0] == 0
    assert set(marks) <= {t.get_text() for t in fig.axes[0].texts}
    shrink = summarize(ablation_results(["alpha on validation", "raw gate", "anchor"]), n_boot=200)
    fig = sf.ablation_accuracy_figure(shrink, xlabel="shrinkage", title="digits: shrinkage")
    check_fits_the_column(fig)


@pytest.mark.parametrize("n_settings", [2, 5, 25])
def test_ablation_deltas_figure(n_settings):
    settings = ["reference"] + [
        f"ablation {i}: a setting with a long-ish name" for i in range(n_settings - 1)
    ]
    summary = summarize(ablation_results(settings), n_boot=200)
    fig = sf.ablation_deltas_figure(summary, title="digits: every ablation against its reference")
    check_fits_the_column(fig)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == n_settings - 1  # the reference has no change to draw
    assert fig.get_size_inches()[1] >= 0.3 * (n_settings - 1)


def test_matrices_figure_needs_a_study():
    with pytest.raises(ValueError, match="at least one"):
        sf.agreement_matrices_figure(AgreementStudies([]))


def test_interval_bars_reach_from_low_to_high_on_either_axis():
    frame = pd.DataFrame({"accuracy": [80.0, 90.0], "low": [75.0, 88.0], "high": [82.0, 95.0]})
    for horizontal in (False, True):
        fig, ax = figure()
        interval_bars(ax, [0, 1], frame, horizontal=horizontal, fmt="none")
        (bars,) = ax.collections  # one LineCollection: a segment per row
        ends = sorted(sorted(seg[:, 0 if horizontal else 1]) for seg in bars.get_segments())
        assert ends == [[75.0, 82.0], [88.0, 95.0]]
        plt.close(fig)
