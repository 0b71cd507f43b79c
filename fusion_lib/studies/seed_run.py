"""The per-seed engine of every study: one seed's trained models, and the loop over seeds.

A ``SeedRun`` trains lazily, once per seed, what several methods share: the single-backbone probes,
their out-of-fold train probabilities, the calibrated expert outputs, the jointly trained mixtures and
the two-stage gates with the anchor they are shrunk towards. With ``ExperimentConfig.fit_cache`` its
fits go through the disk cache of ``fusion_lib.studies.fit_cache``, so that another run (another
notebook) loads them instead. ``SeedRun.output(name)`` runs one registered method
(``fusion_lib.studies.registry``), once per seed, so that methods built on others (``best_fixed``, the
gates' anchor) reuse them.

Each study (the experiment's methods, the label-space study, the agreement study, the ablations) runs
the same steps per seed: draw that seed's split of the pool (``FeatureSet.draw``), train in
deterministic mode under the config's thread cap, share the seed's fitted models through one
``SeedRun`` (and through the disk fit cache when ``config.fit_cache``), and record each test image's
pool index so that the intervals resample an image shared by several seeds jointly. ``seed_loop``
does those steps once; a study only scores the runs it is given.

``NON_ADAPTIVE`` lists the fusions that weigh every image alike, simplest first, among which
``best_fixed`` takes the best on validation: the reference for "does per-image adaptivity help?", as
``best_single`` is for "does fusion help?"; the same fusions are the anchors a gate may be shrunk
towards.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from functools import cached_property
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
from tqdm.auto import tqdm

from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.fusion import baselines
from fusion_lib.fusion.label_space import LabelSpaceModel, random_class_vectors
from fusion_lib.fusion.moe import MoE, MoEConfig
from fusion_lib.fusion.training import TrainConfig, deterministic, num_threads
from fusion_lib.fusion.two_stage import Anchor, ExpertOutputs, TwoStageConfig, TwoStageMoE, expert_outputs
from fusion_lib.studies import metrics as M
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.fit_cache import FitCache, array_digest, backbone_spec, run_spec
from fusion_lib.studies.registry import MethodOutput, method_info

EVAL_SPLITS = ("val", "test")
OOF_FOLDS = 5
# Fusions that weigh every image alike, simplest first (ties go to the first): best_fixed picks among
# them on validation accuracy.
NON_ADAPTIVE = ("prob_avg", "prob_avg_cal", "moe_uniform", "moe_static", "stacking", "concat")
# What a gate may be shrunk towards: the same fixed fusions, the one with the lowest validation NLL, so
# that alpha = 0 is the strongest of them and the gate is tried on top of it, not of a weaker one.
ANCHORS = NON_ADAPTIVE
T = TypeVar("T")


class SeedRun:
    """Lazily trained models shared between the methods of one seed (on that seed's split); the experts
    are temperature-scaled on validation unless ``calibrate`` is False (see ``uncalibrated``)."""

    def __init__(
        self,
        fs: FeatureSet,
        seed: int,
        config: ExperimentConfig,
        class_vecs: np.ndarray | None,
        calibrate: bool = True,
    ) -> None:
        self.fs, self.seed, self.config, self._class_vecs = fs, seed, config, class_vecs
        self.calibrate = calibrate
        self.train = config.train
        self._moes: dict[str, MoE] = {}
        self._two_stage: dict[TwoStageConfig, TwoStageMoE] = {}
        self._outputs: dict[str, MethodOutput] = {}

    def output(self, name: str) -> MethodOutput:
        """Method ``name``'s output on this seed, computed once."""
        if name not in self._outputs:
            self._outputs[name] = method_info(name).fn(self)
        return self._outputs[name]

    @property
    def class_vecs(self) -> np.ndarray:
        if self._class_vecs is None:
            raise ValueError("label-space methods need class vectors; pass word_vectors to run_experiment")
        return self._class_vecs

    @cached_property
    def _fits(self) -> FitCache | None:
        """This seed's fit cache (its FeatureSet is hashed here, once), or None when it is off."""
        if not self.config.fit_cache:
            return None
        return FitCache(run_spec(self.fs, self.seed, self.train, self.config.expert))

    def _fit(self, kind: str, spec: dict[str, Any], fit: Callable[[], T]) -> T:
        """``fit()``, through the fit cache when it is on (``spec``: what else the fit depends on)."""
        return fit() if self._fits is None else self._fits.get(kind, spec, fit)

    def _per_backbone(self, kind: str, spec: dict[str, Any], fit: Callable[[FeatureSet], T]) -> dict[str, T]:
        """``fit(features of one backbone)`` for every backbone, each through the fit cache under a key of
        that backbone's features alone (``backbone_spec``), so that every zoo and every study that has
        the backbone on the same images and seed shares its probes."""
        out = {}
        for b in self.fs.backbones:
            one = self.fs.subset_backbones([b])
            if self._fits is None:
                out[b] = fit(one)
            else:
                shared = backbone_spec(one, self.seed, self.train, self.config.expert)
                out[b] = FitCache(shared).get(kind, spec, lambda: fit(one))
        return out

    @cached_property
    def probes(self) -> dict[str, dict[str, np.ndarray]]:
        """Each backbone's probe: its probabilities on every split."""
        return self._per_backbone(
            "probe",
            {},
            lambda one: baselines.fit_single_probes(one, self.seed, self.train, self.config.expert)[
                one.backbones[0]
            ],
        )

    @cached_property
    def oof_probes(self) -> dict[str, np.ndarray]:
        """Each probe's out-of-fold probabilities on the train split."""
        return self._per_backbone(
            "oof_probe",
            {"folds": OOF_FOLDS},
            lambda one: baselines.oof_train_probs(one, self.seed, self.train, self.config.expert, OOF_FOLDS)[
                one.backbones[0]
            ],
        )

    @cached_property
    def experts(self) -> ExpertOutputs:
        """Expert outputs: out-of-fold on train, temperature-scaled on validation (if ``calibrate``)."""
        return expert_outputs(self.fs, self.probes, self.oof_probes, calibrate=self.calibrate)

    def uncalibrated(self) -> SeedRun:
        """This seed's run with raw expert probabilities: its gates and anchor are fit again on them,
        its probes are this run's (fitted once)."""
        raw = SeedRun(self.fs, self.seed, self.config, self._class_vecs, calibrate=False)
        raw.__dict__.update(probes=self.probes, oof_probes=self.oof_probes)  # the cached properties
        return raw

    @property
    def test_ids(self) -> np.ndarray | None:
        """The pool index of each test image of this seed (None when the pool does not record them)."""
        return self.fs.indices.get("test")

    @cached_property
    def label_model(self) -> LabelSpaceModel:
        return self.label_space(self.class_vecs)

    @cached_property
    def random_label_model(self) -> LabelSpaceModel:
        """The control of the word vectors: the same label-space heads on random class vectors of the same
        shape (``random_class_vectors``, seeded by this run's seed)."""
        return self.label_space(random_class_vectors(*self.class_vecs.shape, seed=self.seed))

    def label_space(self, class_vecs: np.ndarray) -> LabelSpaceModel:
        """A label-space model on ``class_vecs`` (the word vectors', or a control's random ones)."""
        return self._fit(
            "label_model",
            {"class_vecs": array_digest(class_vecs)},
            lambda: LabelSpaceModel(class_vecs, self.train).fit(self.fs, self.seed),
        )

    def moe(self, gate: str, label_experts: bool = False) -> MoE:
        """A mixture trained jointly with its experts (the control recipe)."""
        key = f"{gate}{'+label' if label_experts else ''}"
        if key not in self._moes:
            cfg = MoEConfig(
                gate=gate,
                label_experts=label_experts,
                expert=self.config.expert,
                **self.config.moe,
            )
            class_vecs = self.class_vecs if label_experts else None
            spec = {
                "config": asdict(cfg),
                "class_vecs": None if class_vecs is None else array_digest(class_vecs),
            }
            self._moes[key] = self._fit(
                "moe", spec, lambda: MoE(cfg, self.train, class_vecs).fit(self.fs, self.seed)
            )
        return self._moes[key]

    @cached_property
    def anchor(self) -> Anchor:
        """The strongest non-adaptive fusion on validation NLL among ``ANCHORS``: what a gate is shrunk
        towards (calibrated averaging is under-confident when every temperature exceeds 1). Its weights
        on the experts, used under top-k, are the static gate's for ``moe_static`` and uniform for the
        others (averages, or fusions that are no weighting of the experts)."""
        y = self.fs.labels["val"]
        nll = {name: M.log_loss(self.output(name).probs["val"], y) for name in ANCHORS}
        name = min(ANCHORS, key=nll.__getitem__)  # ties: the first, the simplest
        k = len(self.experts.names)
        weights = (
            self.output(name).gate_weights[0].astype(np.float64)  # static: one weighting for all images
            if name == "moe_static"
            else np.full(k, 1.0 / k)
        )
        return Anchor(name, {s: self.output(name).probs[s] for s in EVAL_SPLITS}, weights / weights.sum())

    def two_stage(self, cfg: TwoStageConfig) -> TwoStageMoE:
        """A gate trained on the calibrated out-of-fold expert outputs, shrunk towards ``anchor`` (a
        static gate, itself an anchor candidate, and an unshrunk gate keep calibrated averaging)."""
        if cfg not in self._two_stage:
            mixture = TwoStageMoE(cfg, self.train)
            if len(mixture.sizes) > 1:  # one fit per size, shared with the single-size recipes
                fits = [self.two_stage(mixture.for_size(s).config) for s in mixture.sizes]
                self._two_stage[cfg] = mixture.adopt_best(fits)
            else:
                ex = self.experts
                anchor = None if cfg.gate == "static" or not cfg.shrink else self.anchor
                # the gate is fit on the expert outputs and shrunk towards the anchor: their bytes are
                # part of its key
                spec = {
                    "config": asdict(cfg),
                    "experts": ex.names,
                    "expert_outputs": array_digest(*(ex.log_probs[s] for s in SPLITS)),
                    "anchor": None
                    if anchor is None
                    else [anchor.name, array_digest(anchor.weights, *anchor.probs.values())],
                }
                self._two_stage[cfg] = self._fit(
                    "two_stage", spec, lambda: mixture.fit(self.fs, ex, self.seed, anchor)
                )
        return self._two_stage[cfg]

    def total_gflops(self) -> float | None:
        return gflops(self.fs, self.fs.backbones)

    @property
    def cheapest(self) -> str:
        """The backbone with the fewest GFLOPs per image (the first backbone when costs are unknown)."""
        costs = self.fs.backbone_gflops
        if not all(b in costs for b in self.fs.backbones):
            return self.fs.backbones[0]
        return min(self.fs.backbones, key=costs.__getitem__)


def gflops(fs: FeatureSet, backbones: Sequence[str]) -> float | None:
    """Summed backbone GFLOPs per image, or None when some backbone's cost is unknown."""
    if not all(b in fs.backbone_gflops for b in backbones):
        return None
    return float(sum(fs.backbone_gflops[b] for b in backbones))


@contextmanager
def seed_mode(train: TrainConfig) -> Iterator[None]:
    """Deterministic kernels and ``train.threads`` torch threads for the block (restored after)."""
    with deterministic(), num_threads(train.threads):
        yield


def seed_loop(
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
