"""What builds and checks the book: the notebook runner and Jupyter Book build (``build``), the
headless-browser check of the built pages (``browser_check``) and the API chapter's Sphinx extension
(``sphinx_ext``)."""
