"""Check the built book in a real browser: ``python -m fusion_lib.book.tooling.browser_check [_build/html]``.

Every page under the HTML folder is loaded in headless Chromium (the system binary, driven by
Playwright) at a laptop's width with the network cut off, and must show: no console errors, every
image loaded, no raw formula left (MathJax typeset every ``\\(`` and ``$$``). Read at a glance: no
figure drawn at under half its natural width or more than about twice as wide as tall, no table or
code block wider than its column without a scroll bar, no table cell cut short with "...". The
search page must find a word. Exit code 0 only when every check passed; 2 when no browser could be
found (it never pretends to pass).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

BROWSER_ENV = "FUSION_BROWSER"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}
RAW_MATH = ("\\(", "\\[", "$$")
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 800}  # a laptop's screen, where the book is read
# What the layout checks tolerate: a figure shown at `scale` or more of its natural width keeps its
# text readable; none is wider than `aspect` times its height; images narrower than `icon` pixels are
# icons and logos, not figures; `slack` pixels are sub-pixel rounding, not overflow.
LIMITS = {"scale": 0.5, "aspect": 2.2, "icon": 200, "slack": 2}

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

# Measures the page as laid out (run after _INSPECT, so images have their sizes), within the main
# content column only: the theme's logos and sidebars are not the book's figures and tables.
_MEASURE = r"""(lim) => {
  // a reader opens collapsed cells (hide-input, hide-output), so they are measured open
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const column = document.querySelector("article.bd-article") || document.querySelector("main")
    || document.body;
  const shown = el => el.getClientRects().length > 0;
  const clip = (text, n) => {
    const s = text.replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n - 1) + "\u2026" : s;
  };
  const file = img => (img.getAttribute("src") || "").split("/").pop();
  const figureName = img => {
    const fig = img.closest("figure");
    if (!fig) return `image ${file(img)}`;
    const caption = fig.querySelector(".caption-text, figcaption");
    return `figure ${fig.id ? "#" + fig.id : file(img)}`
      + (caption ? ` ("${clip(caption.innerText, 50)}")` : "");
  };
  const tableName = t => {
    const row = t.querySelector("thead tr") || t.querySelector("tr");
    const heads = row ? Array.from(row.cells, c => clip(c.innerText, 20)).filter(Boolean) : [];
    return `table "${heads.slice(0, 3).join(" | ")}"`;
  };
  const codeName = pre => `code block "${clip(pre.innerText.split("\n").find(l => l.trim()) || "", 60)}"`;

  // an SVG's natural size is whatever its header says, not pixels of text: only raster images count
  const raster = img => !/\.svg([?#]|$)|^data:image\/svg/i.test(img.currentSrc || img.src);
  const figures = Array.from(column.querySelectorAll("img"))
    .filter(i => shown(i) && raster(i) && i.naturalWidth >= lim.icon);
  const small = figures.filter(i => i.clientWidth < lim.scale * i.naturalWidth)
    .map(i => ({name: figureName(i), shown: i.clientWidth, natural: i.naturalWidth}));
  const wide = figures.filter(i => i.naturalWidth > lim.aspect * i.naturalHeight)
    .map(i => ({name: figureName(i), width: i.naturalWidth, height: i.naturalHeight}));

  // Wider than its container is fine only when a box up from it scrolls the rest into view; the
  // first box that holds content wider than itself decides: it scrolls it, or clips it from view.
  const unreachable = el => {
    // its room: the nearest box no wider than its own parent (an inline box has no width, and one
    // grown to fit the element, such as a wrapper that should scroll but does not, gives no room)
    const grown = b => b.clientWidth === 0 || b.offsetWidth > b.parentElement.clientWidth + lim.slack;
    let box = el.parentElement;
    while (box !== column && grown(box)) box = box.parentElement;
    if (el.scrollWidth <= box.clientWidth + lim.slack) return null;
    const found = {width: el.scrollWidth, room: box.clientWidth, clipped: false};
    for (let a = el; a; a = a === column ? null : a.parentElement) {
      const overflow = getComputedStyle(a).overflowX;
      if (overflow === "visible" || a.scrollWidth <= a.clientWidth + lim.slack) continue;
      return ["auto", "scroll"].includes(overflow) ? null : {...found, clipped: true};
    }
    return found;
  };
  const overflowing = [];
  for (const el of column.querySelectorAll("table, pre")) {
    const found = shown(el) && unreachable(el);
    if (found) overflowing.push({name: el.tagName === "PRE" ? codeName(el) : tableName(el), ...found});
  }

  const truncated = [];
  for (const t of column.querySelectorAll("table")) {
    const cells = Array.from(t.querySelectorAll("td, th"), c => c.innerText.trim())
      .filter(s => s.endsWith("...") || s.endsWith("\u2026"));
    if (shown(t) && cells.length) {
      truncated.push({name: tableName(t), count: cells.length,
                      cells: [...new Set(cells)].slice(0, 3).map(s => clip(s, 60))});
    }
  }
  return {small, wide, overflowing, truncated};
}"""


class BrowserNotFoundError(RuntimeError):
    """No Chromium-family browser is installed (or the one named by ``FUSION_BROWSER`` is missing)."""


@dataclass
class PageReport:
    """What one page showed in the browser; ``ok`` when nothing went wrong.

    The layout lists hold one description per element (naming it and giving its sizes).
    """

    page: str
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    raw_math: list[str] = field(default_factory=list)
    small_figures: list[str] = field(default_factory=list)
    wide_figures: list[str] = field(default_factory=list)
    overflowing: list[str] = field(default_factory=list)
    truncated_cells: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems()

    def record_layout(self, found: dict[str, list[dict[str, Any]]]) -> None:
        """Describe what ``_MEASURE`` found on the page."""
        self.small_figures = [
            f"{f['name']} is drawn {f['shown']} px wide, {f['shown'] / f['natural']:.0%} of its {f['natural']} px"
            for f in found["small"]
        ]
        self.wide_figures = [
            f"{f['name']} is {f['width']}x{f['height']} px, {f['width'] / f['height']:.1f} times as wide as tall"
            for f in found["wide"]
        ]
        self.overflowing = [
            f"{o['name']} is {o['width']} px wide in a {o['room']} px column and "
            + ("is cut off" if o["clipped"] else "runs past it")
            for o in found["overflowing"]
        ]
        self.truncated_cells = [
            f"{t['name']} has {t['count']} cell(s) cut short: " + ", ".join(repr(c) for c in t["cells"])
            for t in found["truncated"]
        ]

    def problems(self) -> list[str]:
        """One line per problem, naming the page and, for layout, what to change."""
        return (
            [f"{self.page}: console error: {e}" for e in self.console_errors]
            + [f"{self.page}: image did not load: {s}" for s in self.broken_images]
            + [f"{self.page}: formula not typeset: {t!r}" for t in self.raw_math]
            + [
                f"{self.page}: {d}, too small to read without zooming: give it a smaller figsize "
                "(or split its panels) so it is shown at half its width or more"
                for d in self.small_figures
            ]
            + [
                f"{self.page}: {d}; no figure should be more than about twice as wide as tall: "
                "stack its panels or give it a taller figsize"
                for d in self.wide_figures
            ]
            + [
                f"{self.page}: {d}, with no scroll bar to reach the rest: make it narrower or put it "
                "in a box that scrolls (overflow-x: auto)"
                for d in self.overflowing
            ]
            + [
                f"{self.page}: {d}: show the text whole (pandas: display.max_colwidth, max_rows, "
                "max_columns) or select and shorten it yourself"
                for d in self.truncated_cells
            ]
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
    # local: playwright comes with the dev extra only; the book builds without it
    from playwright.sync_api import sync_playwright

    pages = book_pages(html)
    executable = browser or find_browser()
    reports = []
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        context = chrome.new_context(viewport=VIEWPORT)
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
            report.record_layout(page.evaluate(_MEASURE, LIMITS))
            reports.append(report)
            page.close()
        hits = search_hits(context, html, word)
        chrome.close()
    return reports, hits


def search_hits(context, html: Path, word: str) -> int:  # noqa: ANN001 (a playwright BrowserContext)
    """How many pages the book's own search page lists for ``word`` (0 when it finds none)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # local: as above

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
        prog="python -m fusion_lib.book.tooling.browser_check", description=__doc__.split("\n")[0]
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
