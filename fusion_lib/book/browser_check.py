"""Check the built book in a real browser: ``python -m fusion_lib.book.browser_check [_build/html]``.

Every page under the HTML folder is loaded in headless Chromium (the system binary, driven by
Playwright) with the network cut off, and must show: no console errors, every image loaded, no raw
formula left (MathJax typeset every ``\\(`` and ``$$``). The search page must find a word. Exit code
0 only when every check passed; 2 when no browser could be found (it never pretends to pass).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

BROWSER_ENV = "FUSION_BROWSER"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}
RAW_MATH = ("\\(", "\\[", "$$")
TIMEOUT_MS = 30_000

# Waits for MathJax (when the page loads it) and for every image, then returns what failed. Text
# inside code, scripts and typeset math is not prose: a `\(` there is not an untypeset formula.
_INSPECT = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all(Array.from(document.images, img => {
    img.loading = "eager";
    return img.decode().catch(() => null);
  }));
  const broken = Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
    .map(i => i.getAttribute("src"));
  const skip = "pre, code, script, style, textarea, mjx-container, mjx-assistive-mml";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    if (RAW.some(r => n.textContent.includes(r))) raw.push(n.textContent.trim().slice(0, 80));
  }
  return {broken, raw};
}"""


class BrowserNotFoundError(RuntimeError):
    """No Chromium-family browser is installed (or the one named by ``FUSION_BROWSER`` is missing)."""


@dataclass
class PageReport:
    """What one page showed in the browser; ``ok`` when nothing went wrong."""

    page: str
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    raw_math: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.console_errors or self.broken_images or self.raw_math)

    def problems(self) -> list[str]:
        """One line per problem, naming the page."""
        return (
            [f"{self.page}: console error: {e}" for e in self.console_errors]
            + [f"{self.page}: image did not load: {s}" for s in self.broken_images]
            + [f"{self.page}: formula not typeset: {t!r}" for t in self.raw_math]
        )


def find_browser() -> str:
    """The Chromium binary: ``$FUSION_BROWSER``, else the first of ``BROWSER_NAMES`` on the PATH."""
    given = os.environ.get(BROWSER_ENV)
    if given:
        if not Path(given).is_file():
            raise BrowserNotFoundError(f"{BROWSER_ENV}={given} is not a file; point it at a Chromium binary")
        return given
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFoundError(
        f"no Chromium-family browser found (looked for {', '.join(BROWSER_NAMES)} on the PATH and "
        f"${BROWSER_ENV}). Install one (Debian/Ubuntu: `apt-get install -y chromium`) or set "
        f"{BROWSER_ENV} to its binary; the book was NOT checked."
    )


def book_pages(html: Path) -> list[Path]:
    """Every built HTML page under ``html``, without the theme's and Sphinx's support folders."""
    if not (html / "index.html").is_file():
        raise FileNotFoundError(
            f"{html} holds no built book (no index.html); build it first, "
            f"e.g. `python -m fusion_lib.book build --profile ci`"
        )
    pages = (p for p in html.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(html).parts))
    # Jupyter Book's index.html only redirects to the root chapter, which is checked itself
    return sorted(p for p in pages if 'http-equiv="refresh"' not in p.read_text(errors="replace").lower())


def _offline(route) -> None:  # noqa: ANN001 (a playwright Route)
    """Serve local files only: a page that needs the network fails here, as it would offline."""
    if route.request.url.startswith(("file:", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def check_book(html: Path, word: str = "mixture", browser: str | None = None) -> tuple[list[PageReport], int]:
    """Load every page of the book at ``html`` in headless Chromium, network off.

    Returns one report per page and the number of search results for ``word``.
    """
    from playwright.sync_api import sync_playwright
    from tqdm.auto import tqdm

    pages = book_pages(html)
    executable = browser or find_browser()
    reports = []
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        context = chrome.new_context()
        context.route("**/*", _offline)
        for path in tqdm(pages, desc="pages", unit="page"):
            report = PageReport(str(path.relative_to(html)))
            page = context.new_page()
            page.on(
                "console", lambda m, r=report: r.console_errors.append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e, r=report: r.console_errors.append(str(e)))
            page.goto(path.resolve().as_uri(), wait_until="load", timeout=TIMEOUT_MS)
            found = page.evaluate(_INSPECT.replace("RAW", repr(list(RAW_MATH))))
            report.broken_images, report.raw_math = found["broken"], found["raw"]
            reports.append(report)
            page.close()
        hits = search_hits(context, html, word)
        chrome.close()
    return reports, hits


def search_hits(context, html: Path, word: str) -> int:  # noqa: ANN001 (a playwright BrowserContext)
    """How many pages the book's own search page lists for ``word`` (0 when it finds none)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page = context.new_page()
    page.goto((html / "search.html").resolve().as_uri() + f"?q={word}", wait_until="load", timeout=TIMEOUT_MS)
    count = "() => document.querySelectorAll('ul.search li').length"
    # Sphinx's search says in p.search-summary when it has finished, with or without results
    done = "() => /finished|did not match/i.test(document.querySelector('.search-summary')?.innerText || '')"
    try:
        page.wait_for_function(done, timeout=TIMEOUT_MS)
    except PlaywrightTimeoutError:  # the search never finished: count what is there, which is nothing
        pass
    hits = page.evaluate(count)
    page.close()
    return hits


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m fusion_lib.book.browser_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("html", nargs="?", type=Path, default=Path("_build") / "html", help="built book")
    parser.add_argument("--word", default="mixture", help="a word the search page must find")
    args = parser.parse_args(argv)
    try:
        reports, hits = check_book(args.html, args.word)
    except (BrowserNotFoundError, FileNotFoundError) as exc:
        print(f"check-book: {exc}", file=sys.stderr)
        return 2
    problems = [line for r in reports for line in r.problems()]
    if hits == 0:
        problems.append(f"search.html: searching for {args.word!r} found nothing")
    for line in problems:
        print(line, file=sys.stderr)
    print(
        f"check-book: {len(reports)} pages, {len(problems)} problem(s); search for {args.word!r}: {hits} page(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
