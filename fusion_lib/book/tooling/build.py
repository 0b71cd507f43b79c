"""Execute the book's notebooks with papermill and build the Jupyter Book.

``python -m fusion_lib.book run --profile book --out DIR [--notebooks 01 03] [-p key value ...]``
executes notebooks/NN_*.ipynb into DIR; ``python -m fusion_lib.book report PATH --out DIR`` runs the
book's study on an ImageFolder of your own (``fusion_lib.book.own_images.report``); ``python -m fusion_lib.book sync-colab`` points every
notebook's Colab install cell at ``repository.url`` of ``_config.yml`` (the one place the URL is
configured; the build refuses notebooks that disagree); ``python -m fusion_lib.book build`` is
``make book``:

1. copy _config.yml, _toc.yml and book/ into the staging tree ``_build/src`` (it mirrors the
   repository, so the Colab/JupyterLab launch buttons point at real repository paths), and MathJax
   (the ``mathjax`` asset) into the book's static files, so formulas typeset offline;
2. execute every notebook with the ``book`` profile into ``_build/src/notebooks`` — a notebook
   whose source, parameters and fusion_lib code are unchanged since its last successful execution
   is reused (``--force`` re-executes it); papermill's injected parameters cell is tagged
   ``remove-cell`` there, so the page shows the parameters once;
3. write the profiles table and the execution timings that the reproducibility chapter includes,
   and the API chapter's list of modules (``public_modules``; sphinx autodoc renders their docstrings);
4. ``jupyter-book build _build/src --path-output . --all -W -n --keep-going``, which never executes
   notebooks (``execute_notebooks: off``) and writes ``_build/html/index.html``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import pkgutil
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import yaml

import fusion_lib
from fusion_lib import LAYERS
from fusion_lib.book.chapters.confirmatory import sweep_design
from fusion_lib.book.own_images import report as own_images
from fusion_lib.book.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from fusion_lib.data.assets import MARKER, fetch
from fusion_lib.studies.plan import load_plan

log = logging.getLogger("fusion_lib.book.tooling.build")

KERNEL = "python3"
BOOK_FILES = ("_config.yml", "_toc.yml")
BOOK_DIR = "book"
NOTEBOOK_DIR = "notebooks"
STAGING = Path("_build") / "src"
GENERATED = "_generated"  # under book/ in the staging tree; included by reproducibility.md
STAMP_KEY = "fusion_book"
# Under the staging tree; _config.yml lists _mathjax in html_static_path, so this lands in the HTML's
# _static/mathjax (mathjax_path). Not in _static itself: Jupyter Book adds every .js found there to
# every page, which would load MathJax twice.
MATHJAX_STATIC = Path("_mathjax") / "mathjax"
INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it adds
# the pip requirement in each notebook's Colab install cell; its URL is _config.yml's repository.url
COLAB_INSTALL = re.compile(r'"fusion-book @ git\+(?P<url>[^"]+)"')
# The repository.url this repository ships with: nothing is published there yet, so a book built with it
# has no repository, issues or launch buttons (they would lead nowhere); set your fork's URL to get them.
PLACEHOLDER_URL = "https://github.com/fusion-book/fusion-book"
# What the Colab install cell says while repository.url is the placeholder (sync-colab writes and removes it)
PLACEHOLDER_NOTE = (
    "# repository.url in _config.yml is still the placeholder: nothing is published at the URL below.\n"
    "# Set it to your fork's URL and run `python -m fusion_lib.book sync-colab` before using Colab.\n"
)
# The order notebooks start in when no earlier build of the profile recorded its own times
# (``start_order``, longest first), as minutes each is expected to take in a cold build (book profile,
# 2 cores, two at a time). 06 first, since it is the longest; 03 and 05 late, since they load the models
# 06 fits for the plan's seeds (started beside 06, they would wait for the same fits instead of working):
# their own times in the cold build of e997f6e, which ran in this order, were 17.2, 8.0, 4.9, 5.5, 3.6
# and 0.8 min, 20.9 min for all six.
EXPECTED_MINUTES = {
    "06_confirmatory": 18.0,
    "02_agreement_study": 8.0,
    "04_ablations": 5.5,
    "03_mixture_of_experts": 5.0,
    "05_multimodal": 4.5,
    "01_backbones_and_data": 0.9,
}


@dataclass
class NotebookRun:
    """The outcome of executing (or reusing) one notebook."""

    notebook: str
    seconds: float
    reused: bool = False
    error: str | None = None


def find_notebooks(root: Path, select: Sequence[str] | None = None) -> list[Path]:
    """The book's notebooks ``notebooks/NN_*.ipynb`` in order, optionally only those whose name
    starts with one of ``select`` (e.g. "01" or "03_mixture_of_experts")."""
    found = sorted((root / NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_DIR}/NN_*.ipynb under {root}")
    if not select:
        return found
    chosen = []
    for key in select:
        hits = [p for p in found if p.stem.startswith(key.removesuffix(".ipynb"))]
        if not hits:
            raise ValueError(f"no notebook matches {key!r}; available: {', '.join(p.stem for p in found)}")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def parse_overrides(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``-p key value`` pairs to profile overrides; values are YAML, as in papermill's ``-p``
    (``-p seeds 1`` is an int, ``-p input_size null`` is None, ``-p datasets [digits, mnist]`` a list)."""
    out: dict[str, Any] = {}
    for key, raw in pairs:
        if key == "profile":
            raise ValueError("set the profile with --profile, not -p profile")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"-p {key} {raw!r} is not a valid YAML value: {exc}") from None
    return out


