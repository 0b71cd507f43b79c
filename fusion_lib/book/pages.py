"""Numbers, tables and figures as the book shows them: percentages, accuracy points, tidy frames turned
into rounded, labelled tables (no raw frames on the page), text glued as Markdown, and the settings
every page is shown with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from IPython.display import Markdown
from myst_nb import glue

from fusion_lib.book.figures import apply_style
from fusion_lib.book.profiles import Profile
from fusion_lib.data.backbones import short_name
from fusion_lib.studies.stats import interval as interval  # re-exported: the notebooks use it from here


def markdown(text: str) -> Markdown:
    """``text`` as Markdown to ``display`` or ``glue``, taken as it is.

    ``IPython.display.Markdown(s)`` (also as ``data=s``) reads ``s`` as a file when one of that name
    exists and fetches it when it starts with "http": a dataset given as an ImageFolder path would
    fail with ``IsADirectoryError``.
    """

    shown = Markdown()
    shown.data = text
    return shown


def page_defaults() -> None:
    """The settings every page is shown with: whole cell text (pandas cuts text over 50 characters to
    "..."), up to 200 rows of a table, and the book's figure style (``figures.apply_style``)."""

    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_rows", 200)
    apply_style()


def profile_table(profile: Profile) -> pd.DataFrame:
    """The profile's settings as the table each notebook opens with."""
    return pd.Series(profile.describe(), name=f"profile {profile.name}").rename_axis("setting").to_frame()


def percent(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage: ``percent(0.9123)`` -> ``"91.2%"``."""
    return f"{100 * fraction:.{digits}f}%"


def points(fraction: float, digits: int = 1, sign: bool = True) -> str:
    """A difference of two accuracies (fractions) in percentage points: ``points(0.0123)`` -> ``"+1.2"``."""
    return f"{100 * fraction:{'+' if sign else ''}.{digits}f}"


def table(
    frame: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    *,
    index: str | Sequence[str] | None = None,
    percent_columns: Sequence[str] = (),
    digits: int = 3,
    shorten: Sequence[str] = (),
) -> pd.DataFrame:
    """A tidy frame as the book shows it: the ``shorten`` columns' backbone names shortened
    (``short_name``), ``percent_columns`` as percentages, other floats rounded to ``digits``, ``index``
    set, and columns (and index names) renamed by ``labels``.

    Only the named columns are transformed; an unknown name raises ``KeyError`` naming it.
    """
    named = [*percent_columns, *shorten, *([index] if isinstance(index, str) else (index or []))]
    missing = [c for c in named if c not in frame.columns]
    if missing:
        raise KeyError(f"table: no column(s) {missing}; the frame has {list(frame.columns)}")
    out = frame.copy()
    for col in shorten:
        out[col] = out[col].map(lambda v: short_name(v) if isinstance(v, str) else v)
    for col in out.columns:
        if col in percent_columns:
            out[col] = out[col].map(lambda v: percent(v) if pd.notna(v) else "")
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(digits)
    if index is not None:
        out = out.set_index(index)
    labels = dict(labels or {})
    out = out.rename(columns=labels)
    out.index.names = [labels.get(n, n) for n in out.index.names]
    return out


def glue_values(values: Mapping[str, object], prefix: str = "") -> None:
    """``myst_nb.glue`` every ``prefix`` + name -> value, for the page's text to cite (none is shown in
    place)."""

    for name, value in values.items():
        glue(prefix + name, value, display=False)
