"""Test configs from flat settings: ``TrainConfig``'s fields go to ``train``, the rest to ``ExperimentConfig``."""

from dataclasses import fields

from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.config import ExperimentConfig

TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


def experiment(**settings) -> ExperimentConfig:
    """``ExperimentConfig(train=TrainConfig(epochs=..., ...), ...)`` written flat, as tests set it."""
    train = {k: settings.pop(k) for k in list(settings) if k in TRAIN_FIELDS}
    return ExperimentConfig(train=TrainConfig(**train), **settings)
