"""Notebook profiles, the book runner's argument handling, and the book's sources."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from fusion_lib.book.profiles import KNOWN_DATASETS, OVERRIDABLE, PROFILES, get_profile
from fusion_lib.book.tooling import build as book
from fusion_lib.data.datasets import SplitSizes, load_dataset

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", list(PROFILES))
def test_profiles_are_valid(name):
    p = get_profile(name)
    assert p.name == name
    assert set(p.datasets) <= set(KNOWN_DATASETS)
    assert p.seeds and len(set(p.seeds)) == len(p.seeds)
    for key in OVERRIDABLE:
        # overriding these also clears per-dataset ones (sizes, seeds, zoo datasets), by design
        if key not in ("sizes", "seeds", "datasets"):
            assert get_profile(name, **{key: getattr(p, key)}) == p, f"{key} does not round-trip"
    both = {"datasets": p.datasets, "zoo_datasets": p.zoo_datasets}
    assert get_profile(name, **both) == p


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if "digits" in p.datasets])
def test_digits_sizes_fit_the_dataset(name):
    p = get_profile(name)
    splits = load_dataset("digits", p.split_sizes("digits"), seed=p.seeds[0])
    assert {s: len(v) for s, v in splits.labels.items()} == dataclasses.asdict(p.split_sizes("digits"))


def test_profile_sizes_and_overrides():
    p = get_profile("book")
    assert p.split_sizes("digits") == SplitSizes(1000, 297, 500)
    assert p.split_sizes("mnist") == p.sizes
    with pytest.raises(ValueError, match="not in profile"):
        p.split_sizes("cifar10")
    q = get_profile("book", seeds=2, sizes=[30, 20, 10], datasets="offline", input_size=None, device="cpu")
    assert q.seeds == (0, 1)
    assert q.split_sizes("digits") == SplitSizes(30, 20, 10)  # an explicit size is for every dataset
    assert q.datasets == ("fashion_mnist", "digits", "mnist", "cifar_cats_dogs")
    assert (q.input_size, q.device) == (None, "cpu")
    assert get_profile("ci", seeds=[3, 7]).seeds == (3, 7)
    assert get_profile("ci", datasets=["digits", "mnist"], dataset_sizes={"mnist": (10, 10, 10)}).split_sizes(
        "mnist"
    ) == SplitSizes(10, 10, 10)
    assert get_profile("ci", backbones="offline").backbones == PROFILES["book"].backbones


def test_max_seeds_caps_a_datasets_seeds():
    p = get_profile("book")  # five seeds but on Fashion-MNIST, the costliest: the bootstrap resamples seeds
    assert p.seeds_for("fashion_mnist") == (100, 101, 102)
    assert all(
        p.seeds_for(d) == p.seeds == (100, 101, 102, 103, 104) for d in p.datasets if d != "fashion_mnist"
    )
    q = get_profile("book", max_seeds={"fashion_mnist": 2})
    assert q.seeds_for("fashion_mnist") == (100, 101) and q.seeds_for("digits") == p.seeds
    assert q.experiment_config("fashion_mnist").seeds == [100, 101]
    assert "fashion_mnist: 100, 101" in q.describe()["seeds"]
    assert get_profile("book", seeds=1).seeds_for("fashion_mnist") == (0,)  # explicit seeds: every dataset
    with pytest.raises(ValueError, match="not in profile"):
        p.seeds_for("cifar10")


def test_profiles_are_immutable():
    p = get_profile("book")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seeds = (0,)
    with pytest.raises(TypeError):
        p.dataset_sizes["mnist"] = SplitSizes(1, 1, 1)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown profile 'nope'.*ci, book, paper"):
        get_profile("nope")


def test_unknown_override_lists_the_valid_settings():
    with pytest.raises(ValueError, match=r"unknown profile setting.*'epoch'.*valid settings: datasets"):
        get_profile("ci", epoch=3)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("seeds", 0, "seeds"),
        ("seeds", [1, 1], "distinct"),
        ("seeds", "3", "seeds"),
        ("epochs", 0, "epochs must be an integer >= 1"),
        ("epochs", True, "epochs"),
        ("input_size", 16, "input_size"),
        ("input_size", "112", "input_size"),
        ("thumbnail_size", 4, "thumbnail_size"),
        ("thumbnail_size", 20, "multiple of 8"),
        ("device", "gpu", "'auto', 'cpu', 'cuda'"),
        ("datasets", "imagenet", "valid datasets: fashion_mnist"),
        ("datasets", [], "at least one"),
        ("backbones", "resnet_nope", "unknown backbone"),
        ("sizes", (100, 50), "triple"),
        ("sizes", (100, 0, 10), "split size val"),
        ("dataset_sizes", {"nope": (1, 1, 1)}, "unknown dataset"),
        ("dataset_sizes", {"mnist": (1, 1, 1)}, "not among the profile's datasets"),
        ("max_seeds", {"digits": 0}, "max_seeds['digits'] must be an integer >= 1"),
        ("max_seeds", {"mnist": 1}, "not among the profile's datasets"),
        ("max_seeds", 2, "max_seeds must be a dict"),
        ("zero_shot_splits", 0, "zero_shot_splits must be an integer >= 1"),
    ],
)
def test_bad_values_are_rejected(key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_profile("ci", **{key: value})


# ---------------------------------------------------------------- runner


def test_parse_overrides_reads_yaml_values():
    got = book.parse_overrides(
        [["seeds", "1"], ["datasets", "[digits, mnist]"], ["input_size", "null"], ["device", "cpu"]]
    )
    assert got == {"seeds": 1, "datasets": ["digits", "mnist"], "input_size": None, "device": "cpu"}
    with pytest.raises(ValueError, match="--profile"):
        book.parse_overrides([["profile", "ci"]])
    with pytest.raises(ValueError, match="not a valid YAML"):
        book.parse_overrides([["seeds", "[1, 2"]])


def test_notebook_parameters_are_validated_first():
    assert book.notebook_parameters("ci", {"seeds": 1}) == {"profile": "ci", "overrides": {"seeds": 1}}
    with pytest.raises(ValueError, match="valid settings"):
        book.notebook_parameters("ci", {"sead": 1})


def _write_notebook(path: Path, *sources: str) -> Path:
    params = new_code_cell('profile = "book"\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[params, *(new_code_cell(s) for s in sources)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_find_notebooks_selects_by_prefix(tmp_path):
    for name in ("01_a", "02_b", "03_c", "scratch"):
        _write_notebook(tmp_path / "notebooks" / f"{name}.ipynb")
    names = lambda sel: [p.stem for p in book.find_notebooks(tmp_path, sel)]  # noqa: E731
    assert names(None) == ["01_a", "02_b", "03_c"]
    assert names(["03", "01_a.ipynb"]) == ["01_a", "03_c"]
    with pytest.raises(ValueError, match="available: 01_a, 02_b, 03_c"):
        names(["09"])
    with pytest.raises(FileNotFoundError):
        book.find_notebooks(tmp_path / "empty")


def test_main_rejects_bad_arguments_before_executing(tmp_path, capsys):
    _write_notebook(tmp_path / "notebooks" / "01_a.ipynb")
    out = tmp_path / "out"
    assert book.main(["run", "--root", str(tmp_path), "--out", str(out), "-p", "seeds", "0"]) == 2
    assert book.main(["run", "--root", str(tmp_path), "--out", str(out), "--notebooks", "07"]) == 2
    assert not out.exists()
    with pytest.raises(SystemExit):
        book.main(["run", "--profile", "huge", "--out", str(out)])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        book.main(["build", "--out", str(out)])


def test_build_needs_the_book_sources(tmp_path):
    _write_notebook(tmp_path / "notebooks" / "01_a.ipynb")
    assert book.main(["build", "--root", str(tmp_path)]) == 2


def test_source_hash_tracks_notebook_and_parameters(tmp_path):
    nb = _write_notebook(tmp_path / "notebooks" / "01_a.ipynb", "x = 1")
    ci = book.source_hash(nb, {"profile": "ci", "overrides": {}})
    assert ci == book.source_hash(nb, {"profile": "ci", "overrides": {}})
    assert ci != book.source_hash(nb, {"profile": "book", "overrides": {}})
    _write_notebook(nb, "x = 2")
    assert ci != book.source_hash(nb, {"profile": "ci", "overrides": {}})


def test_execute_notebook_injects_parameters_reuses_and_reports_errors(tmp_path):
    src = _write_notebook(
        tmp_path / "notebooks" / "01_a.ipynb",
        'assert "fail" not in overrides, "asked to fail"\nprint(profile, overrides)',
    )
    out = tmp_path / "out" / "01_a.ipynb"
    params = {"profile": "ci", "overrides": {"seeds": 1}}
    first = book.execute_notebook(src, out, params, reuse=True, progress=False)
    assert first.error is None and not first.reused
    executed = nbformat.read(out, as_version=4)
    assert "ci {'seeds': 1}" in executed.cells[-1].outputs[0]["text"]
    assert executed.metadata[book.STAMP_KEY]["source_hash"] == book.source_hash(src, params)
    injected = [c for c in executed.cells if book.INJECTED_TAG in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata.tags
    again = book.execute_notebook(src, out, params, reuse=True, progress=False)
    assert again.reused and again.seconds == executed.metadata[book.STAMP_KEY]["seconds"]
    failed = book.execute_notebook(
        src, out, {"profile": "ci", "overrides": {"fail": 1}}, reuse=True, progress=False
    )
    assert failed.error and "asked to fail" in failed.error
    assert book.STAMP_KEY not in nbformat.read(out, as_version=4).metadata  # so it is re-executed next time


def test_generated_markdown_tables():
    table = book.profiles_markdown()
    assert table.splitlines()[0] == "| setting | `ci` | `book` | `paper` |"
    for setting in get_profile("ci").describe():
        assert f"| {setting} |" in table
    assert "$FUSION_DATA_ROOT" in get_profile("ci").describe()["datasets from"]
    assert "$" not in table.replace("\\$", "")  # a bare $ would open inline maths on the page
    record = {
        "profile": "ci",
        "built": "now",
        "environment": {"python": "3.11"},
        "notebooks": [
            {"notebook": "01_a", "seconds": 30.0, "reused": False, "error": None},
            {"notebook": "02_b", "seconds": 600.0, "reused": True, "error": None},
        ],
    }
    md = book.timings_markdown(record)
    assert "| `01_a` | 30 s | executed in this build |" in md
    assert "| `02_b` | 10.0 min | reused" in md
    assert "**10.5 min**" in md
    record["phases"] = {"Feature extraction": 700.0, "All notebooks": 61.0}
    assert "Feature extraction: 11.7 min wall. All notebooks: 61 s wall." in book.timings_markdown(record)


def test_write_timings_is_json(tmp_path):
    runs = [book.NotebookRun("01_a", 1.5)]
    record = book.write_timings(runs, "ci", tmp_path / "t" / "timings.json")
    assert json.loads((tmp_path / "t" / "timings.json").read_text()) == record
    assert record["notebooks"][0]["notebook"] == "01_a"


# ---------------------------------------------------------------- the book's sources

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_follow_the_profile_convention(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged `parameters`"
    params = code[tagged[0]].source
    assert 'profile = os.environ.get("FUSION_PROFILE", "book")' in params and "overrides = {}" in params
    assert "get_profile(profile, **overrides)" in code[tagged[0] + 1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_plumbing_is_off_the_page(path):
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    colab = [c for c in code if book.COLAB_INSTALL.search(c.source)]
    assert len(colab) == 1 and "remove-cell" in colab[0].metadata.get("tags", [])
    for c in code:
        if "plt.subplots(" in c.source or "sns." in c.source:
            assert "hide-input" in c.metadata.get("tags", []), f"plotting cell not folded:\n{c.source[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_code_lines_fit_the_page(path):
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    long = [line for c in code for line in c.source.splitlines() if len(line) > 100]
    assert not long, f"{len(long)} code line(s) over 100 characters are cut off on the page: {long[:3]}"


def test_colab_cells_install_from_the_configured_repository(tmp_path):
    assert book.sync_colab_cells(ROOT, write=False) == []
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://example.org/me/fork\n")
    nb = _write_notebook(
        tmp_path / "notebooks" / "01_a.ipynb", 'pip("fusion-book @ git+https://github.com/old/place")'
    )
    with pytest.raises(ValueError, match="sync-colab"):
        book.check_colab_cells(tmp_path)
    assert book.main(["sync-colab", "--root", str(tmp_path)]) == 0
    synced = nbformat.read(nb, as_version=4).cells[-1].source
    assert 'git+https://example.org/me/fork"' in synced and book.PLACEHOLDER_NOTE not in synced
    book.check_colab_cells(tmp_path)
    # back to the placeholder: the cell says so, once however often it is synced
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {book.PLACEHOLDER_URL}\n")
    assert book.main(["sync-colab", "--root", str(tmp_path)]) == 0
    assert book.sync_colab_cells(tmp_path) == []
    assert nbformat.read(nb, as_version=4).cells[-1].source.count(book.PLACEHOLDER_NOTE) == 1


def test_mathjax_is_staged_where_mathjax_path_points(tmp_path, monkeypatch):
    fake = tmp_path / "asset"
    (fake / "output" / "chtml" / "fonts" / "woff-v2").mkdir(parents=True)
    (fake / "tex-chtml.js").write_text("// mathjax")
    (fake / "asset.json").write_text("{}")
    monkeypatch.setattr("fusion_lib.data.assets.fetch", lambda name: fake)
    target = book.stage_mathjax(tmp_path / "src")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    static = tmp_path / "src" / config["sphinx"]["config"]["html_static_path"][0]
    assert (static / config["sphinx"]["config"]["mathjax_path"]).is_file()
    assert (target / "output" / "chtml" / "fonts" / "woff-v2").is_dir() and not (
        target / "asset.json"
    ).exists()


def test_toc_lists_every_notebook_and_chapter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in files
    for f in files:
        if f.startswith("book/"):
            assert (ROOT / f"{f}.md").is_file(), f"{f}.md is in the toc but missing"


def test_every_citation_is_in_the_bibliography_and_every_entry_cited():
    bib = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))
    cited = set()
    for md in (ROOT / "book").glob("*.md"):
        for keys in re.findall(r"\{cite:?\w*\}`([^`]+)`", md.read_text()):
            cited.update(k.strip() for k in keys.split(","))
    assert cited - bib == set(), "cited but not in references.bib"
    assert bib - cited == set(), "in references.bib but never cited"


def test_run_notebooks_side_by_side_keeps_order_and_reports_each(tmp_path):
    share = max(1, (os.cpu_count() or 1) // 2)
    # each kernel's thread pools get its share of the cores; the build's own environment is restored
    threads = (
        f"import os; assert os.environ['OMP_NUM_THREADS'] == os.environ['OPENBLAS_NUM_THREADS'] == '{share}'"
    )
    srcs = [
        _write_notebook(tmp_path / "notebooks" / "01_n.ipynb", threads),
        _write_notebook(tmp_path / "notebooks" / "02_n.ipynb", "assert 2 != 2, 'number two fails'"),
        _write_notebook(tmp_path / "notebooks" / "03_n.ipynb", threads),
    ]
    before = dict(os.environ)
    runs = book.run_notebooks(
        srcs, tmp_path / "out", {"profile": "ci", "overrides": {}}, progress=False, jobs=2
    )
    assert dict(os.environ) == before
    assert [r.notebook for r in runs] == ["01_n", "02_n", "03_n"]
    assert [bool(r.error) for r in runs] == [False, True, False], [r.error for r in runs]
    with pytest.raises(ValueError, match="jobs"):
        book.run_notebooks(srcs, tmp_path / "out", {}, jobs=0)


def test_api_chapter_covers_every_public_module():
    modules = book.public_modules()
    assert {
        "fusion_lib.book.tooling.build",
        "fusion_lib.studies.stats",
        "fusion_lib.data.assets.fetch",
    } <= set(modules)
    assert not any(part.startswith("_") for m in modules for part in m.split("."))
    md = book.api_markdown(modules)
    assert all(f".. automodule:: {m}\n" in md for m in modules)
    assert "_generated/api.md" in (ROOT / "book" / "api.md").read_text()


def test_placeholder_repository_gets_no_launch_buttons(tmp_path):
    staging = tmp_path / "src"
    book.stage_sources(ROOT, staging)
    assert book.is_placeholder(book.repository_url(ROOT))  # what this repository ships with
    note = book.stage_launch_buttons(ROOT, staging)
    config = yaml.safe_load((staging / "_config.yml").read_text())
    assert "launch_buttons" not in config
    assert config["html"]["use_repository_button"] is False and config["html"]["use_issues_button"] is False
    assert "placeholder" in note and "sync-colab" in note
    fork = tmp_path / "fork"
    fork.mkdir()
    real = yaml.safe_load((ROOT / "_config.yml").read_text())
    real["repository"]["url"] = "https://example.org/me/fork"
    (fork / "_config.yml").write_text(yaml.safe_dump(real))
    (staging / "_config.yml").write_text(yaml.safe_dump(real))
    note = book.stage_launch_buttons(fork, staging)
    assert "https://example.org/me/fork" in note and "placeholder" not in note
    assert yaml.safe_load((staging / "_config.yml").read_text())["launch_buttons"]["colab_url"]


def test_html_output_is_emptied_before_each_build(tmp_path, monkeypatch):
    stale = tmp_path / "_build" / "html" / "_images" / "old-figure.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"png")
    calls = []
    monkeypatch.setattr(book.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert book.jupyter_book_build(tmp_path / "src", tmp_path) == 0
    assert calls and not stale.exists()


def test_notebooks_start_longest_first_by_the_last_recorded_build(tmp_path):
    nbs = [tmp_path / f"{n}.ipynb" for n in ("01_a", "02_b", "03_c", "99_new")]
    timings = tmp_path / "timings.json"
    assert book.recorded_seconds(timings, "book") == {}  # no earlier build: the hint decides
    runs = [book.NotebookRun("01_a", 300.0), book.NotebookRun("02_b", 5.0, reused=True)]
    runs.append(book.NotebookRun("03_c", 40.0))
    book.write_timings(runs, "book", timings)
    assert book.recorded_seconds(timings, "ci") == {}  # another profile's times say nothing
    seconds = book.recorded_seconds(timings, "book")
    assert seconds == {"01_a": 300.0, "03_c": 40.0}  # a reused notebook's time is not its cost
    # unknown cost first (it may be the longest), then longest first; 02_b falls back to the hint (none)
    order = [p.stem for p in book.start_order(nbs, seconds)]
    assert order == ["02_b", "99_new", "01_a", "03_c"]
    timings.write_text("{not json")
    assert book.recorded_seconds(timings, "book") == {}
    hinted = [tmp_path / f"{n}.ipynb" for n in ("01_backbones_and_data", "06_confirmatory")]
    assert [p.stem for p in book.start_order(hinted, {})] == ["06_confirmatory", "01_backbones_and_data"]


def test_run_notebooks_starts_in_the_given_order_and_reports_in_reading_order(tmp_path):
    log = tmp_path / "started.txt"
    srcs = [
        _write_notebook(tmp_path / "notebooks" / f"0{i}_n.ipynb", f"open({str(log)!r}, 'a').write('{i}')")
        for i in (1, 2, 3)
    ]
    runs = book.run_notebooks(srcs, tmp_path / "out", {}, progress=False, order=srcs[::-1])
    assert log.read_text() == "321"
    assert [r.notebook for r in runs] == ["01_n", "02_n", "03_n"]
    with pytest.raises(ValueError, match="same notebooks"):
        book.run_notebooks(srcs, tmp_path / "out", {}, order=srcs[:2])
