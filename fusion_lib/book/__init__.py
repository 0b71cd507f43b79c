"""The book, in three places, on a shared page kit.

- ``chapters``: each notebook's tables and figures (``agreement_tables``, ``moe_tables``, ``moe_figures``,
  ``multimodal_tables``, ``multimodal_figures``, ``ablation_runs``, ``confirmatory``, ``study_figures``);
- ``own_images``: the product, the study and its one-page report on an ImageFolder of your own
  (``python -m fusion_lib.book report``);
- ``tooling``: the notebook runner and Jupyter Book ``build`` (``python -m fusion_lib.book``), the
  headless-browser check (``browser_check``) and the Sphinx extension of the API chapter (``sphinx_ext``).

What every page shares sits at this level: the run ``profiles``, the figure style and layouts
(``figures``) and the table and glue helpers (``pages``). Chapters and the report never import the tooling.
"""
