"""The book, in three places, on a shared page kit.

- ``chapters``: how each notebook's page shows the studies it runs (the studies themselves are in
  ``fusion_lib.studies``): page tables (``agreement_tables``, ``moe_tables``, ``multimodal_tables``), figures
  (``study_figures``, ``moe_figures``, ``multimodal_figures``) and the confirmatory run (``confirmatory``);
- ``own_images``: the product, the study and its one-page report on an ImageFolder of your own
  (``python -m fusion_lib.book report``);
- ``tooling``: the notebook runner and Jupyter Book ``build`` (``python -m fusion_lib.book``), the
  headless-browser check (``browser_check``) and the Sphinx extension of the API chapter (``sphinx_ext``).

What every page shares sits at this level: the run ``profiles``, the figure style and layouts
(``figures``) and the table and glue helpers (``pages``). Chapters and the report never import the tooling.
"""
