"""The multimodal notebook's figures fit the book's column: drawn from small synthetic frames with the
notebook's columns for 1, 3 and 4 datasets, each has at most two panels a row, the column's width,
an aspect of at most 2.2 (figsize and saved PNG), labelled axes and text of at least 9.5 pt."""

from __future__ import annotations

import functools
import io
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

from fusion_lib.book.chapters import multimodal_figures as mf  # noqa: E402
from fusion_lib.book.figures import COLUMN_WIDTH  # noqa: E402
from fusion_lib.fusion.label_space import LabelSpaceModel  # noqa: E402
from fusion_lib.fusion.training import TrainConfig  # noqa: E402
from fusion_lib.studies.label_study import ZERO_SHOT_MEASURES, cosine_matrix  # noqa: E402

DATASETS = ["digits", "mnist", "fashion_mnist", "cifar_cats_dogs"]
BACKBONES = ["tf_efficientnet_lite0", "squeezenet1_1"]
SHORT = ["lite0", "squeezenet"]
MIN_POINTS = 9.5


@pytest.fixture(autouse=True, scope="module")
def _close_figures():
    yield
    figures.cache_clear()
    plt.close("all")


def _ci(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    acc = rng.uniform(40, 95, n)
    return {"accuracy": acc, "low": acc - rng.uniform(2, 8, n), "high": np.minimum(acc + 5, 100)}


def expert_frame(datasets: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for d in datasets:
        for family, prefix, avg in [
            ("visual", "probe", "prob_avg"),
            ("label space", "label", "label_space"),
            ("random vectors", "random", "random_space"),
        ]:
            for model, backbone in [
                *((f"{prefix}:{b}", s) for b, s in zip(BACKBONES, SHORT)),
                (avg, "average"),
            ]:
                rows.append({"model": model, "dataset": d, "family": family, "backbone": backbone})
    frame = pd.DataFrame(rows)
    frame = frame.assign(**_ci(rng, len(frame)))
    return frame.assign(text=frame["accuracy"].map("{:.2f}".format))


def fused_frame(datasets: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame([{"model": m, "dataset": d} for d in datasets for m in mf.FUSION_METHODS])
    return frame.assign(**_ci(rng, len(frame)))


def gates_frame(datasets: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for d in datasets:
        for seed in (0, 1):
            for model, experts in [
                ("moe_thumbnail_joint", BACKBONES),
                ("moe_thumbnail_label", [*BACKBONES, *(f"label:{b}" for b in BACKBONES)]),
            ]:
                w = rng.dirichlet(np.ones(len(experts)))
                rows += [
                    {"dataset": d, "seed": seed, "model": model, "expert": e, "weight": float(x)}
                    for e, x in zip(experts, w)
                ]
    return pd.DataFrame(rows)


def curve_frames(datasets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    weights = np.round(np.linspace(0, 1, 11), 1)
    curves = pd.DataFrame(
        [
            {
                "dataset": d,
                "seed": s,
                "split": split,
                "weight": w,
                "accuracy": rng.uniform(0.5, 0.9),
                "nll": 1.0,
            }
            for d in datasets
            for s in (0, 1)
            for split in ("val", "test")
            for w in weights
        ]
    )
    blends = pd.DataFrame(
        [{"dataset": d, "seed": s, "weight": 0.3, "weight_random": 0.7} for d in datasets for s in (0, 1)]
    )
    return curves, blends


def zero_shot_frame(datasets: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for d in datasets:
        for m in ZERO_SHOT_MEASURES:
            est = rng.uniform(0.05, 0.8)
            rows.append(
                {
                    "dataset": d,
                    "measure": m,
                    # the harmonic mean is a Python float among numpy floats in the real summary
                    "estimate": float(est) if m == "harmonic" else est,
                    "low": est - 0.05,
                    "high": est + 0.05,
                    "chance": 0.1,
                    "null_mean": est / 2,
                    "null_low": est / 3,
                    "null_high": est / 1.5,
                    "p_value": 0.01,
                }
            )
    frame = pd.DataFrame(rows)
    frame["estimate"] = frame["estimate"].astype(object)
    return frame


def similarities(n: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(5)
    sizes = [10, 2, 25, 10][:n]  # 25 classes: more than a heatmap names
    out = {}
    for i, k in enumerate(sizes):
        vecs = rng.normal(size=(k, 50))
        out[DATASETS[i]] = cosine_matrix(vecs, [f"class {j}" for j in range(k)])
    return out


def views(n: int) -> list[mf.LabelSpaceView]:
    rng = np.random.default_rng(6)
    sizes = [10, 3, 15, 10][:n]  # 15 classes: more than MAX_NAMED are named
    out = []
    for i, k in enumerate(sizes):
        labels = rng.integers(0, k, 120)
        class_xy = rng.normal(size=(k, 2))
        out.append(
            mf.LabelSpaceView(
                class_xy,
                class_xy[labels] + 0.3 * rng.normal(size=(120, 2)),
                labels,
                tuple(f"class {j}" for j in range(k)),
                np.array([0.6, 0.2]),
                "tf_efficientnet_lite0",
                DATASETS[i],
            )
        )
    return out


@functools.cache
def figures(n: int) -> dict[str, tuple[object, int]]:
    """Each figure of the notebook for the first ``n`` datasets, with its expected number of panels
    (drawn once per ``n`` for all the tests here)."""
    ds = DATASETS[:n]
    curves, blends = curve_frames(ds)
    out = {
        "cosine": (mf.cosine_figure(similarities(n)), n),
        "experts": (mf.expert_accuracy_figure(expert_frame(ds), ds, [*SHORT, "average"]), n),
        "fused": (mf.fused_accuracy_figure(fused_frame(ds), ds), n),
        "gates": (mf.gate_weight_figure(gates_frame(ds), ds), 2),
        "curve": (mf.blend_curve_figure(curves, blends, ds, seed=0), n),
        "zero-shot": (mf.zero_shot_figure(zero_shot_frame(ds), ds), n),
        "space": (mf.label_space_figure(views(n), seed=0), n),
    }
    for fig, _ in out.values():
        plt.close(fig)  # as glue_figure does; a closed figure still lays out and draws
    return out


def png_size(fig) -> tuple[int, int]:
    """The pixel size of the PNG the notebook's inline backend saves (``bbox_inches="tight"``: the
    drawn artists' box plus 0.1 in a side), measured without encoding the PNG."""
    box = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer())
    return round((box.width + 0.2) * fig.dpi), round((box.height + 0.2) * fig.dpi)


def test_png_size_is_the_saved_pngs():
    fig = figures(4)["space"][0]
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    saved = Image.open(io.BytesIO(buf.getvalue())).size
    assert all(abs(a - b) <= 2 for a, b in zip(png_size(fig), saved)), (png_size(fig), saved)


def panels(fig) -> list:
    """The figure's panels: its axes without the colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("n", [1, 3, 4])
def test_every_figure_fits_the_column(n):
    for name, (fig, expected) in figures(n).items():
        fig.tight_layout()
        axes = panels(fig)
        assert len(axes) == expected, name
        # at most two panels a row: every panel sits in a grid of at most two columns, two a row
        specs = [ax.get_subplotspec().get_topmost_subplotspec() for ax in axes]
        assert all(s is not None and s.get_gridspec().ncols <= 2 for s in specs), name
        assert max(Counter(s.rowspan.start for s in specs).values()) <= 2, name
        assert all(s.colspan.stop <= 2 for s in specs), name
        width, height = fig.get_size_inches()
        assert width == pytest.approx(COLUMN_WIDTH), name
        assert width / height <= 2.2, f"{name}: figsize {width:.1f} x {height:.1f}"
        px_w, px_h = png_size(fig)
        assert px_w / px_h <= 2.2, f"{name}: PNG {px_w} x {px_h}"
        assert px_w <= 100 * COLUMN_WIDTH + 10, f"{name}: PNG {px_w} px wide, text spills past the figure"
        # labelled: a title and an x label on every panel, a y label on every panel of the first column
        for ax in axes:
            assert ax.get_title(), name
            last_row = ax is axes[-1] or name != "gates"  # the stacked gate heatmaps share one x label
            assert ax.get_xlabel() or not last_row, f"{name}: panel {ax.get_title()} has no x label"
            if ax.get_subplotspec().get_topmost_subplotspec().is_first_col():
                assert ax.get_ylabel(), f"{name}: panel {ax.get_title()} has no y label"
        small = [
            (t.get_text(), t.get_fontsize())
            for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_POINTS
        ]
        assert not small, f"{name}: text under {MIN_POINTS} pt: {small[:5]}"


def test_legends_name_the_series():
    figs = figures(3)
    experts = panels(figs["experts"][0])[0].get_legend()
    assert [t.get_text() for t in experts.get_texts()] == list(mf.FAMILIES)
    zero = panels(figs["zero-shot"][0])[0].get_legend()
    assert [t.get_text() for t in zero.get_texts()] == ["class vectors", "shuffled vectors", "chance"]
    for ax in panels(figs["curve"][0]):
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts == ["val", "test", "chosen w = 0.3"]


def test_heatmaps_write_values_only_where_they_fit_and_name_at_most_twenty_classes():
    digits, cats, many = panels(figures(3)["cosine"][0])
    assert len(cats.texts) == 4  # 2 x 2 cells, wide enough for "0.00"
    assert not digits.texts  # ten classes in half the column: colour only
    assert len(digits.get_xticklabels()) == 10 and not many.get_xticklabels()
    assert "25" in many.get_xlabel()
    alone = panels(figures(1)["cosine"][0])[0]
    assert len(alone.texts) == 100  # one panel spans the column: its ten classes get their values
    summary = mf.cosine_summary(similarities(3))
    assert list(summary.columns) == ["mean", "min", "max"] and list(summary.index) == DATASETS[:3]
    gates = panels(figures(4)["gates"][0])
    assert [ax.get_title() for ax in gates] == list(mf.MIXTURES)
    assert [len(ax.texts) for ax in gates] == [2 * 4, 4 * 4]  # every expert x dataset cell annotated
    assert [t.get_text() for t in gates[1].get_yticklabels()] == [*SHORT, *(f"label:{s}" for s in SHORT)]


def test_label_space_names_at_most_max_named_classes():
    named = [[t.get_text() for t in ax.texts] for ax in panels(figures(3)["space"][0])]
    assert [len(n) for n in named] == [10, 3, mf.MAX_NAMED]
    assert set(named[2]) < {f"class {j}" for j in range(15)}


def test_label_space_view_projects_a_sample_of_test_images(make_planted):
    fs = make_planted({"a": 3.0, "b": 0.5}, n_classes=4, dim=6, sizes=(40, 20, 30))
    vecs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    model = LabelSpaceModel(vecs, TrainConfig(epochs=2)).fit(fs, seed=0)
    view = mf.label_space_view(model, fs, vecs, n_points=12)
    assert view.class_xy.shape == (4, 2) and view.image_xy.shape == (12, 2)
    assert view.labels.shape == (12,) and set(view.labels) <= set(range(4))
    assert view.head in ("a", "b") and view.class_names == tuple(fs.class_names)
    assert (
        view.dataset == fs.dataset and mf.label_space_view(model, fs, vecs, dataset="mine").dataset == "mine"
    )
    assert view.ratio.shape == (2,) and 0 < view.ratio.sum() <= 1 + 1e-6
    everything = mf.label_space_view(model, fs, vecs, n_points=1000)
    assert len(everything.labels) == 30  # no more than the split has
    np.testing.assert_array_equal(everything.labels, fs.labels["test"])


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        mf.cosine_figure({})
