"""Notebook 05's zero-shot results as the page shows them: ``label_studies.ZeroShots``' table, text and
per-model table, or the sentence saying the study was skipped where no dataset has enough classes."""

from __future__ import annotations

import pandas as pd
from IPython.display import Markdown

from fusion_lib.book.chapters.multimodal_figures import NO_ZERO_SHOT
from fusion_lib.book.pages import markdown
from fusion_lib.studies.label_studies import ZeroShots


def zero_shot_table(zero: ZeroShots) -> pd.DataFrame | Markdown:
    """``ZeroShots.table``, or the sentence saying the study was skipped."""
    return zero.table() if zero.studies else markdown(NO_ZERO_SHOT)


def zero_shot_text(zero: ZeroShots) -> Markdown:
    """``ZeroShots.text`` as the page glues it (one paragraph whichever it is)."""
    # markdown, not Markdown: a dataset given as an ImageFolder path names a folder, which Markdown
    # would try to read
    return markdown(zero.text() if zero.studies else NO_ZERO_SHOT)


def zero_shot_per_model(zero: ZeroShots) -> pd.DataFrame | Markdown:
    """``ZeroShots.per_model``, or the sentence saying the study was skipped."""
    return zero.per_model() if zero.studies else markdown(NO_ZERO_SHOT)
