"""The package layout: each layer imports only the layers below it, no module imports itself through
others, the command lines of the README start, the top package stays light, and facts shared across
layers are defined once."""

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import fusion_lib
from fusion_lib import LAYERS
from fusion_lib.book.profiles import PROFILES
from fusion_lib.data import datasets, feature_set
from fusion_lib.data.assets import ASSETS
from fusion_lib.data.backbones import BACKBONE_CFGS, OFFLINE_BACKBONES, short_name
from fusion_lib.data.checks import split_names
from fusion_lib.data.spec import FeatureSpec, default_sizes
from fusion_lib.fusion import label_space, training, two_stage
from fusion_lib.studies import cli

PACKAGE = Path(fusion_lib.__file__).parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def _layer(module: str) -> int | None:
    """The position of ``module``'s layer in ``LAYERS`` (None for the top package and outside it)."""
    return next(
        (i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(f"{layer}.")), None
    )


def _module_name(path: Path) -> str:
    """``fusion_lib/data/__init__.py`` -> ``fusion_lib.data``."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, name) of everything the module imports, anywhere in it: at the top, inside functions and
    under ``TYPE_CHECKING`` alike (a function's import is a dependency all the same, only a later one).
    ``from a.b import c`` gives ``a.b.c``, so that ``from fusion_lib import book`` names its layer."""
    module = _module_name(path)
    package = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # a relative import (level n) starts from the package n - 1 levels up
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            yield from ((node.lineno, f"{source}.{alias.name}") for alias in node.names)


def test_each_layer_imports_only_the_layers_below():
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (own := _layer(_module_name(path))) is not None
        for line, name in _imports(path)
        if (_layer(name) or 0) > own  # None: the top package or a third-party module
    ]
    assert not upward, f"imports from a higher layer (LAYERS: {LAYERS}): {upward}"


def _module_graph() -> dict[str, set[str]]:
    """Each fusion_lib module -> the fusion_lib modules it imports, anywhere in it (``from a import b``
    names the module ``a.b`` when there is one, else ``a``)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}

    def module_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {
        module: {m for _, name in _imports(path) if (m := module_of(name)) not in (None, module)}
        for module, path in modules.items()
    }


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the path being walked, then "done"
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for m in sorted(graph[module]):
            if state.get(m) == "open":
                return path[path.index(m) :] + [m]
            if m not in state and (found := walk(m)):
                return found
        state[module] = "done"
        path.pop()
        return None

    return next((found for module in sorted(graph) if module not in state and (found := walk(module))), None)


def test_no_module_imports_itself_through_others():
    # imports inside functions count: a circle closed by one only bites later, when the function runs
    circle = _circle(_module_graph())
    assert circle is None, f"import circle: {' -> '.join(circle)}"


def test_the_book_keeps_its_places_apart():
    # fusion_lib.book: the shared page kit (profiles, figures, pages) < chapters < own_images < tooling
    places = ("fusion_lib.book.chapters", "fusion_lib.book.own_images", "fusion_lib.book.tooling")

    def place(module: str) -> int:
        if module == "fusion_lib.book.__main__":  # the command line sits on top of everything
            return len(places) + 1
        return next((i + 1 for i, p in enumerate(places) if module == p or module.startswith(f"{p}.")), 0)

    upward = [
        f"{module} imports {m}"
        for module, imported in _module_graph().items()
        if module.startswith("fusion_lib.book")
        for m in imported
        if m.startswith("fusion_lib.book") and place(m) > place(module)
    ]
    assert not upward, f"the book's places import upward (kit < {' < '.join(places)}): {upward}"


def test_the_circle_check_finds_a_circle():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None


def test_the_method_registry_is_a_leaf_that_loads_the_builtin_methods_on_first_lookup():
    # the config checks names through the registry alone; the first lookup imports the method bodies
    code = (
        "import sys; from fusion_lib.studies import registry; "
        "assert registry.BUILTIN_METHODS not in sys.modules; "
        "from fusion_lib.studies.config import ExperimentConfig; "
        "assert ExperimentConfig(methods='moe_thumbnail,single_a').methods == 'moe_thumbnail,single_a'; "
        "assert registry.BUILTIN_METHODS in sys.modules and 'blend_label' in registry.method_names()"
    )
    run = _run("-c", code)
    assert run.returncode == 0, run.stderr
    studies = {
        m for m in _module_graph()["fusion_lib.studies.registry"] if m.startswith("fusion_lib.studies")
    }
    assert not studies, f"the registry imports {studies}"


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "fusion_lib", "run", "--help"],
        ["-m", "fusion_lib", "extract", "--help"],
        ["-m", "fusion_lib.bench", "--help"],
        ["-m", "fusion_lib.book", "--help"],
        ["-m", "fusion_lib.book.tooling.browser_check", "--help"],
    ],
)
def test_readme_command_lines_start(args):
    run = _run(*args)
    assert run.returncode == 0, run.stderr
    assert "usage: python -m fusion_lib" in run.stdout


def test_top_package_is_light_and_exports_lazily():
    code = (
        "import sys, fusion_lib; assert 'torch' not in sys.modules; "
        "from fusion_lib import ExperimentConfig, load_feature_set; print(load_feature_set.__module__)"
    )
    run = _run("-c", code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "fusion_lib.data.extraction"
    assert set(fusion_lib.__all__) <= set(dir(fusion_lib))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fusion_lib.nothing  # noqa: B018


def test_one_config_per_offline_backbone_names_real_assets():
    assert OFFLINE_BACKBONES == tuple(BACKBONE_CFGS)
    for name, cfg in BACKBONE_CFGS.items():
        assert cfg.name == name and cfg.asset in ASSETS and short_name(name) == cfg.short_name
        assert short_name(f"single:{name}") == f"single:{cfg.short_name}"


def test_command_line_defaults_to_the_book_data():
    # the CLI cannot import the book's profiles (a higher layer): both take the data spec's defaults, so
    # a plain `run --dataset D` reads the features the book cached
    book = PROFILES["book"]
    for d in book.datasets:
        args = cli._parser().parse_args(["--dataset", d])
        assert default_sizes(d) == book.split_sizes(d) and args.input_size == book.input_size
        assert FeatureSpec(d, args.backbones) == book.feature_spec(d)


def test_shared_constants_are_defined_once():
    assert datasets.SPLITS is feature_set.SPLITS
    assert label_space.BLEND_GRID is training.BLEND_GRID
    assert two_stage.TwoStageConfig().alphas is training.BLEND_GRID


@pytest.mark.parametrize("spec,names", [("a, b,,c ", ["a", "b", "c"]), (["a", " b "], ["a", "b"]), ("", [])])
def test_split_names(spec, names):
    assert split_names(spec) == names
