"""The figures of the backbones, agreement and ablation notebooks (01, 02 and 04), drawn for the book's
column.

One function per figure: each takes the tidy frames (or study objects) its notebook already computes
and returns a matplotlib Figure at most ``fusion_lib.book.figures.COLUMN_WIDTH`` wide, with at
most two panels a row, never more than about twice as wide as tall, and no text under
``MIN_FONT`` points. The notebook glues it with ``figures.glue_figure(name, fig)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text

from fusion_lib.book.figures import COLUMN_WIDTH, figure, first_column, image_grid, panel_grid, rotate_xticks
from fusion_lib.data.backbones import short_name
from fusion_lib.data.datasets import DatasetSplits, thumbnail
from fusion_lib.studies.ablation_study import AblationStudy
from fusion_lib.studies.ablations import plot_accuracy, plot_deltas
from fusion_lib.studies.agreement import AgreementStudies

MIN_FONT = 9.5  # points: the smallest text of a figure shown at its natural size in the column
# The pairwise measures of the agreement study as the figures name them (AgreementStudy.matrix keys).
MEASURES: dict[str, str] = {
    "agreement": "agreement",
    "kappa": "Cohen's kappa",
    "double_fault": "double fault",
}
# Height of a figure one column wide: 6.8 / 3.4 = 2.0, so its tight bounding box stays under 2.2 : 1.
ROW_HEIGHT = 3.4


def _legible(fig: Figure) -> Figure:
    """Raise every text of ``fig`` smaller than ``MIN_FONT`` to it (a guard for text sized by
    hand, such as heatmap annotations)."""

    for text in fig.findobj(Text):
        if text.get_fontsize() < MIN_FONT:
            text.set_fontsize(MIN_FONT)
    return fig


def _legend_below(fig: Figure, ax: Axes, title: str | None, ncol: int, x: float = 0.5) -> None:
    """Move ``ax``'s legend under the figure, centred at ``x`` (a fraction of the figure's width), in
    ``ncol`` columns: it covers no data, and the tight bounding box the page shows takes it in
    (``glue_figure``'s layout leaves a figure's legends where they are)."""
    legend = ax.get_legend()
    handles, labels = ax.get_legend_handles_labels()  # the artists themselves: error bars keep theirs
    if legend is not None:
        shown = [t.get_text() for t in legend.get_texts()]
        if labels != shown:  # seaborn draws its legend from proxy artists that the axes do not hold
            handles, labels = legend.legend_handles, shown
        legend.remove()
    fig.legend(
        handles, labels, title=title, loc="upper center", bbox_to_anchor=(x, 0.0), ncol=ncol, frameon=False
    )


def _heatmap(
    ax: Axes,
    matrix: pd.DataFrame,
    label: str,
    vmin: float | None = None,
    vmax: float | None = None,
    shrink: float = 1.0,
) -> None:
    """``matrix`` as an annotated heatmap (values to two decimals, row 0 on top) with a colour bar
    titled ``label``; its index and columns name the ticks.

    Drawn here rather than by ``seaborn.heatmap``, which draws the whole figure once per panel to see
    whether tick labels overlap: a dozen panels took seconds.
    """

    values = matrix.to_numpy(dtype=float)
    mesh = ax.pcolormesh(values, cmap="viridis", vmin=vmin, vmax=vmax)
    colorbar = ax.figure.colorbar(mesh, ax=ax, shrink=shrink, label=label)
    colorbar.outline.set_linewidth(0)
    ax.set(xlim=(0, values.shape[1]), ylim=(values.shape[0], 0))  # the first row on top
    ax.set_xticks(np.arange(values.shape[1]) + 0.5, [str(c) for c in matrix.columns])
    ax.set_yticks(np.arange(values.shape[0]) + 0.5, [str(i) for i in matrix.index])
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    for (row, col), value in np.ndenumerate(values):
        if np.isnan(value):
            continue
        r, g, b = to_rgb(mesh.cmap(mesh.norm(value)))
        dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.408  # seaborn's rule for the annotation colour
        ax.text(
            col + 0.5,
            row + 0.5,
            f"{value:.2f}",
            ha="center",
            va="center",
            color="white" if dark else "black",
            fontsize=MIN_FONT,
        )


# ---------------------------------------------------------------- notebook 01: backbones and data


def backbone_cost_figure(backbones: pd.DataFrame, input_size: int | None) -> Figure:
    """``fig_cost``: each backbone's size (millions of parameters, left) and cost (GFLOPs per image at
    ``input_size``, right; None: each backbone's own input size) as horizontal bars.

    ``backbones``: ``backbone_table``'s frame (columns ``backbone``, ``params_m``, ``gflops``).
    """

    names = backbones.assign(backbone=backbones["backbone"].map(short_name))
    fig, axes = panel_grid(2, panel_height=max(ROW_HEIGHT, 0.32 * len(names) + 1.4), sharey=True)
    sns.barplot(data=names, y="backbone", x="params_m", ax=axes[0], color="tab:blue")
    axes[0].set(xlabel="parameters (millions)", ylabel="backbone", title="Size")
    sns.barplot(data=names, y="backbone", x="gflops", ax=axes[1], color="tab:orange")
    size = "each backbone's own input size" if input_size is None else f"{input_size} px input"
    axes[1].set(xlabel="GFLOPs per image", ylabel="", title=f"Cost at {size}")
    return _legible(fig)


def class_gallery_figure(
    datasets: Sequence[DatasetSplits], size: int, columns: int = 5, max_classes: int = 20
) -> Figure:
    """``fig_classes``: the first training image of every class of every dataset, as stored, and under
    it the ``size`` x ``size`` thumbnail the thumbnail gate sees; ``columns`` classes a row (ten
    classes make two rows of image-and-thumbnail pairs), so the gallery keeps the column's width
    however many classes there are. Each image is titled with its class, and the first image of a row
    names the dataset and what the row shows. A dataset with more than ``max_classes`` classes shows
    its first ``max_classes`` (and says so), so CIFAR-100 does not make a page-long figure.
    """

    if not datasets:
        raise ValueError("class_gallery_figure needs at least one dataset")
    shown = {d.name: sorted(set(d.labels["train"].tolist()))[:max_classes] for d in datasets}
    width = min(columns, max(len(c) for c in shown.values()))
    blocks = {name: math.ceil(len(c) / width) for name, c in shown.items()}
    rows = 2 * sum(blocks.values())  # an image row and a thumbnail row per row of classes
    cell = COLUMN_WIDTH / (width + 0.6)  # room on the left for the row labels
    fig, grid = image_grid(
        rows,
        width,
        (2 * cell + 0.25) * rows / 2,
        # a pair of rows: the image with its title over it, then the thumbnail
        gridspec_kw={"height_ratios": [1.2, 1.0] * (rows // 2)},
    )
    for ax in grid.flat:
        ax.set_axis_off()
        ax.spines[:].set_visible(False)
    top = 0
    for splits in datasets:
        name = splits.name
        labels = splits.labels["train"]
        for k, c in enumerate(shown[name]):
            i = int((labels == c).argmax())  # the first training image of class c
            row, col = top + 2 * (k // width), k % width
            image, thumb = grid[row, col], grid[row + 1, col]
            image.imshow(splits.image("train", i))
            thumb.imshow(thumbnail(splits.tensor("train", i), size).permute(1, 2, 0).numpy())
            image.set_title(splits.class_names[c])
            for ax in (image, thumb):
                ax.set_axis_on()
                ax.set(xticks=[], yticks=[])
            if col == 0:
                more = len(splits.class_names) > len(shown[name])
                image.set_ylabel(
                    f"{name}\nimage" + (f"\n(first {len(shown[name])} classes)" if k == 0 and more else "")
                )
                thumb.set_ylabel(f"{size}x{size}\nthumbnail")
        top += 2 * blocks[name]
    return _legible(fig)


# ---------------------------------------------------------------- notebook 02: the agreement study


def accuracy_figure(accuracy: pd.DataFrame) -> Figure:
    """``fig_accuracy``: each backbone's linear-probe test accuracy per dataset, bars the mean over seeds
    and whiskers ±1 standard deviation; the legend (backbones) below the axes.

    ``accuracy``: the studies' tidy accuracy (columns ``dataset``, ``backbone`` (short names), ``seed``,
    ``accuracy``).
    """

    fig, ax = figure(height=ROW_HEIGHT)
    sns.barplot(data=accuracy, x="dataset", y="accuracy", hue="backbone", errorbar="sd", ax=ax)
    ax.set(
        xlabel="dataset",
        ylabel="test accuracy (linear probe)",
        ylim=(max(0.0, accuracy["accuracy"].min() - 0.1), 1.0),
    )
    _legend_below(fig, ax, "backbone", ncol=min(4, accuracy["backbone"].nunique()))
    return _legible(fig)


def agreement_matrices_figure(studies: AgreementStudies, measures: Mapping[str, str] = MEASURES) -> Figure:
    """``fig_matrices``: the backbone x backbone matrices of each pairwise measure (agreement, Cohen's
    kappa, double fault), averaged over seeds, one heatmap per dataset.

    The measures come one after another, each starting a new row with its datasets two a row, so a
    row compares datasets on one measure; the colour scale is shared by a measure's panels. A single
    dataset's three measures fill two rows instead.
    """

    n = len(studies)
    if n == 0:
        raise ValueError("agreement_matrices_figure needs at least one dataset's study")
    n_backbones = max(len(r.result.backbones) for r in studies.runs)
    height = max(2.8, 0.4 * n_backbones + 1.4)
    rows_per_measure = math.ceil(n / 2)
    if n == 1:
        fig, axes = panel_grid(len(measures), panel_height=height)
        cells = [[ax] for ax in axes]
    else:
        fig, grid = panel_grid(2 * rows_per_measure * len(measures), panel_height=height)
        per_measure = 2 * rows_per_measure
        cells = [grid[i * per_measure : i * per_measure + n] for i in range(len(measures))]
        for i in range(len(measures)):
            for ax in grid[i * per_measure + n : (i + 1) * per_measure]:
                fig.delaxes(ax)
    for (key, label), axes in zip(measures.items(), cells):
        matrices = {
            r.dataset: r.result.matrix(key).rename(index=short_name, columns=short_name) for r in studies.runs
        }
        low = min(float(np.nanmin(m.to_numpy())) for m in matrices.values())
        high = max(float(np.nanmax(m.to_numpy())) for m in matrices.values())
        for ax, (name, m) in zip(axes, matrices.items()):
            first = first_column(ax)  # before the colour bar nests the panel in a grid of its own
            _heatmap(ax, m, label, vmin=low, vmax=high, shrink=0.8)
            ax.set(title=f"{name}: {label}", xlabel="backbone", ylabel="backbone" if first else "")
            ax.tick_params(axis="y", rotation=0)  # horizontal names do not overlap
            rotate_xticks(ax, 35)
    return _legible(fig)


def oracle_figure(bounds: pd.DataFrame, measures: Mapping[str, str]) -> Figure:
    """``fig_oracle``: per dataset, the mean single probe, the best single probe (chosen on validation)
    and the oracle, mean over seeds with ±1 standard deviation; the legend below the axes.

    ``bounds``: the studies' tidy bounds (columns ``dataset``, ``seed`` and the keys of ``measures``,
    which names each column as the figure shows it).
    """

    long = bounds.melt(
        id_vars=["dataset", "seed"], value_vars=list(measures), var_name="measure", value_name="accuracy"
    ).replace({"measure": dict(measures)})
    fig, ax = figure(height=ROW_HEIGHT)
    markers = ["o", "s", "^", "D", "v"][: len(measures)]
    sns.pointplot(
        data=long,
        x="dataset",
        y="accuracy",
        hue="measure",
        errorbar="sd",
        dodge=0.3,
        linestyle="none",
        markers=markers,
        ax=ax,
    )
    ax.set(xlabel="dataset", ylabel="test accuracy")
    _legend_below(fig, ax, None, ncol=len(measures))
    return _legible(fig)


def candidates_figure(kappa: pd.DataFrame, dataset: str) -> Figure:
    """``fig_candidates``: Cohen's kappa of every pair of the candidate backbones on ``dataset``
    (``AgreementStudy.matrix("kappa")``, averaged over seeds), as one annotated heatmap."""

    n = len(kappa)
    fig, ax = figure(height=max(ROW_HEIGHT, min(5.6, 0.55 * n + 1.8)))
    _heatmap(ax, kappa.rename(index=short_name, columns=short_name), "Cohen's kappa")
    ax.set_aspect("equal")
    ax.set(title=f"{dataset}: pairwise kappa of every offline backbone", xlabel="backbone", ylabel="backbone")
    ax.tick_params(axis="y", rotation=0)
    rotate_xticks(ax, 35)
    return _legible(fig)


def zoo_figure(zoos: pd.DataFrame) -> Figure:
    """``fig_zoos``: per dataset and zoo, the mean pairwise Cohen's kappa (left) and the oracle's gain
    over the best single backbone in points (right); the zoos' legend below the panels.

    ``zoos``: ``zoo_summary``'s frame (columns ``dataset``, ``zoo``, ``kappa``, ``oracle_gain``).
    """

    fig, axes = panel_grid(2, panel_height=ROW_HEIGHT)
    sns.barplot(data=zoos, x="dataset", y="kappa", hue="zoo", ax=axes[0], legend=False)
    axes[0].set(xlabel="dataset", ylabel="mean pairwise Cohen's kappa", title="Agreement beyond chance")
    sns.barplot(data=zoos, x="dataset", y="oracle_gain", hue="zoo", ax=axes[1])
    axes[1].set(xlabel="dataset", ylabel="oracle gain over best single (points)", title="Room for fusion")
    for ax in axes:
        rotate_xticks(ax, 25)
    _legend_below(fig, axes[1], "zoo", ncol=zoos["zoo"].nunique())
    return _legible(fig)


def c1_difficulty_figure(accuracy: pd.DataFrame, kappas: pd.DataFrame) -> Figure:
    """``fig_c1_difficulty``: each backbone's rank by mean test accuracy per dataset (left, 1 the best)
    and, per dataset, the mean kappa over backbone pairs on correctness (``kappa_c`` with its 95%
    interval) and on the predicted labels (right). Each panel's legend sits under it.

    ``accuracy``: as for :func:`accuracy_figure`; ``kappas``: ``kappa_beyond_accuracy``'s first frame
    (columns ``dataset``, ``kappa_c``, ``low``, ``high``, ``kappa``).
    """

    ranks = (
        accuracy.groupby(["dataset", "backbone"], sort=False)["accuracy"]
        .mean()
        .groupby(level="dataset")
        .rank(ascending=False, method="min")
        .rename("rank")
        .reset_index()
    )
    n_backbones = ranks["backbone"].nunique()
    fig, axes = panel_grid(2, panel_height=3.6)
    sns.lineplot(data=ranks, x="dataset", y="rank", hue="backbone", marker="o", sort=False, ax=axes[0])
    axes[0].set(
        xlabel="dataset",
        ylabel="accuracy rank (1 = best)",
        title="Backbones' ranks",
        yticks=range(1, n_backbones + 1),
    )
    axes[0].invert_yaxis()
    spread = [kappas["kappa_c"] - kappas["low"], kappas["high"] - kappas["kappa_c"]]
    axes[1].errorbar(
        kappas["dataset"],
        kappas["kappa_c"],
        yerr=spread,
        fmt="o",
        capsize=3,
        label=r"on correctness, $\kappa_c$",
    )
    axes[1].plot(kappas["dataset"], kappas["kappa"], "s", label="on labels (Cohen)")
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].set(xlabel="dataset", ylabel="mean kappa over backbone pairs", title="Agreement beyond accuracy")
    for ax in axes:
        rotate_xticks(ax, 25)
        ax.margins(x=0.15)
    for ax, title, x in zip(axes, ("backbone", "kappa"), (0.27, 0.77)):  # under each panel's middle
        ax.legend()
        _legend_below(fig, ax, title, ncol=2 if title == "backbone" else 1, x=x)
    return _legible(fig)


# ---------------------------------------------------------------- notebook 04: ablations


def ablation_accuracy_figure(
    summary: pd.DataFrame,
    *,
    xlabel: str,
    title: str,
    x: str | None = None,
    logx: bool = False,
    annotate: bool = True,
    reference_band: bool = False,
    marks: Mapping[str, float] | None = None,
    xlim: tuple[float | None, float | None] | None = None,
) -> Figure:
    """One ablation's test accuracy (%) with its 95% interval per setting (``ablations.plot_accuracy``
    on a ``summarize`` frame, against the column ``x`` or as categories), one column wide.

    ``marks`` draws a dotted vertical line, named at its foot, at each value (e.g. each backbone's
    GFLOPs); ``xlim`` limits the x axis. ``x``, ``logx``, ``annotate`` and ``reference_band`` are
    ``plot_accuracy``'s.
    """

    fig, ax = figure(height=ROW_HEIGHT)
    plot_accuracy(ax, summary, x=x, logx=logx, annotate=annotate, reference_band=reference_band)
    for name, value in (marks or {}).items():
        ax.axvline(value, color="grey", linestyle=":", linewidth=1)
        ax.text(
            value,
            0.02,
            name,
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="bottom",
            ha="right",
            color="dimgrey",
        )
    ax.set(xlabel=xlabel, title=title)
    if xlim is not None:
        ax.set_xlim(*xlim)
    return _legible(fig)


def ablation_deltas_figure(summary: pd.DataFrame, *, title: str, label: str = "setting") -> Figure:
    """The paired change in test accuracy of each compared setting against its ablation's reference
    (``ablations.plot_deltas``: points with the paired 95% interval, one row per setting named by the
    column ``label``), one column wide and taller with more settings."""

    rows = int(summary["delta"].notna().sum())
    fig, ax = figure(height=max(ROW_HEIGHT, 0.32 * rows + 1.6))
    plot_deltas(ax, summary, label=label)
    ax.set_xlabel("test accuracy change vs the reference,\npoints (paired 95% CI)")  # in two lines
    ax.set_ylabel("setting")
    ax.set_title(title)
    return _legible(fig)


# Each ablation's figure: its title after the dataset's name, and how its accuracies are drawn (an
# accuracy figure's x axis; None: the changes against the reference, ablation_deltas_figure).
FIGURES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "thumbnail size": (
        "thumbnail size",
        dict(
            x="gate_mflops", logx=True, reference_band=True, xlabel="gate cost (MFLOPs per image, log scale)"
        ),
    ),
    "gate width": (
        "width of the gate",
        dict(x="gate_params", logx=True, xlabel="gate parameters (log scale)"),
    ),
    "leave one expert out": ("dropping one backbone from the mixture", None),
    "training-set size": (
        "accuracy against training-set size",
        dict(x="n_train", logx=True, annotate=False, xlabel="training images (log scale)"),
    ),
    "soft vs top-k gating": (
        "soft and top-k gating of the same mixtures",
        dict(x="gflops_per_image", xlim=(0, None), xlabel="GFLOPs per image (backbones that run + gate)"),
    ),
    "shrinkage": ("shrinkage", dict(xlabel="shrinkage of the gate towards the anchor")),
    "accuracy push": ("expert heads and input size", None),
}


def ablation_figure(study: AblationStudy, ablation: str, detail: str = "") -> Figure:
    """The figure of an ablation ``study`` ran (``FIGURES``), its title naming the dataset (and ``detail``)."""

    what, accuracy = FIGURES[ablation]
    title = f"{study.dataset}: {what}{f' ({detail})' if detail else ''}"
    summary = study.summaries[ablation]
    if accuracy is None:
        return ablation_deltas_figure(summary, title=title)
    marks = study.backbone_marks() if ablation == "soft vs top-k gating" else None
    return ablation_accuracy_figure(summary, title=title, marks=marks, **accuracy)


def ablation_summary_figure(study: AblationStudy) -> Figure:
    """Every ablation's settings against their reference, in one figure."""

    summary = study.summary()
    compared = summary.assign(label=summary["ablation"] + ": " + summary["setting"])
    return ablation_deltas_figure(
        compared, label="label", title=f"{study.dataset}: every ablation against its reference"
    )


__all__ = [
    "FIGURES",
    "MEASURES",
    "MIN_FONT",
    "ablation_accuracy_figure",
    "ablation_deltas_figure",
    "ablation_figure",
    "ablation_summary_figure",
    "accuracy_figure",
    "agreement_matrices_figure",
    "backbone_cost_figure",
    "c1_difficulty_figure",
    "candidates_figure",
    "class_gallery_figure",
    "oracle_figure",
    "zoo_figure",
]