def notebook_parameters(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The papermill parameters of every notebook, validated now so a bad value fails before any
    notebook starts."""
    get_profile(profile, **overrides)
    return {"profile": profile, "overrides": overrides}


def source_hash(notebook: Path, parameters: dict[str, Any]) -> str:
    """What an executed notebook depends on: its source, its parameters, the kernel and every
    fusion_lib module (the notebooks keep their logic there)."""
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    h.update(KERNEL.encode())
    lib = Path(fusion_lib.__file__).resolve().parent  # every layer
    for path in sorted(lib.rglob("*.py")):
        h.update(str(path.relative_to(lib)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _stamp(executed: Path) -> dict[str, Any]:
    # nbformat and papermill (2 s to import) are imported where notebooks are read or run, so that
    # `report` and `--help` do not pay for them
    import nbformat

    try:
        return nbformat.read(executed, as_version=4).metadata.get(STAMP_KEY, {})
    except Exception:  # a missing or half-written notebook is simply not reusable
        return {}


# The thread pools a kernel's libraries start: torch's (OpenMP), OpenBLAS's and MKL's (numpy, scipy).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def kernel_environment(root: Path, jobs: int) -> dict[str, str]:
    """Variables for the kernels of ``jobs`` notebooks run side by side: ``root`` on PYTHONPATH, so that
    kernels started in notebooks/ import fusion_lib even when it is not installed, and, with more than one
    job, each library's thread pool capped at the job's share of the cores. (Uncapped, numpy's BLAS
    and torch each start a thread per core in every kernel, and their spinning threads measurably slowed
    the neighbouring notebook.)"""
    old = os.environ.get("PYTHONPATH")
    env = {"PYTHONPATH": os.pathsep.join([str(root.resolve())] + ([old] if old else []))}
    if jobs > 1:
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        env.update({name: threads for name in THREAD_VARIABLES})
    return env


@contextmanager
def _environment(updates: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``updates`` (inherited by the kernels started inside), restored afterwards."""
    old = {name: os.environ.get(name) for name in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def execute_notebook(
    source: Path, out: Path, parameters: dict[str, Any], reuse: bool = False, progress: bool = True
) -> NotebookRun:
    """Execute ``source`` with papermill into ``out`` (kernel python3, cwd = the source's folder).

    With ``reuse``, an ``out`` stamped by a successful execution with the same ``source_hash`` is
    kept as it is. Errors are returned in ``NotebookRun.error``, with the failed copy left at ``out``.
    """
    import nbformat
    import papermill as pm

    digest = source_hash(source, parameters)
    stamp = _stamp(out) if reuse and out.exists() else {}
    if stamp.get("source_hash") == digest:
        log.info("%s: unchanged since its last execution, reusing %s", source.stem, out)
        return NotebookRun(source.stem, float(stamp.get("seconds", float("nan"))), reused=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: executing with %s", source.stem, parameters)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(source),
            str(out),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(source.parent),
            progress_bar=progress,
        )
    except Exception as exc:  # papermill raises several types; the report must cover each notebook
        seconds = time.perf_counter() - start
        first = str(exc).strip().splitlines()
        log.error(
            "%s: FAILED after %.1f s (%s); the partial output is in %s",
            source.stem,
            seconds,
            type(exc).__name__,
            out,
        )
        return NotebookRun(source.stem, seconds, error=f"{type(exc).__name__}: {first[-1] if first else ''}")
    seconds = time.perf_counter() - start
    nb = nbformat.read(out, as_version=4)
    hide_injected_parameters(nb)
    nb.metadata[STAMP_KEY] = {"source_hash": digest, "seconds": round(seconds, 2), "parameters": parameters}
    nbformat.write(nb, out)
    log.info("%s: done in %.1f s", source.stem, seconds)
    return NotebookRun(source.stem, seconds)


def hide_injected_parameters(nb: Any) -> None:
    """Tag papermill's injected parameters cell ``remove-cell``: the page keeps the notebook's own
    ``parameters`` cell, and the values actually used are in the notebook's metadata."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if INJECTED_TAG in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]


def recorded_seconds(timings: Path, profile: str) -> dict[str, float]:
    """Each notebook's execution time in the build of ``profile`` recorded at ``timings`` (a
    ``write_timings`` file), for the notebooks that build executed; {} when there is none."""
    if not timings.is_file():
        return {}
    try:
        record = json.loads(timings.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # an unreadable record only costs the schedule its hint
    if record.get("profile") != profile:
        return {}
    return {r["notebook"]: float(r["seconds"]) for r in record.get("notebooks", []) if not r.get("reused")}


def start_order(notebooks: Sequence[Path], seconds: dict[str, float]) -> list[Path]:
    """The notebooks longest first (the longest-processing-time rule): with several run at once, the long
    ones start early instead of leaving one running alone at the end while the other cores idle.

    A notebook's expected time is ``seconds``, else ``EXPECTED_MINUTES``; one without either starts first,
    since it may be the longest. Ties keep reading order."""

    def expected(nb: Path) -> float:
        if nb.stem in seconds:
            return seconds[nb.stem]
        return EXPECTED_MINUTES.get(nb.stem, float("inf")) * 60

    return sorted(notebooks, key=lambda nb: -expected(nb))


def run_notebooks(
    notebooks: Sequence[Path],
    out_dir: Path,
    parameters: dict[str, Any],
    reuse: bool = False,
    progress: bool = True,
    jobs: int = 1,
    order: Sequence[Path] | None = None,
) -> list[NotebookRun]:
    """Execute each notebook into ``out_dir`` under its own name; every notebook runs even if one fails.

    ``jobs`` notebooks run at once (each in its own kernel process), started in ``order`` when given
    (``start_order``); results keep the notebooks' order.
    """

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if not notebooks:
        return []
    # set once for every kernel: concurrent executions must not restore the variable under each other
    if order is not None and sorted(order) != sorted(notebooks):
        raise ValueError("order must hold the same notebooks as notebooks")
    env = kernel_environment(notebooks[0].parent.parent, jobs)
    with _environment(env), ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            nb: pool.submit(
                execute_notebook,
                nb,
                out_dir / nb.name,
                parameters,
                reuse=reuse,
                progress=progress and jobs == 1,
            )
            for nb in (order if order is not None else notebooks)
        }
        return [futures[nb].result() for nb in notebooks]


def warm_feature_cache(profile: str, overrides: dict[str, Any]) -> None:
    """Extract every feature set the notebooks load, once and with all cores, so that notebooks executed
    side by side read the cache instead of extracting the same features twice (or extracting while
    another notebook trains, when the two halve each other's speed)."""
    P = get_profile(profile, **overrides)
    for name in P.datasets:
        P.feature_set(name, P.backbones_for(name))
    P.candidates_feature_set()  # notebook 02's choice of experts
    sweep = sweep_design(P, load_plan())  # notebook 02's zoo sweep: every candidate on its datasets
    for name in sweep.datasets:
        P.feature_set(name, sweep.candidates)
    P.push_feature_sets(P.datasets[0])  # notebook 04's accuracy push


def environment_summary() -> dict[str, str]:
    """The machine and library versions a set of timings was measured on."""

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu cores": str(os.cpu_count()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def write_timings(
    runs: Sequence[NotebookRun],
    profile: str,
    path: Path,
    jobs: int = 1,
    phases: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Save the execution timings (and where they were measured) as JSON at ``path``; ``phases`` are the
    wall times of the build's steps (feature extraction, all notebooks)."""
    record = {
        "profile": profile,
        "jobs": jobs,
        "phases": phases or {},
        "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment_summary(),
        "notebooks": [asdict(r) for r in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def timings_markdown(record: dict[str, Any]) -> str:
    """The timings JSON as the markdown the reproducibility chapter includes."""
    lines = ["| notebook | execution time | note |", "|---|---:|---|"]
    for r in record["notebooks"]:
        note = "reused from an earlier identical execution" if r["reused"] else "executed in this build"
        lines.append(f"| `{r['notebook']}` | {_duration(r['seconds'])} | {note} |")
    total = sum(r["seconds"] for r in record["notebooks"])
    lines.append(f"| **sum** | **{_duration(total)}** | |")
    env = "; ".join(f"{k} {v}" for k, v in record["environment"].items())
    jobs = record.get("jobs", 1)
    side = (
        f" Notebooks ran {jobs} at a time, after feature extraction, so each time includes sharing the "
        f"machine and the sum exceeds the wall time."
        if jobs > 1
        else ""
    )
    phases = "".join(f" {name}: {_duration(sec)} wall." for name, sec in record.get("phases", {}).items())
    return (
        f"Profile `{record['profile']}`, built {record['built']} ({env}).{side}{phases}\n\n"
        + "\n".join(lines)
        + "\n"
    )


def profiles_markdown() -> str:
    """A markdown table of every profile's settings, generated from ``fusion_lib.book.profiles``."""
    cols = {name: p.describe() for name, p in PROFILES.items()}
    settings = list(next(iter(cols.values())))
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in cols) + " |", "|---|" + "---|" * len(cols)]
    for s in settings:
        # a bare "$" opens inline maths in MyST ("$FUSION_DATA_ROOT or $FUSION_CACHE" rendered as a formula)
        lines.append(f"| {s} | " + " | ".join(cols[n][s].replace("$", "\\$") for n in cols) + " |")
    return "\n".join(lines) + "\n"


def public_modules() -> list[str]:
    """Every public package and module of fusion_lib (none of whose name parts starts with ``_``),
    sorted, so that each subpackage comes just before its modules."""

    found = pkgutil.walk_packages(fusion_lib.__path__, "fusion_lib.")
    return sorted(m.name for m in found if not any(part.startswith("_") for part in m.name.split(".")))


def api_markdown(modules: Sequence[str]) -> str:
    """The API chapter's body: one section per layer (subpackage) with its summary table, then each of
    its modules' docstrings (sphinx autodoc). A package's own page shows its docstring only: the
    names it re-exports are documented once, in their modules."""

    layers = sorted(
        (m for m in modules if m.count(".") == 1),
        key=lambda m: LAYERS.index(m) if m in LAYERS else len(LAYERS),
    )
    parts = []
    for layer in layers:
        members = [m for m in modules if m.startswith(layer + ".")]
        table = "\n".join(f"   {m[len(layer) + 1 :]}" for m in members)  # relative to the layer
        parts.append(
            f"## `{layer}`\n\n```{{eval-rst}}\n.. automodule:: {layer}\n\n.. autosummary::\n\n{table}\n```\n"
        )
        for m in members:
            is_package = hasattr(importlib.import_module(m), "__path__")
            options = "" if is_package else "   :members:\n"
            parts.append(f"### `{m}`\n\n```{{eval-rst}}\n.. automodule:: {m}\n{options}```\n")
    return "\n".join(parts)


def stage_sources(root: Path, staging: Path) -> None:
    """Copy the book's configuration and chapters into ``staging`` (notebooks are executed there)."""
    for name in BOOK_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} is missing; run from the repository root or pass --root")
        staging.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, staging / name)
    shutil.rmtree(staging / BOOK_DIR, ignore_errors=True)
    shutil.copytree(root / BOOK_DIR, staging / BOOK_DIR)
    stage_mathjax(staging)


