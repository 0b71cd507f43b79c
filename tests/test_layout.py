"""The package layout: the command lines of the README start, the top package stays light, and facts
shared across layers are defined once."""

import subprocess
import sys

import pytest

import fusion_lib
from fusion_lib.data import datasets, feature_set
from fusion_lib.data.assets import ASSETS
from fusion_lib.data.backbones import BACKBONE_CFGS, OFFLINE_BACKBONES, short_name
from fusion_lib.data.validation import split_names
from fusion_lib.fusion import label_space, training, two_stage


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "fusion_lib", "run", "--help"],
        ["-m", "fusion_lib", "extract", "--help"],
        ["-m", "fusion_lib.bench", "--help"],
        ["-m", "fusion_lib.book", "--help"],
        ["-m", "fusion_lib.book.browser_check", "--help"],
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


def test_shared_constants_are_defined_once():
    assert datasets.SPLITS is feature_set.SPLITS
    assert label_space.BLEND_GRID is training.BLEND_GRID
    assert two_stage.TwoStageConfig().alphas is training.BLEND_GRID


@pytest.mark.parametrize("spec,names", [("a, b,,c ", ["a", "b", "c"]), (["a", " b "], ["a", "b"]), ("", [])])
def test_split_names(spec, names):
    assert split_names(spec) == names
