"""The figures of the multimodal notebook (``05_multimodal``), drawn for the book's column.

One function per figure; each takes the tidy frames (or small objects) the notebook computes and
returns a matplotlib ``Figure`` the column's width (``fusion_lib.book.figures.COLUMN_WIDTH``)
with at most two panels a row, for ``glue_figure``: one panel per dataset wraps into rows of two
(``figures.panel_grid``), so four datasets make a 2 x 2 grid rather than a 4:1 strip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fusion_lib.book.figures import (
    COLUMN_WIDTH,
    first_column,
    interval_bars,
    panel_grid,
    rotate_xticks,
    skipped_figure,
)
from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.label_space import LabelSpaceModel
from fusion_lib.studies.label_studies import LabelStudies
from fusion_lib.studies.label_study import (
    FAMILIES,
    FUSION_METHODS,
    MIN_SPACE_CLASSES,
    MIN_ZERO_SHOT_CLASSES,
    N_HELD_OUT,
    best_head,
    head_geometry,
    label_embeddings,
    project_label_space,
    spread_labels,
)

# The colours of the expert families (``label_study.FAMILIES``), in their order.
FAMILY_COLOURS: tuple[str, ...] = ("#4c72b0", "#dd8452", "#a5a5a5")
MIXTURES: tuple[str, ...] = ("moe_thumbnail_joint", "moe_thumbnail_label")
# Short tick labels of the zero-shot measures (``label_study.ZERO_SHOT_MEASURES`` spells them out).
ZERO_SHOT_TICKS: dict[str, str] = {
    "zsl_top1": "top-1\nheld-out",
    "gzsl_unseen": "U",
    "top5": "top-5\nunseen",
    "gzsl_seen": "S",
    "harmonic": "H",
}
# What sections 4 and 5 show where no dataset has the classes they need (a two-class folder, say).
NO_ZERO_SHOT = (
    f"Zero-shot skipped: no dataset here has the {MIN_ZERO_SHOT_CLASSES} classes it needs "
    f"({N_HELD_OUT} held out, at least 2 seen to fit the map on)."
)
NO_LABEL_SPACE = (
    f"Label-space picture skipped: no dataset here has the {MIN_SPACE_CLASSES} classes whose vectors "
    "span the plane it is drawn in."
)
MAX_TICK_NAMES = 20  # a heatmap of more classes than this drops their names (they would not be legible)
MIN_CELL = 0.42  # inches: a heatmap cell narrower than this cannot hold a "0.00" at 9.5 pt
MAX_NAMED = 12  # at most this many class names written into a label-space panel
HEADROOM = 0.26  # share of a bar panel's height kept free above the bars for its legend
SINGLE_HEIGHT = 3.8  # inches: one panel alone spans the column, so it is drawn taller (aspect < 2)


def _height(n: int, per_row: float) -> float:
    """Height of each row of panels: ``per_row``, or ``SINGLE_HEIGHT`` when one panel spans the
    whole column (a lone panel ``per_row`` high would be more than twice as wide as tall)."""
    return max(per_row, SINGLE_HEIGHT) if n == 1 else per_row


def _headroom(ax: Axes, low: float, top: float, share: float = HEADROOM) -> None:
    """Y limits from ``low`` to ``top`` plus ``share`` of the panel free above for the legend, with
    ticks only up to ``top`` (an accuracy axis should not suggest values above 100%)."""
    ax.set_ylim(low, top + share / (1 - share) * (top - low))
    ticks = [t for t in ax.get_yticks() if low <= t <= top + 1e-9]
    ax.set_yticks(ticks)


def cosine_summary(similarities: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean, smallest and largest off-diagonal cosine similarity of each matrix (one row per panel of
    :func:`cosine_figure`): how much room the class vectors leave between classes."""
    rows = []
    for title, sim in similarities.items():
        values = sim.to_numpy()
        off = values[~np.eye(len(values), dtype=bool)]
        rows.append({"class names of": title, "mean": off.mean(), "min": off.min(), "max": off.max()})
    return (
        pd.DataFrame(rows)
        .set_index("class names of")
        .round(2)
        .rename_axis(columns="off-diagonal cosine similarity")
    )