def is_placeholder(url: str) -> bool:
    """Whether ``url`` is ``PLACEHOLDER_URL``, the repository URL no repository is published at."""
    return url.rstrip("/").removesuffix(".git") == PLACEHOLDER_URL


def stage_launch_buttons(root: Path, staging: Path) -> str:
    """Make the staged ``_config.yml``'s buttons lead somewhere, and say where (Markdown for the
    reproducibility chapter): with a real ``repository.url`` the repository, issues and launch (Binder,
    Colab) buttons open it; with the placeholder they are left out, and the download buttons stay."""
    url = repository_url(root)
    if not is_placeholder(url):
        return (
            f"This build's launch buttons open the notebooks of {url} (`repository.url` in `_config.yml`) "
            "on Binder or Colab; the download buttons give the executed notebook or its source."
        )
    config = yaml.safe_load((staging / "_config.yml").read_text())
    config.setdefault("html", {}).update(use_repository_button=False, use_issues_button=False)
    config.pop("launch_buttons", None)
    (staging / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    log.warning(
        "repository.url in _config.yml is the placeholder %s: the book is built without repository, "
        "issues and launch buttons; set it to your repository's URL and run "
        "`python -m fusion_lib.book sync-colab` to get them",
        url,
    )
    return (
        f"```{{note}}\nThis build's `repository.url` (in `_config.yml`) is the placeholder {url}, where "
        "no repository is published, so the notebook pages have download buttons (the executed "
        "notebook, or its source) but no launch buttons. Set it to your fork's URL and run "
        "`python -m fusion_lib.book sync-colab`: the rebuilt pages then open each notebook on Binder or "
        "Colab, and its Colab install cell installs from that URL.\n```"
    )


def stage_mathjax(staging: Path) -> Path:
    """Copy the fetched MathJax (``tex-chtml.js`` and its fonts) into the book's static files."""

    target = staging / MATHJAX_STATIC
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(fetch("mathjax"), target, ignore=shutil.ignore_patterns(MARKER))
    return target


def repository_url(root: Path) -> str:
    """The repository URL configured once, as ``repository.url`` in ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    url = (config.get("repository") or {}).get("url")
    if not url:
        raise ValueError(f"{root / '_config.yml'} has no repository.url; set it to the repository's URL")
    return url


def _colab_cell(nb: Any) -> Any:
    cells = [c for c in nb.cells if c.cell_type == "code" and COLAB_INSTALL.search(c.source)]
    return cells[0] if len(cells) == 1 else None


def sync_colab_cells(root: Path, write: bool = True) -> list[Path]:
    """The notebooks whose Colab install cell does not install from ``repository_url(root)``; with
    ``write``, rewrite their URL. The committed notebooks must carry it: Colab opens them from GitHub.
    """
    import nbformat

    url = repository_url(root)
    stale = []
    for path in find_notebooks(root):
        nb = nbformat.read(path, as_version=4)
        cell = _colab_cell(nb)
        if cell is None:
            raise ValueError(
                f"{path} needs exactly one Colab install cell (pip install 'fusion-book @ git+URL')"
            )
        new = COLAB_INSTALL.sub(f'"fusion-book @ git+{url}"', cell.source.replace(PLACEHOLDER_NOTE, ""))
        if is_placeholder(url):
            new = PLACEHOLDER_NOTE + new
        if new != cell.source:
            stale.append(path)
            if write:
                cell.source = new
                nbformat.write(nb, path)
    return stale


def check_colab_cells(root: Path) -> None:
    """Fail when a notebook's Colab cell installs from another URL than ``_config.yml`` names."""
    stale = sync_colab_cells(root, write=False)
    if stale:
        raise ValueError(
            f"the Colab install cell of {', '.join(p.name for p in stale)} does not use "
            f"repository.url of _config.yml ({repository_url(root)}); run "
            f"`python -m fusion_lib.book sync-colab` and commit the notebooks"
        )


def _drop_stale_notebooks(staging: Path, notebooks: Sequence[Path]) -> None:
    keep = {nb.name for nb in notebooks}
    for old in (staging / NOTEBOOK_DIR).glob("*.ipynb"):
        if old.name not in keep:
            old.unlink()


def jupyter_book_build(staging: Path, output: Path) -> int:
    """``jupyter-book build`` with warnings as errors; the HTML lands in ``output/_build/html``, which is
    emptied first: Sphinx rewrites every page with ``--all`` but never deletes, so images of figures
    that no page shows any more would otherwise stay in the published ``_images``."""
    shutil.rmtree(output / "_build" / "html", ignore_errors=True)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build",
        str(staging),
        "--path-output",
        str(output),
        "--all",
        "-W",
        "-n",
        "--keep-going",
    ]
    log.info("jupyter-book build %s --path-output %s --all -W -n --keep-going", staging, output)
    return subprocess.call(cmd)


