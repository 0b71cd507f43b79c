"""``ExperimentConfig``: one dataset, its subset sizes and backbones, the methods to run and the
training settings of an experiment (checked in full when it is made; read and written as JSON)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from fusion_lib.data import validation
from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.extraction import OFFLINE_INPUT_SIZE
from fusion_lib.fusion.experts import EXPERT_KINDS
from fusion_lib.fusion.label_space import OFFLINE_WORD_VECTORS
from fusion_lib.fusion.moe import MoEConfig
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.methods import METHODS, SINGLE_PREFIX, resolve_methods


def check_methods(spec: Any, backbones: Sequence[str] | None = None) -> list[str]:
    """Method names. With ``backbones``, fully resolved (``single_<b>`` must name one of them); without,
    every name must be a known method, "all" or a ``single_<backbone>``."""
    if not isinstance(spec, str) and not (
        isinstance(spec, Sequence) and all(isinstance(m, str) for m in spec)
    ):
        raise validation.ParameterError(
            f"methods must be a comma-separated string or a list of names, got {spec!r}"
        )
    if backbones is not None:
        return resolve_methods(spec, backbones)
    names = validation.split_names(spec)
    unknown = [
        m for m in names if m != "all" and m not in METHODS and not m.startswith(("single_", SINGLE_PREFIX))
    ]
    if unknown or not names:
        raise validation.ParameterError(
            f"unknown method(s) {unknown or spec!r}; valid methods: {', '.join(METHODS)}, "
            f"single_<backbone> (or 'all')"
        )
    return names


def check_compare(baseline: Any, backbones: Sequence[str]) -> str:
    """The ``--compare`` baseline: one method name."""
    if not isinstance(baseline, str) or "," in baseline or baseline == "all":
        raise validation.ParameterError(f"--compare takes one method name, got {baseline!r}")
    return check_methods(baseline, backbones)[0]


@dataclass
class ExperimentConfig:
    """One dataset, its subset sizes and backbones, the methods to run and the training settings.

    ``methods`` and ``backbones`` take a list or a comma-separated string (``"all"`` / ``"offline"``
    expand); ``seeds`` are the seeds of the models and of each seed's split of the pool, while
    ``data_seed`` draws the pool of images (whose features are extracted once); ``expert`` is the kind
    of expert head (``"linear"`` probe or ``"mlp"``); ``top_k`` lists the sparse-gating levels reported for the gated mixtures;
    ``input_size=None`` extracts features at each backbone's native size; ``aliases`` maps class names
    or tokens without a word vector to words (see ``fusion.label_space.class_vectors``); ``moe`` passes
    extra ``MoEConfig`` settings (e.g. ``{"regularizer": "entropy", "reg_weight": -0.1}``) to every
    mixture method; ``fit_cache`` keeps each seed's fitted models in ``$FUSION_CACHE/fits`` and loads
    them in later runs (``fusion_lib.studies.fit_cache``; the numbers are the same either way).
    """

    dataset: str = "fashion_mnist"
    train: int = 1500
    val: int = 500
    test: int = 1000
    backbones: str | list[str] = "offline"
    methods: str | list[str] = "all"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    thumbnail_size: int = 32
    epochs: int = 60
    lr: float = 3e-3
    batch_size: int | None = 256
    patience: int = 8
    device: str = "cpu"
    threads: int | None = 1
    input_size: int | None = OFFLINE_INPUT_SIZE
    data_seed: int = 0
    top_k: list[int] = field(default_factory=lambda: [1, 2])
    expert: str = "linear"
    word_vectors: str = OFFLINE_WORD_VECTORS
    aliases: dict[str, str] = field(default_factory=dict)
    moe: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None
    skip_bad_images: bool = False  # leave unreadable image files out (listed) instead of stopping
    fit_cache: bool = False

    def __post_init__(self) -> None:
        self._check_values()  # every value, before any work
        check_methods(self.methods)
        if self.expert not in EXPERT_KINDS:
            raise ValueError(f"unknown expert kind {self.expert!r}; valid kinds: {list(EXPERT_KINDS)}")
        valid = {f.name for f in fields(MoEConfig)} - {"gate", "label_experts", "thumbnail_size", "expert"}
        unknown = sorted(set(self.moe) - valid)
        if unknown:
            raise ValueError(f"unknown moe options {unknown}; valid options: {sorted(valid)}")

    def _check_values(self) -> None:
        """Every value but the names (the dataset and backbones may be a given FeatureSet's own, so they
        are checked where features are loaded; the methods by ``check_methods``)."""
        validation.seeds(list(self.seeds))
        validation.integer(self.data_seed, "data_seed", 0)
        validation.split_sizes(self.dataset, SplitSizes(self.train, self.val, self.test))
        self.input_size = validation.input_size(self.input_size)
        validation.thumbnail_size(self.thumbnail_size)
        validation.device(self.device)
        for k in self.top_k:
            validation.integer(k, "each top_k level", 1)
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr):
            raise validation.ParameterError(f"lr must be a finite number > 0, got {self.lr!r}")
        self.train_config()  # epochs, lr, batch size, patience, threads: TrainConfig's own checks
        validation.boolean(self.fit_cache, "fit_cache")
        if self.out_dir is not None:
            validation.writable_dir(self.out_dir, "output folder (out_dir)")

    def train_config(self) -> TrainConfig:
        """The shared optimisation settings."""
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            patience=self.patience,
            device=self.device,
            threads=self.threads,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, path: str | Path) -> "ExperimentConfig":
        """Read a config.json written by ``run_experiment``."""
        data = json.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        return cls(**data)
