"""Figures drawn for the book's column: one style, at most two panels a row, never a strip.

The book's text column is 672 px wide at a laptop's width (1280 px), and notebook figures are
rendered at 100 dpi, so a figure ``COLUMN_WIDTH`` inches wide is shown at about its natural size
and its 10 pt text reads as about 10 pt. ``panel_grid`` wraps one panel per dataset into rows of two,
so four datasets make a 2 x 2 grid instead of a 4:1 strip that the page would shrink to a third.
``python -m fusion_lib.book.tooling.browser_check`` reports any figure that still ends up too wide or too small.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from myst_nb import glue

COLUMN_WIDTH = 6.8  # inches: 680 px at the notebooks' 100 dpi, the column's width
PANEL_HEIGHT = 3.2  # inches per row of panels: a row of two stays about twice as wide as tall
MAX_COLUMNS = 2
MAX_ASPECT = 2.05  # width / height: the browser check allows 2.2 for the drawn PNG, whose edges are trimmed
# One style for every figure: text no smaller than 9.5 pt at the column's scale, light grid lines.
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.title_fontsize": 9.5,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
}


def apply_style() -> None:
    """Set the book's figure style (matplotlib rcParams); every helper here calls it first."""

    mpl.rcParams.update(STYLE)


def panel_grid(
    n: int,
    *,
    panel_height: float = PANEL_HEIGHT,
    width: float = COLUMN_WIDTH,
    columns: int = MAX_COLUMNS,
    **subplots: Any,
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels in rows of at most ``columns`` (two by default), the column's width,
    and the axes of those panels in reading order (empty grid cells are removed).

    ``subplots`` go to ``plt.subplots`` (``sharex``, ``sharey``, ``gridspec_kw``, ``layout``...). A
    figure of few short panels is made taller, never wider than ``MAX_ASPECT`` times its height.
    """

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"panel_grid needs a number of panels >= 1, got {n!r}")
    if not 1 <= columns <= MAX_COLUMNS:
        raise ValueError(f"at most {MAX_COLUMNS} panels a row fit the column, got columns={columns}")
    apply_style()
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(rows, cols, figsize=_size(width, panel_height * rows), squeeze=False, **subplots)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def image_grid(rows: int, columns: int, height: float, **subplots: Any) -> tuple[Figure, Any]:
    """A ``rows`` x ``columns`` grid of small images (thumbnails, class examples) the column's width and
    ``height`` inches tall (taller where needed to stay within ``MAX_ASPECT``), in the book's style; the
    axes as ``plt.subplots`` gives them (a 2-d array). Images, unlike data panels, may be many a row."""

    apply_style()
    return plt.subplots(rows, columns, figsize=_size(COLUMN_WIDTH, height), squeeze=False, **subplots)


def _size(width: float, height: float) -> tuple[float, float]:
    """A figure size no wider than ``MAX_ASPECT`` times its height."""
    return width, max(height, width / MAX_ASPECT)


def figure(height: float = PANEL_HEIGHT, width: float = COLUMN_WIDTH) -> tuple[Figure, Axes]:
    """One panel the column's width (in the book's style)."""
    fig, (ax,) = panel_grid(1, panel_height=height, width=width)
    return fig, ax


def skipped_figure(sentence: str) -> Figure:
    """One panel that only says ``sentence``: what a page shows in place of a figure whose study does not
    apply to its datasets, so that the page's reference to the figure still resolves."""

    fig, ax = figure()
    ax.set_axis_off()
    ax.text(0.5, 0.5, textwrap.fill(sentence, 60), ha="center", va="center", transform=ax.transAxes)
    return fig


def first_column(ax: Axes) -> bool:
    """Whether ``ax`` is in the first column of its figure's grid (where shared row labels are written),
    also once a colour bar has nested it in a grid of its own."""
    spec = ax.get_subplotspec()
    return spec is None or spec.get_topmost_subplotspec().is_first_col()


def rotate_xticks(ax: Axes, degrees: float = 30) -> None:
    """Slant the x tick labels, anchored at their right end, so that neighbours do not run together."""
    for label in ax.get_xticklabels():
        label.set(rotation=degrees, ha="right", rotation_mode="anchor")


def interval_bars(ax: Axes, at: Any, frame: pd.DataFrame, *, horizontal: bool = False, **style: Any) -> None:
    """Error bars from ``frame``'s ``accuracy`` to its ``low`` and ``high`` (a 95% interval), at the
    positions ``at`` on the other axis: vertical bars, or horizontal ones where the accuracy is on x."""
    spread = [frame["accuracy"] - frame["low"], frame["high"] - frame["accuracy"]]
    if horizontal:
        ax.errorbar(frame["accuracy"], at, xerr=spread, **style)
    else:
        ax.errorbar(at, frame["accuracy"], yerr=spread, **style)


def lay_out(fig: Figure) -> Figure:
    """``tight_layout``, unless the figure has a layout engine of its own (constrained layout)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return fig


def glue_figure(name: str, fig: Figure) -> None:
    """Lay the figure out (``tight_layout``, unless it has a layout engine of its own), glue it under
    ``name`` for a ``{glue:figure}`` on the page, and close it."""

    glue(name, lay_out(fig), display=False)
    plt.close(fig)
