"""Re-running a notebook gives the same numbers: every text output of the mixture notebook, executed
twice under the ci profile, is identical (the strict counterpart of nbval's lax run in `make test`)."""

from pathlib import Path

import nbformat

from fusion_lib.book.tooling import build as book

ROOT = Path(__file__).resolve().parents[1]


def _text_outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    out = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                out.append(f"{i}:{o['text']}")
            elif "data" in o and "text/plain" in o["data"] and "image/png" not in o["data"]:
                out.append(f"{i}:{o['data']['text/plain']}")
    return out


def test_mixture_notebook_reruns_to_identical_outputs(tmp_path):
    source = ROOT / "notebooks" / "03_mixture_of_experts.ipynb"
    params = {"profile": "ci", "overrides": {}}
    runs = [book.execute_notebook(source, tmp_path / f"run{i}.ipynb", params, progress=False) for i in (1, 2)]
    assert all(r.error is None for r in runs), [r.error for r in runs]
    first, second = (_text_outputs(tmp_path / f"run{i}.ipynb") for i in (1, 2))
    assert len(first) > 5  # tables and printed summaries, not just empty cells
    assert first == second
