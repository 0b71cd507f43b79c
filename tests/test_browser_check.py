"""The browser check finds what a reader would see go wrong (needs a Chromium-family browser)."""

from __future__ import annotations

import pytest

from fusion_lib.book.tooling import browser_check as bc

try:
    BROWSER = bc.find_browser()
except bc.BrowserNotFoundError:
    BROWSER = None

PAGE = """<!DOCTYPE html><html><body>
<p>{body}</p><pre>code may hold \\( and $$ freely</pre>{extra}
</body></html>"""


def _book(tmp_path, good_body, bad_extra):
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=good.html" />')
    (html / "good.html").write_text(PAGE.format(body=good_body, extra=""))
    (html / "bad.html").write_text(PAGE.format(body="raw \\(x^2\\) left", extra=bad_extra))
    (html / "search.html").write_text(
        "<p class='search-summary'>Your search did not match any documents.</p><ul class='search'></ul>"
    )
    return html


def test_no_browser_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv(bc.BROWSER_ENV, str(tmp_path / "missing"))
    with pytest.raises(bc.BrowserNotFoundError, match="not a file"):
        bc.find_browser()
    monkeypatch.delenv(bc.BROWSER_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(bc.BrowserNotFoundError, match="apt-get install -y chromium"):
        bc.find_browser()
    assert bc.main([str(tmp_path)]) == 2  # no built book either: it says so and fails


def test_pages_skip_redirects_and_support_folders(tmp_path):
    html = _book(tmp_path, "fine", "")
    (html / "_static").mkdir()
    (html / "_static" / "x.html").write_text("<p>theme file</p>")
    assert [p.name for p in bc.book_pages(html)] == ["bad.html", "good.html", "search.html"]


@pytest.mark.skipif(BROWSER is None, reason="needs Chromium (apt-get install -y chromium)")
def test_check_book_reports_console_errors_broken_images_and_raw_math(tmp_path):
    html = _book(
        tmp_path,
        "nothing wrong here",
        '<img src="missing.png"><script>console.error("boom")</script>'
        '<img src="https://example.org/remote.png">',
    )
    reports, hits = bc.check_book(html, word="anything")
    by_page = {r.page: r for r in reports}
    assert by_page["good.html"].ok and hits == 0
    bad = by_page["bad.html"]
    assert "boom" in " ".join(bad.console_errors)
    assert sorted(bad.broken_images) == [
        "https://example.org/remote.png",
        "missing.png",
    ]  # offline: no network
    assert bad.raw_math == ["raw \\(x^2\\) left"]


WIDE_ROW = "<tr>" + "<td>a_long_unbreakable_cell_value_0123456789</td>" * 12 + "</tr>"
LAYOUT_PAGES = {
    # Everything read at a glance: figures at their natural width (an icon and a logo outside the
    # content column may be shrunk), wide tables and code scroll in their own boxes, cells whole.
    "good.html": """<nav><img src="big.png" style="width:50px"></nav><article class="bd-article">
<figure id="fig-fine"><img src="big.png"><figcaption>Readable</figcaption></figure>
<img src="icon.png" style="width:16px">
<div style="overflow-x:auto"><table><tr><th>Model</th><th>Accuracy</th></tr>{row}</table></div>
<pre style="overflow-x:auto">{line}</pre>
<table><tr><th>Model</th></tr><tr><td>resnet50</td></tr></table>
<details><summary>code</summary><pre style="overflow-x:auto">{line}</pre></details></article>""",
    "small.html": """<article class="bd-article"><div style="width:300px">
<figure id="fig-shrunk" style="margin:0"><img src="big.png" style="max-width:100%"><figcaption>Shrunk to 30%</figcaption>
</figure></div></article>""",
    "wide.html": '<article class="bd-article"><img src="banner.png"></article>',
    # One table clipped by its box, one whose auto box grew instead of scrolling, and code running
    # past its column, hidden in a collapsed cell (which a reader opens).
    "overflow.html": """<article class="bd-article">
<div style="overflow-x:hidden"><table><tr><th>Clipped</th><th>B</th></tr>{row}</table></div>
<div style="width:400px"><div style="overflow-x:auto;width:max-content">
<table><tr><th>Grown</th></tr>{row}</table></div></div>
<details><summary>code</summary><pre style="overflow:visible">{line}</pre></details></article>""",
    "truncated.html": """<article class="bd-article"><table><thead><tr><th></th><th>Name</th></tr></thead>
<tr><th>0</th><td>a very long backbone na...</td></tr><tr><th>1</th><td>\u2026</td></tr></table></article>""",
}


def _layout_book(tmp_path):
    from PIL import Image

    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=good.html" />')
    for name, size in {"big.png": (1000, 800), "icon.png": (64, 64), "banner.png": (900, 300)}.items():
        Image.new("RGB", size, "white").save(html / name)
    line = "x = " + "1 + " * 400 + "1"
    for name, body in LAYOUT_PAGES.items():
        text = body.replace("{row}", WIDE_ROW).replace("{line}", line)
        (html / name).write_text(f"<!DOCTYPE html><html><body>{text}</body></html>")
    (html / "search.html").write_text(
        "<p class='search-summary'>Search finished, found 1 page.</p><ul class='search'><li>x</li></ul>"
    )
    return html


@pytest.mark.skipif(BROWSER is None, reason="needs Chromium (apt-get install -y chromium)")
def test_check_book_reports_what_cannot_be_read_at_a_glance(tmp_path):
    reports, hits = bc.check_book(_layout_book(tmp_path), word="anything")
    by_page = {r.page: r for r in reports}
    assert by_page["good.html"].ok and hits == 1, by_page["good.html"].problems()
    layout = ("small_figures", "wide_figures", "overflowing", "truncated_cells")
    failing = {page: [f for f in layout if getattr(r, f)] for page, r in by_page.items()}
    assert failing == {
        "good.html": [],
        "search.html": [],
        "small.html": ["small_figures"],
        "wide.html": ["wide_figures"],
        "overflow.html": ["overflowing"],
        "truncated.html": ["truncated_cells"],
    }
    (small,) = by_page["small.html"].problems()
    assert 'figure #fig-shrunk ("Shrunk to 30%") is drawn 300 px wide, 30% of its 1000 px' in small
    (wide,) = by_page["wide.html"].problems()
    assert "image banner.png is 900x300 px, 3.0 times as wide as tall" in wide
    clipped, grown, code = by_page["overflow.html"].overflowing
    assert clipped.startswith('table "Clipped | B"') and clipped.endswith("is cut off")
    assert grown.startswith('table "Grown"') and "in a 400 px column and runs past it" in grown
    assert code.startswith('code block "x = 1 + 1 + ') and code.endswith("runs past it")
    (cut,) = by_page["truncated.html"].truncated_cells
    assert cut == "table \"Name\" has 2 cell(s) cut short: 'a very long backbone na...', '\u2026'"
