"""Notebook 03's figures (and the own-images report's): the C2 forest plots, routing AUC, the gate's
weight per class, each expert's favourite thumbnails, accuracy against compute, and the gallery of
images where the experts disagree. Each returns a figure drawn for the book's column."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from fusion_lib.book.figures import COLUMN_WIDTH, first_column, image_grid, panel_grid, skipped_figure
from fusion_lib.data.backbones import short_name
from fusion_lib.data.datasets import DatasetSplits
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.gates import resize_thumbnails
from fusion_lib.studies.claims import forest_plot, zoo_forest_plot
from fusion_lib.studies.frontier import plot_frontier
from fusion_lib.studies.gate_analysis import disagreement_examples, favourite_images, gate_by_class
from fusion_lib.studies.study import Study

RIGHT, WRONG = "#2e8b57", "#c0392b"  # an expert (or answer) right or wrong, in every figure here


def _datasets(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["dataset"]))


def _shared_xlabel(fig: Figure, axes: Sequence) -> Figure:
    """One x label under the whole figure instead of one per panel (too long for half the column)."""
    label = axes[0].get_xlabel()
    for ax in axes:
        ax.set_xlabel("")
    fig.supxlabel(label)
    return fig


def forest_figure(comparisons: pd.DataFrame) -> Figure:
    """Every comparison of ``Study.compare_pairs`` with its interval and word, a panel per dataset."""
    rows = comparisons[comparisons["dataset"] == comparisons["dataset"].iloc[0]]
    fig, axes = panel_grid(len(_datasets(comparisons)), panel_height=0.5 + 0.32 * len(rows), sharex=True)
    forest_plot(axes, comparisons)
    return _shared_xlabel(fig, axes)


def zoo_forest_figure(comparisons: pd.DataFrame) -> Figure:
    """C2 on each zoo (``Study.compare_pairs`` of a study of several zoos), a panel per dataset."""
    fig, axes = panel_grid(len(_datasets(comparisons)), panel_height=2.9)
    zoo_forest_plot(axes, comparisons)
    return _shared_xlabel(fig, axes)


def routing_auc_figure(auc: pd.DataFrame) -> Figure:
    """Validation ROC AUC of predicting "expert k is right" from each input (``routing_auc`` rows with a
    ``dataset`` column), a panel per dataset."""
    fig, axes = panel_grid(len(_datasets(auc)), sharey=True)
    for ax, (name, part) in zip(axes, auc.groupby("dataset", sort=False)):
        wide = part.pivot_table(index="expert", columns="input", values="auc", sort=False)
        wide.plot.bar(ax=ax, rot=20, legend=ax is axes[0])
        ax.axhline(0.5, color="black", linewidth=0.8)
        ax.set(title=name, xlabel="expert (backbone)", ylim=(0.4, 1.0))
        ax.set_ylabel("validation ROC AUC" if first_column(ax) else "")
    if axes[0].get_legend() is not None:
        axes[0].legend(title="gate input", loc="lower left")
    return fig


def gate_by_class_figure(study: Study, seed: int, method: str) -> Figure:
    """Mean gate weight of ``method`` per true class and expert on the seed's test images, a heatmap per
    dataset."""
    tables = {
        run.dataset: gate_by_class(
            run.result.outputs[(method, seed)].gate_weights,
            run.result.labels[seed]["test"],
            run.pool.class_names,
            [short_name(b) for b in run.pool.backbones],
        )
        for run in study.runs
    }
    most = max(len(t) for t in tables.values())
    fig, axes = panel_grid(len(tables), panel_height=1.2 + 0.2 * most, layout="constrained")
    for ax, (name, table) in zip(axes, tables.items()):
        image = ax.imshow(table.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right")
        ax.set_yticks(range(len(table)), table.index, fontsize=9.5 if len(table) <= 12 else 6)
        ax.set(title=name, xlabel="expert (backbone)")
        ax.set_ylabel("true class" if first_column(ax) else "")
    fig.colorbar(image, ax=axes, label="mean gate weight", shrink=0.8)
    return fig


def favourites_figure(study: Study, seed: int, method: str, n: int = 6) -> Figure:
    """Each expert's ``n`` most-weighted test thumbnails under ``method`` (a row per dataset and expert;
    title: the gate's weight)."""
    rows = [(run, k) for run in study.runs for k in range(len(run.pool.backbones))]
    side = COLUMN_WIDTH / (n + 1)
    fig, axes = image_grid(len(rows), n, 1.15 * side * len(rows))
    drawn = {run.dataset: run.pool.draw(seed) for run in study.runs}
    for r, (run, k) in enumerate(rows):
        weights = run.result.outputs[(method, seed)].gate_weights
        thumbs = drawn[run.dataset].thumbnails["test"]
        for c, i in enumerate(favourite_images(weights, k=n)[k]):
            axes[r, c].imshow(thumbs[i].transpose(1, 2, 0))
            axes[r, c].set_title(f"{weights[i, k]:.2f}", fontsize=9.5)
        axes[r, 0].set_ylabel(f"{run.dataset}\n{short_name(run.pool.backbones[k])}", fontsize=9.5)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.supxlabel("rank among the expert's most-weighted test thumbnails")
    return fig


