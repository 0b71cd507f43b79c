"""fusion_lib: adaptive fusion of frozen pre-trained backbones (a companion to Resheff, Lieder and Hope, ICPRAM 2019).

One subpackage per layer, each depending only on those before it:

- ``fusion_lib.data``: offline assets, datasets, backbones, feature extraction and its cache;
- ``fusion_lib.fusion``: experts, gates, mixtures of experts, baselines, the label space, training;
- ``fusion_lib.studies``: experiment config, method registry, runner and CLI, and the studies;
- ``fusion_lib.book``: what the pages share (run profiles, figures, tables), the chapters' content, the
  own-images report and the tooling that builds the book;
- ``fusion_lib.bench``: benchmarks (``python -m fusion_lib.bench``).

``LAYERS`` lists them in that order; the layout test holds every module to it.

The names below are importable from the top package, loaded on first use (so the command line
``python -m fusion_lib`` starts without importing torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

LAYERS = ("fusion_lib.data", "fusion_lib.fusion", "fusion_lib.studies", "fusion_lib.book", "fusion_lib.bench")

_EXPORTS = {
    "FeatureSet": "fusion_lib.data.feature_set",
    "FeatureSpec": "fusion_lib.data.spec",
    "SplitSizes": "fusion_lib.data.datasets",
    "TrainConfig": "fusion_lib.fusion.training",
    "load_backbone": "fusion_lib.data.backbones",
    "load_dataset": "fusion_lib.data.datasets",
    "load_feature_set": "fusion_lib.data.extraction",
    "ExperimentConfig": "fusion_lib.studies.config",
    "ExperimentResult": "fusion_lib.studies.runner",
    "run_experiment": "fusion_lib.studies.runner",
    "Study": "fusion_lib.studies.study",
    "get_profile": "fusion_lib.book.profiles",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fusion_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
