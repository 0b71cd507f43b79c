"""The browser check finds what a reader would see go wrong (needs a Chromium-family browser)."""

from __future__ import annotations

import pytest

from fusion_lib.book import browser_check as bc

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