def cosine_figure(similarities: Mapping[str, pd.DataFrame]) -> Figure:
    """Heatmaps of the class vectors' cosine similarities, one panel per set of class names.

    ``similarities`` maps a panel title (the datasets sharing those names) to a square frame labelled
    by class name on both axes (``label_study.cosine_matrix``). Cells are annotated with their value
    when the panel is wide enough for the numbers to be read; all panels share one colour scale.
    """

    n = len(similarities)
    if n == 0:
        raise ValueError("cosine_figure needs at least one similarity matrix")
    panel_height = 5.4 if n == 1 else 3.0
    fig, axes = panel_grid(n, panel_height=panel_height)
    low = min(float(s.to_numpy().min()) for s in similarities.values())
    panel_width = COLUMN_WIDTH / min(n, 2)
    for ax, (title, sim) in zip(axes, similarities.items()):
        k = len(sim)
        # room left for the cells once tick labels and colour bar are drawn (about 1.8 in)
        annotate = (panel_width - 1.8) / k >= MIN_CELL
        sns.heatmap(
            sim,
            annot=annotate,
            fmt=".2f",
            cmap="rocket_r",
            vmin=min(low, 0.0),
            vmax=1.0,
            ax=ax,
            square=True,
            cbar_kws={"label": "cosine similarity", "shrink": 0.85},
            xticklabels=True,
            yticklabels=True,
        )
        named = k <= MAX_TICK_NAMES
        what = "class" if named else f"class ({k}, in the dataset's order)"
        ax.set(title=title, xlabel=what, ylabel=what)  # each panel has its own classes
        if not named:
            ax.set(xticks=[], yticks=[])
        ax.tick_params(axis="x", labelrotation=90)
        ax.tick_params(axis="y", labelrotation=0)
    return fig


def _legend(ax: Axes, handles: Sequence[object] | None = None) -> None:
    """A two-column legend in the free band at the top of a panel (see :func:`_headroom`)."""
    kwargs = {"handles": handles} if handles is not None else {}
    ax.legend(**kwargs, loc="upper center", ncol=2, frameon=False, handlelength=1.2, columnspacing=0.9)