def frontier_figure(frontier: pd.DataFrame) -> Figure:
    """Test accuracy against GFLOPs per image (``Study.frontier``'s points), a panel per dataset (one a
    row: the methods crowd a half-width panel) and one legend under them; the frontier's points are not
    named on the plot, where the many points near it overlap (``moe_tables.frontier_table`` names them)."""
    datasets = list(dict.fromkeys(frontier["dataset"]))
    fig, axes = panel_grid(len(datasets), panel_height=3.0, columns=1, layout="constrained")
    for ax, name in zip(axes, datasets):
        plot_frontier(ax, frontier[frontier["dataset"] == name], annotate=False)
        ax.set_title(name)
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return fig


def stored_test_images(data: DatasetSplits, drawn: FeatureSet, rows: Sequence[int]) -> list[np.ndarray]:
    """The stored images (H, W, 3 uint8) of rows of a seed's test split (``drawn``, from
    ``FeatureSet.draw``) of the pool ``data`` was loaded with."""
    pool = data.pools["test"]  # a redrawn test split comes from the same pool as train/val
    images = []
    for r in rows:
        image = pool.source.tensor(int(drawn.indices["test"][r]))
        images.append(image.expand(3, -1, -1).permute(1, 2, 0).numpy())
    return images


def _side_by_side(image: np.ndarray, thumbnail: np.ndarray, height: int = 64) -> np.ndarray:
    """The image and the thumbnail, each scaled (nearest pixel) to ``height`` and put side by side."""

    def scaled(a: np.ndarray) -> np.ndarray:
        rows = np.arange(height) * a.shape[0] // height
        cols = (
            np.arange(round(height * a.shape[1] / a.shape[0]))
            * a.shape[1]
            // round(height * a.shape[1] / a.shape[0])
        )
        return a[rows][:, cols]

    gap = np.ones((height, height // 8, 3))
    left = scaled(image.astype(np.float64) / 255.0)
    right = scaled(thumbnail)
    return np.concatenate([left, gap, right], axis=1)


def gate_view(thumbnails: np.ndarray, size: int) -> np.ndarray:
    """Thumbnails (n, 3, t, t) as a thumbnail gate of input ``size`` sees them
    (``gates.resize_thumbnails``), as (n, size, size, 3)."""
    return resize_thumbnails(torch.as_tensor(thumbnails), size).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def disagreement_gallery(
    study: Study,
    images: Callable[[str], DatasetSplits],
    seed: int,
    method: str = "moe_thumbnail",
    n: int = 3,
) -> Figure:
    """Test images where the experts disagree (``gate_analysis.disagreement_examples``), ``n`` per
    dataset, one row each: the image as stored (``images(dataset)``: the split its pool was drawn from)
    beside the thumbnail the gate saw (at the size chosen on validation), and the gate's weight on each
    expert, coloured by whether that expert is right and labelled with its answer; the title gives the
    true class and the fused answer. Where the experts never disagree, one panel says so."""
    examples = [(run, disagreement_examples(run.result, seed, method, n)) for run in study.runs]
    count = sum(e["row"].nunique() for _, e in examples)
    if count == 0:
        return skipped_figure(
            "Gallery skipped: the experts never disagree on right and wrong on these test images, "
            "so there is nothing to show."
        )
    k_most = max(len(run.pool.backbones) for run in study.runs)
    fig, axes = panel_grid(
        2 * count,
        panel_height=max(1.35, 0.5 + 0.25 * k_most),
        gridspec_kw={"width_ratios": [1, 1.35]},
    )
    pairs = iter(zip(axes[::2], axes[1::2]))
    for run, frame in examples:
        name, drawn = run.dataset, run.pool.draw(seed)
        classes = drawn.class_names
        experts = [short_name(b) for b in drawn.backbones]
        size = int(run.result.outputs[(method, seed)].extra.get("thumbnail_size", drawn.thumbnail_size))
        rows = list(dict.fromkeys(frame["row"]))
        stored = stored_test_images(images(name), drawn, rows)
        seen = gate_view(drawn.thumbnails["test"][rows], size)
        for row, image, thumb in zip(rows, stored, seen):
            left, right = next(pairs)
            part = frame[frame["row"] == row]
            label, fused = classes[part["label"].iloc[0]], classes[part["fused"].iloc[0]]
            left.imshow(_side_by_side(image, thumb))
            left.set(xticks=[], yticks=[], title=f"{name}: {label}")
            left.set_xlabel(f"image | {size} px thumbnail", fontsize=9)
            y = np.arange(len(part))[::-1]
            colours = [RIGHT if ok else WRONG for ok in part["right"]]
            right.barh(y, part["weight"], color=colours)
            for yi, w, p in zip(y, part["weight"], part["prediction"]):
                right.text(min(w, 1.0) + 0.02, yi, classes[p], va="center", fontsize=9)
            right.set_yticks(y, experts[: len(part)])
            right.set_xlim(0, 1.45)
            right.set_xticks([0, 0.5, 1])
            ok = "right" if fused == label else "wrong"
            right.set_title(f"fused: {fused} ({ok})", color=RIGHT if ok == "right" else WRONG)
    axes[-1].set_xlabel("gate weight (bar colour: the expert is right / wrong)")
    return fig
