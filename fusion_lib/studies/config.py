"""``ExperimentConfig``: what an experiment runs on (a data spec), how its models train (``TrainConfig``),
which methods it runs with which settings, over which seeds (checked in full when it is made; read and
written as JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from fusion_lib.data import checks
from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.spec import FeatureSpec
from fusion_lib.fusion.experts import EXPERT_KINDS
from fusion_lib.fusion.gates import ThumbnailGate
from fusion_lib.fusion.label_space import OFFLINE_WORD_VECTORS
from fusion_lib.fusion.moe import MoEConfig
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.registry import resolve_methods


def check_compare(baseline: Any, backbones: Sequence[str]) -> str:
    """The ``--compare`` baseline: one method name."""
    if not isinstance(baseline, str) or "," in baseline or baseline == "all":
        raise checks.ParameterError(f"--compare takes one method name, got {baseline!r}")
    return resolve_methods(baseline, backbones)[0]


@dataclass
class ExperimentConfig:
    """An experiment: ``data``, the features it runs on (a ``FeatureSpec``; None when a ``FeatureSet`` is
    given to ``run_experiment``), ``train``, the optimisation settings every model shares, the
    ``methods`` (a list or a comma-separated string; ``"all"`` expands; stored resolved when ``data``
    names the backbones), and the ``seeds`` of the models and of each seed's split of the pool (the
    pool itself is drawn by ``data.seed``).

    The method settings: ``expert`` is the kind of expert head (``"linear"`` probe or ``"mlp"``);
    ``top_k`` lists the sparse-gating levels reported for the gated mixtures; ``aliases`` maps class
    names or tokens without a word vector to words (see ``fusion.label_space.class_vectors``);
    ``moe`` passes extra ``MoEConfig`` settings (e.g. ``{"regularizer": "entropy", "reg_weight": -0.1}``)
    to every jointly trained mixture; ``fit_cache`` keeps each seed's fitted models in
    ``$FUSION_CACHE/fits`` and loads them in later runs (``fusion_lib.studies.fit_cache``; the numbers
    are the same either way); ``out_dir`` receives config.json and the results.
    """

    data: FeatureSpec | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: str | Sequence[str] = "all"
    seeds: Sequence[int] = (0, 1, 2)
    expert: str = "linear"
    top_k: Sequence[int] = (1, 2)
    word_vectors: str = OFFLINE_WORD_VECTORS
    aliases: dict[str, str] = field(default_factory=dict)
    moe: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None
    fit_cache: bool = False

    def __post_init__(self) -> None:  # every value, before any work
        if self.data is not None and not isinstance(self.data, FeatureSpec):
            raise checks.ParameterError(f"data must be a FeatureSpec or None, got {self.data!r}")
        if self.data is not None:  # a study stores thumbnails for its thumbnail gates
            ThumbnailGate.check_size(self.data.thumbnail_size)
        if not isinstance(self.train, TrainConfig):
            raise checks.ParameterError(f"train must be a TrainConfig, got {self.train!r}")
        self.seeds = list(checks.seeds(self.seeds))
        self.top_k = [checks.integer(k, "each top_k level", 1) for k in self.top_k]
        self.methods = resolve_methods(self.methods, None if self.data is None else self.data.backbones)
        if self.expert not in EXPERT_KINDS:
            raise ValueError(f"unknown expert kind {self.expert!r}; valid kinds: {list(EXPERT_KINDS)}")
        valid = {f.name for f in fields(MoEConfig)} - {"gate", "label_experts", "thumbnail_size", "expert"}
        unknown = sorted(set(self.moe) - valid)
        if unknown:
            raise ValueError(f"unknown moe options {unknown}; valid options: {sorted(valid)}")
        checks.boolean(self.fit_cache, "fit_cache")
        if self.out_dir is not None:
            checks.writable_dir(self.out_dir, "output folder (out_dir)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, path: str | Path) -> "ExperimentConfig":
        """Read a config.json written by ``run_experiment``."""
        data = json.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        if data.get("data") is not None:
            spec = data["data"]
            data["data"] = FeatureSpec(**{**spec, "sizes": SplitSizes(**spec["sizes"])})
        data["train"] = TrainConfig(**data.get("train", {}))
        return cls(**data)