def expert_accuracy_figure(
    expert_ci: pd.DataFrame,
    datasets: Sequence[str],
    order: Sequence[str] | None = None,
    families: Sequence[str] = FAMILIES,
) -> Figure:
    """Test accuracy of each backbone's visual probe, label-space head and random-vector head (bars,
    mean over seeds, whiskers the 95% interval), one panel per dataset.

    ``expert_ci`` has columns dataset, family, backbone (short names, ``"average"`` for the family's
    average) and accuracy, low, high in percent (``label_study.accuracy_ci`` merged with the models'
    info). ``order`` is the backbones' order on the x axis (default: as they first appear, the
    average last).
    """
    if order is None:
        seen = list(dict.fromkeys(expert_ci["backbone"]))
        order = [b for b in seen if b != "average"] + (["average"] if "average" in seen else [])
    fig, axes = panel_grid(len(datasets), panel_height=_height(len(datasets), 3.4))
    width = 0.8 / len(families)
    for ax, name in zip(axes, datasets):
        d = expert_ci[expert_ci["dataset"] == name]
        for j, family in enumerate(families):
            f = d[d["family"] == family].set_index("backbone").reindex(order)
            x = np.arange(len(order)) + (j - (len(families) - 1) / 2) * width
            colour = FAMILY_COLOURS[j % len(FAMILY_COLOURS)]
            ax.bar(x, f["accuracy"], width=width, color=colour, label=family)
            interval_bars(ax, x, f, fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.set_xticks(range(len(order)), order)
        rotate_xticks(ax)
        _headroom(ax, max(0.0, math.floor((d["low"].min() - 10) / 10) * 10), 100.0)
        ax.set(title=name, xlabel="backbone", ylabel="test accuracy (%)")
    _legend(axes[0])
    return fig


def fused_accuracy_figure(
    fused_ci: pd.DataFrame, datasets: Sequence[str], methods: Sequence[str] = FUSION_METHODS
) -> Figure:
    """Test accuracy of the visual models, the label-space model and their fusions (dots, mean over
    seeds, with the 95% interval), one panel per dataset, the methods top to bottom in ``methods``
    order.

    ``fused_ci`` has columns dataset, model, accuracy, low, high in percent (``label_study.accuracy_ci``).
    """
    fig, axes = panel_grid(
        len(datasets), panel_height=_height(len(datasets), 0.32 * len(methods) + 1.2), sharey=True
    )
    y = np.arange(len(methods))[::-1]
    for ax, name in zip(axes, datasets):
        d = fused_ci[fused_ci["dataset"] == name].set_index("model").reindex(list(methods))
        interval_bars(ax, y, d, horizontal=True, fmt="o", color="#4c72b0", capsize=3)
        ax.set_yticks(y, list(methods))
        ax.tick_params(axis="y", labelleft=first_column(ax))
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.set(title=name, xlabel="test accuracy (%)", ylabel="model" if first_column(ax) else "")
    return fig


def gate_weight_figure(
    gates: pd.DataFrame, datasets: Sequence[str], mixtures: Sequence[str] = MIXTURES
) -> Figure:
    """Mean test gate weight of every expert (averaged over seeds) as heatmaps, one panel per mixture
    (stacked, each with its own experts as rows) and the datasets as columns.

    ``gates`` has columns dataset, seed, model, expert, weight (``LabelStudy.gates``).
    """

    g = gates.assign(expert=gates["expert"].map(short_name))
    tables = {
        m: g[g["model"] == m]
        .pivot_table(index="expert", columns="dataset", values="weight", aggfunc="mean", sort=False)
        .reindex(columns=list(datasets))
        for m in mixtures
    }
    sizes = [max(len(t), 1) for t in tables.values()]
    row_in = 0.36  # inches per expert row
    height = row_in * sum(sizes) + 1.1 * len(mixtures) + 0.9
    fig, axes = panel_grid(
        len(mixtures),
        columns=1,
        panel_height=height / len(mixtures),
        sharex=True,
        gridspec_kw={"height_ratios": [s + 1.6 for s in sizes]},
    )
    for i, (ax, (mixture, table)) in enumerate(zip(axes, tables.items())):
        last = i == len(mixtures) - 1
        sns.heatmap(
            table,
            annot=True,
            fmt=".2f",
            cmap="mako_r",
            vmin=0,
            vmax=1,
            ax=ax,
            cbar_kws={"label": "mean gate weight"},
            xticklabels=list(datasets),
            yticklabels=True,
        )
        ax.set(title=mixture, ylabel="expert", xlabel="dataset" if last else "")
        ax.tick_params(axis="x", labelrotation=0, labelbottom=last)
        if last and len(datasets) > 3:
            rotate_xticks(ax, 20)
        ax.tick_params(axis="y", labelrotation=0)
    return fig


def blend_curve_figure(
    curves: pd.DataFrame, blends: pd.DataFrame, datasets: Sequence[str], seed: int
) -> Figure:
    """Accuracy of the blend against its weight ``w`` on the label-space model, on the validation and
    test splits of one seed, one panel per dataset, with the weight chosen on validation (dotted).

    ``curves`` has columns dataset, seed, split, weight, accuracy (``LabelStudy.curves``); ``blends``
    has dataset, seed, weight (the chosen weight, ``LabelStudy.blend``).
    """

    fig, axes = panel_grid(len(datasets), panel_height=_height(len(datasets), 3.2))
    for ax, name in zip(axes, datasets):
        c = curves[(curves["dataset"] == name) & (curves["seed"] == seed)]
        sns.lineplot(
            data=c,
            x="weight",
            y="accuracy",
            hue="split",
            style="split",
            markers=True,
            ax=ax,
            hue_order=["val", "test"],
            style_order=["val", "test"],
        )
        w = blends.loc[(blends["dataset"] == name) & (blends["seed"] == seed), "weight"].item()
        ax.axvline(w, color="grey", linestyle=":", label=f"chosen w = {w:.1f}")
        ax.set(
            title=f"{name} (seed {seed})",
            xlabel="blend weight w (label-space model)",
            ylabel="accuracy",
        )
        ax.legend(loc="best", handlelength=1.6, borderaxespad=0.3)
    return fig


def zero_shot_figure(zs: pd.DataFrame, datasets: Sequence[str]) -> Figure:
    """The zero-shot measures of each dataset (one panel each): with the true class vectors (bars, 95%
    interval), with the vectors shuffled among the classes (dots and orange lines, mean and 95% range
    of the permutation null) and chance (dashes).

    ``zs`` has columns dataset, measure (``label_study.ZERO_SHOT_MEASURES`` keys), estimate, low, high,
    chance, null_mean, null_low, null_high as fractions (``ZeroShotResult.summary``). No datasets: a
    panel saying the study was skipped (``NO_ZERO_SHOT``).
    """
    if not datasets:
        return skipped_figure(NO_ZERO_SHOT)
    measures = list(ZERO_SHOT_TICKS)
    fig, axes = panel_grid(len(datasets), panel_height=_height(len(datasets), 3.4))
    x = np.arange(len(measures))
    for ax, name in zip(axes, datasets):
        d = zs[zs["dataset"] == name].set_index("measure").reindex(measures)
        d = 100 * d[["estimate", "low", "high", "chance", "null_mean", "null_low", "null_high"]].astype(float)
        bars = ax.bar(x, d["estimate"], color="#4c72b0", width=0.6, label="class vectors")
        # intervals as lines from low to high: a skewed null's mean can lie outside its range
        ax.vlines(x, d["low"], d["high"], colors="black")
        ax.vlines(x + 0.34, d["null_low"], d["null_high"], colors="#dd8452")
        (null,) = ax.plot(x + 0.34, d["null_mean"], "o", color="#dd8452", label="shuffled vectors")
        chance = ax.hlines(d["chance"], x - 0.3, x + 0.3, colors="black", linestyles="--", label="chance")
        ax.set_xticks(x, [ZERO_SHOT_TICKS[m] for m in measures])
        _headroom(ax, 0.0, 100.0)
        ax.set(title=name, xlabel="measure", ylabel="accuracy (%)")
        if ax is axes[0]:
            _legend(ax, [bars, null, chance])
    return fig


@dataclass(frozen=True)
class LabelSpaceView:
    """One dataset's label space in two dimensions: the class vectors and a sample of test images
    embedded by one label-space head, projected onto the class vectors' first two principal
    components (``label_study.project_label_space``)."""

    class_xy: np.ndarray  # (C, 2) class vectors
    image_xy: np.ndarray  # (n, 2) image embeddings
    labels: np.ndarray  # (n,) true class index of each image
    class_names: tuple[str, ...]
    ratio: np.ndarray  # (2,) share of the class vectors' variance on each component
    head: str  # the backbone whose head embedded the images
    dataset: str  # what the panel's title calls the images' dataset


def label_space_view(
    model: LabelSpaceModel,
    fs: FeatureSet,
    class_vecs: np.ndarray,
    n_points: int = 300,
    seed: int = 0,
    dataset: str | None = None,
) -> LabelSpaceView:
    """The :class:`LabelSpaceView` of a random sample of ``n_points`` test images of ``fs`` (drawn with
    ``seed``), embedded by the head of ``model`` that is most accurate on validation; ``dataset`` names
    it (default: ``fs.dataset``)."""

    head = best_head(model, fs)
    n_test = len(fs.labels["test"])
    rows = np.sort(np.random.default_rng(seed).choice(n_test, min(n_points, n_test), replace=False))
    emb = label_embeddings(model, fs, "test", head)[rows]
    class_xy, image_xy, ratio = project_label_space(class_vecs, emb)
    return LabelSpaceView(
        class_xy,
        image_xy,
        fs.labels["test"][rows],
        tuple(fs.class_names),
        np.asarray(ratio),
        head,
        fs.dataset if dataset is None else dataset,
    )


def label_space_pictures(
    studies: LabelStudies, seed: int, n_points: int
) -> tuple[list[LabelSpaceView], list[str]]:
    """Per dataset of ``studies``, from one draw of ``seed``'s split: the label space of ``n_points`` of its
    test images (``label_space_view``), and a line on its best label-space head
    (``label_study.head_geometry``)."""
    views, notes = [], []
    for r in studies.runs:
        fs, model = r.pool.draw(seed), r.result.label_models[seed]
        views.append(label_space_view(model, fs, r.class_vecs, n_points, dataset=r.dataset))
        head = best_head(model, fs)
        notes.append(f"{r.dataset} ({short_name(head)}): {head_geometry(model, fs, r.class_vecs, head)}")
    return views, notes


def _named(class_xy: np.ndarray, most: int = MAX_NAMED) -> np.ndarray:
    """Indices of the classes whose stars get a name: all of them up to ``most``, else the ``most``
    farthest from the stars' median (the outer ones, where a label has room)."""
    if len(class_xy) <= most:
        return np.arange(len(class_xy))
    dist = np.linalg.norm(class_xy - np.median(class_xy, axis=0), axis=1)
    return np.sort(np.argsort(-dist, kind="stable")[:most])


def label_space_figure(views: Sequence[LabelSpaceView], seed: int) -> Figure:
    """Test images (dots, coloured by true class) and class vectors (stars, named in their class's
    colour) in the plane of the class vectors' first two principal components, one panel per dataset.

    With more than ``MAX_NAMED`` classes only the outermost stars are named, so the names stay
    legible; the names stand in for a colour legend. No views (no dataset has ``MIN_SPACE_CLASSES``
    classes): a panel saying the picture was skipped (``NO_LABEL_SPACE``).
    """

    if not views:
        return skipped_figure(NO_LABEL_SPACE)
    fig, axes = panel_grid(len(views), panel_height=3.6 if len(views) > 1 else 5.0)
    for ax, v in zip(axes, views):
        k = len(v.class_names)
        palette = sns.color_palette("tab10" if k <= 10 else "husl", k)
        colours = np.asarray(palette)
        ax.scatter(v.image_xy[:, 0], v.image_xy[:, 1], s=14, c=colours[v.labels], alpha=0.6, linewidths=0)
        ax.scatter(
            v.class_xy[:, 0],
            v.class_xy[:, 1],
            marker="*",
            s=180,
            c=colours,
            edgecolors="black",
            linewidths=0.7,
            zorder=3,
        )
        named = _named(v.class_xy)
        xy = np.concatenate([v.class_xy, v.image_xy])
        span_x, span_y = np.ptp(xy[:, 0]), np.ptp(xy[:, 1])
        label_y = spread_labels(v.class_xy[named, 1], 0.075 * span_y)
        centre, offset = np.median(v.image_xy[:, 0]), 0.1 * span_x
        for i, ly in zip(named, label_y):
            x, y = v.class_xy[i]
            right = x < centre  # write towards the middle of the plot, away from its edges
            ax.annotate(
                v.class_names[i],
                (x, y),
                xytext=(x + offset if right else x - offset, ly),
                ha="left" if right else "right",
                va="center",
                zorder=4,
                fontsize=9.5,
                arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.5},
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": palette[i], "lw": 1, "alpha": 0.8},
            )
        ax.set(
            xlabel=f"PC 1 ({100 * v.ratio[0]:.0f}% of class-vector variance)",
            ylabel=f"PC 2 ({100 * v.ratio[1]:.0f}%)",
            title=f"{v.dataset}: {short_name(v.head)} head (seed {seed})",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
