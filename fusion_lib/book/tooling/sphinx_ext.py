"""Sphinx extension for the book's HTML (listed in ``_config.yml``'s ``sphinx: extra_extensions``).

sphinx-thebe registers its inline configuration script twice under Sphinx 7 (once with no file name,
once with an empty one), so every page declared ``const THEBE_JS_URL`` twice and the browser logged a
SyntaxError. This drops repeated scripts from each page, keeping the first.
"""

from __future__ import annotations

from typing import Any


def drop_repeated_scripts(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """``html-page-context`` handler: keep one copy of scripts equal but for ``None`` vs ``""`` file name."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    if "script_files" in context:
        context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Register the handler with Sphinx."""
    app.connect("html-page-context", drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
