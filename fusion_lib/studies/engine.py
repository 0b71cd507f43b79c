"""The one per-seed loop of every study.

Each study (the experiment's methods, the label-space study, the agreement study, the ablations) runs
the same steps per seed: draw that seed's split of the pool (``FeatureSet.draw``), train in
deterministic mode under the config's thread cap, share the seed's fitted models through one
``SeedRun`` (and through the disk fit cache when ``config.fit_cache``), and record each test image's
pool index so that the intervals resample an image shared by several seeds jointly. ``seed_runs``
does those steps once; a study only scores the runs it is given.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.training import TrainConfig, deterministic, num_threads
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.methods import SeedRun


@contextmanager
def seed_mode(train: TrainConfig) -> Iterator[None]:
    """Deterministic kernels and ``train.threads`` torch threads for the block (restored after)."""
    with deterministic(), num_threads(train.threads):
        yield


def seed_runs(
    pool: FeatureSet,
    config: ExperimentConfig,
    class_vecs: np.ndarray | None = None,
    desc: str = "seeds",
    progress: bool = True,
) -> Iterator[SeedRun]:
    """One ``SeedRun`` per seed of ``config`` (never empty: the config checks it) on that seed's draw of
    ``pool``, each used inside ``seed_mode``; ``class_vecs`` are the classes' word vectors for the
    methods that read them."""
    with seed_mode(config.train):
        bar = tqdm(config.seeds, desc=f"{pool.dataset} {desc}", disable=not progress)
        for seed in bar:
            bar.set_postfix_str(f"seed={seed}")
            yield SeedRun(pool.draw(seed), seed, config, class_vecs)


def restrict(pool: FeatureSet, config: ExperimentConfig) -> FeatureSet:
    """The pool a study runs on: as given when ``config.data`` is None, else its spec's backbones."""
    return pool if config.data is None else pool.subset_backbones(list(config.data.backbones))
