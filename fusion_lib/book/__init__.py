"""The book: run ``profiles``, the notebook runner and Jupyter Book ``build`` (``python -m fusion_lib.book``),
``report`` helpers for tables and figures, the headless-browser check (``browser_check``) and the Sphinx
extension of the API chapter (``sphinx_ext``)."""