def build(
    root: Path,
    profile: str = DEFAULT_PROFILE,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    jobs: int = 2,
) -> int:
    """The whole ``make book`` job (see the module docstring); returns a process exit code.

    Features are extracted first; then ``jobs`` notebooks execute side by side. Their models train on
    one thread each (``TrainConfig.threads``), so two at a time use both cores of a small machine.
    """
    root = root.resolve()
    staging = root / STAGING
    parameters = notebook_parameters(profile, overrides or {})
    notebooks = find_notebooks(root)
    stage_sources(root, staging)
    check_colab_cells(root)
    _drop_stale_notebooks(staging, notebooks)
    log.info("extracting (or reading cached) features for profile %s", profile)
    start = time.perf_counter()
    warm_feature_cache(profile, overrides or {})
    phases = {"Feature extraction (or reading the cache)": time.perf_counter() - start}
    generated = staging / BOOK_DIR / GENERATED
    order = start_order(notebooks, recorded_seconds(generated / "timings.json", profile))
    start = time.perf_counter()
    runs = run_notebooks(
        notebooks,
        staging / NOTEBOOK_DIR,
        parameters,
        reuse=not force,
        progress=progress,
        jobs=jobs,
        order=order,
    )
    phases["All notebooks"] = time.perf_counter() - start
    failed = [r for r in runs if r.error]
    if failed:
        for r in failed:
            log.error("notebook %s failed: %s", r.notebook, r.error)
        log.error(
            "not building the book: %d notebook(s) failed (executed copies in %s)",
            len(failed),
            staging / NOTEBOOK_DIR,
        )
        return 1
    record = write_timings(runs, profile, generated / "timings.json", jobs=jobs, phases=phases)
    (generated / "timings.md").write_text(timings_markdown(record))
    (generated / "profiles.md").write_text(profiles_markdown())
    (generated / "launch.md").write_text(stage_launch_buttons(root, staging) + "\n")
    (generated / "api.md").write_text(api_markdown(public_modules()))
    code = jupyter_book_build(staging, root)
    index = root / "_build" / "html" / "index.html"
    if code == 0 and index.is_file():
        log.info("book built: %s", index)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fusion_lib.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=list(PROFILES),
        help=f"notebook parameter profile (default {DEFAULT_PROFILE})",
    )
    common.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="override one profile setting, e.g. -p seeds 1 -p datasets digits",
    )
    common.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    common.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    run = sub.add_parser("run", parents=[common], help="execute notebooks into a folder")
    run.add_argument("--out", type=Path, required=True, help="folder for the executed notebooks")
    run.add_argument("--notebooks", nargs="+", metavar="NN", help="only these notebooks (e.g. 01 03)")
    b = sub.add_parser("build", parents=[common], help="execute the notebooks and build _build/html")
    b.add_argument("--force", action="store_true", help="re-execute notebooks even if unchanged")
    b.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default 2)")
    own_images.add_parser(sub, common)
    sync = sub.add_parser(
        "sync-colab", help="point every notebook's Colab install cell at _config.yml's repository.url"
    )
    sync.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        if args.command == "sync-colab":
            changed = sync_colab_cells(args.root.resolve())
            log.info("updated %d notebook(s): %s", len(changed), ", ".join(p.name for p in changed) or "none")
            return 0
        overrides = parse_overrides(args.param)
        if args.command == "report":
            if args.background is not None:
                overrides["background"] = args.background
            report = own_images.write_report(
                args.path, args.out, args.profile, aliases=dict(args.alias), **overrides
            )
            log.info("wrote %s", report)
            return 0
        if args.command == "build":
            return build(
                args.root,
                args.profile,
                overrides,
                force=args.force,
                progress=not args.no_progress,
                jobs=args.jobs,
            )
        notebooks = find_notebooks(args.root.resolve(), args.notebooks)
        parameters = notebook_parameters(args.profile, overrides)
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    runs = run_notebooks(notebooks, args.out, parameters, progress=not args.no_progress)
    for r in runs:
        log.info("%-32s %8.1f s  %s", r.notebook, r.seconds, r.error or "ok")
    return 1 if any(r.error for r in runs) else 0
