"""The method registry: every fusion method of the book, as a function of one seed's trained models.

Each method is one entry, made by ``@register_method(name, family=..., needs_class_vectors=...,
fit_on=...)`` on a function ``SeedRun -> MethodOutput`` (as timm registers its models); ``METHODS``
maps each name to its ``MethodInfo``, and ``resolve_methods`` is the one place names are checked.

A ``SeedRun`` trains lazily, once per seed, what several methods share: the single-backbone probes,
their out-of-fold train probabilities, the calibrated expert outputs, the jointly trained mixtures and
the two-stage gates. With ``ExperimentConfig.fit_cache`` its fits go through the disk cache of
``fusion_lib.studies.fit_cache``, so that another run (another notebook) loads them instead.
``SeedRun.output(name)`` runs one, once per seed, so that methods built on others (``best_fixed``, the
gates' anchor) reuse them.

A method's ``fit_on`` governs what may be chosen on validation (``selectable``): a method fit on
another split than train (``stacking_val`` on validation, so its validation accuracy is in-sample;
``oracle`` on the labels of the split it predicts) is never a candidate of such a choice.
``NON_ADAPTIVE`` lists the fusions that weigh every image alike, simplest first, among which
``best_fixed`` takes the best on validation: the reference for "does per-image adaptivity help?", as
``best_single`` is for "does fusion help?".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import numpy as np

from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.data.validation import ParameterError, split_names
from fusion_lib.fusion import baselines
from fusion_lib.fusion.label_space import LabelSpaceModel, blend, choose_blend_weight, random_class_vectors
from fusion_lib.fusion.moe import MoE, MoEConfig
from fusion_lib.fusion.two_stage import Anchor, ExpertOutputs, TwoStageConfig, TwoStageMoE, expert_outputs
from fusion_lib.studies import metrics as M
from fusion_lib.studies.fit_cache import SeedFits, array_digest, backbone_spec, run_spec
from fusion_lib.studies.gate_analysis import gate_usage

if TYPE_CHECKING:
    from fusion_lib.studies.config import ExperimentConfig

SINGLE_PREFIX = "single:"
EVAL_SPLITS = ("val", "test")
# Thumbnail sizes the book's recipe chooses among on validation (capped at the stored thumbnail size).
THUMBNAIL_CHOICES = (8, 16, 32)
OOF_FOLDS = 5
# Fusions that weigh every image alike, simplest first (ties go to the first): best_fixed picks among
# them on validation accuracy.
NON_ADAPTIVE = ("prob_avg", "prob_avg_cal", "moe_uniform", "moe_static", "stacking", "concat")
# What a gate may be shrunk towards: the same fixed fusions, the one with the lowest validation NLL, so
# that alpha = 0 is the strongest of them and the gate is tried on top of it, not of a weaker one.
ANCHORS = NON_ADAPTIVE
# What a method may be fit on: "train" (every honest method), "val" (in-sample on validation) or
# "labels" (of the split it predicts: the oracle bound).
FIT_ON = ("train", "val", "labels")
FAMILIES = ("single backbone", "fixed fusion", "gated mixture", "label space", "oracle")
T = TypeVar("T")


@dataclass(frozen=True)
class TopK:
    """A gated mixture under sparse top-k inference: test accuracy and backbone GFLOPs per image."""

    accuracy: float
    gflops_per_image: float


@dataclass
class MethodOutput:
    """What a method yields for one seed: class probabilities (or hard predictions) and its costs."""

    probs: dict[str, np.ndarray] | None = None
    preds: dict[str, np.ndarray] | None = None
    gflops_per_image: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    gate_weights: np.ndarray | None = None  # a gated mixture's per-image weights on the test split
    top_k: dict[int, TopK] = field(default_factory=dict)  # sparse inference, per number of experts kept

    def predictions(self, split: str) -> np.ndarray:
        """Predicted class per image of ``split``."""
        return self.probs[split].argmax(1) if self.probs is not None else self.preds[split]


class SeedRun:
    """Lazily trained models shared between the methods of one seed (on that seed's split); the experts
    are temperature-scaled on validation unless ``calibrate`` is False (see ``uncalibrated``)."""

    def __init__(
        self,
        fs: FeatureSet,
        seed: int,
        config: "ExperimentConfig",
        class_vecs: np.ndarray | None,
        calibrate: bool = True,
    ) -> None:
        self.fs, self.seed, self.config, self._class_vecs = fs, seed, config, class_vecs
        self.calibrate = calibrate
        self.train = config.train
        self._moes: dict[str, MoE] = {}
        self._two_stage: dict[TwoStageConfig, TwoStageMoE] = {}
        self._outputs: dict[str, MethodOutput] = {}

    def output(self, name: str) -> "MethodOutput":
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
    def _fits(self) -> SeedFits | None:
        """This seed's fit cache (its FeatureSet is hashed here, once), or None when it is off."""
        if not self.config.fit_cache:
            return None
        return SeedFits(run_spec(self.fs, self.seed, self.train, self.config.expert))

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
                out[b] = SeedFits(shared).get(kind, spec, lambda: fit(one))
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

    def uncalibrated(self) -> "SeedRun":
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
                thumbnail_size=self.fs.thumbnail_size,
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
            recipe = TwoStageMoE(cfg, self.train)
            if len(recipe.sizes) > 1:  # one fit per size, shared with the single-size recipes
                fits = [self.two_stage(recipe.for_size(s).config) for s in recipe.sizes]
                self._two_stage[cfg] = recipe.adopt_best(fits)
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
                    "two_stage", spec, lambda: recipe.fit(self.fs, ex, self.seed, anchor)
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


# -- the registry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodInfo:
    """A registered method: ``fn(run) -> MethodOutput`` and the facts that govern its use. ``family``
    is one of ``FAMILIES``; ``needs_class_vectors``: it reads the classes' word vectors;
    ``fit_on``: "train", or the split it is also fit on ("val", or the "labels" of the split it
    predicts), which keeps it out of any choice made on validation."""

    name: str
    fn: Callable[["SeedRun"], MethodOutput]
    family: str
    needs_class_vectors: bool = False
    fit_on: str = "train"


METHODS: dict[str, MethodInfo] = {}  # in report order: the order "all" expands to


def register_method(
    name: str, *, family: str, needs_class_vectors: bool = False, fit_on: str = "train"
) -> Callable[[Callable[["SeedRun"], MethodOutput]], Callable[["SeedRun"], MethodOutput]]:
    """Register ``fn(run) -> MethodOutput`` as method ``name`` (a decorator, as timm registers models)."""
    if family not in FAMILIES:
        raise ValueError(f"method {name!r}: unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if fit_on not in FIT_ON:
        raise ValueError(f"method {name!r}: fit_on must be one of {FIT_ON}, got {fit_on!r}")
    if name in METHODS or name.startswith(("single_", SINGLE_PREFIX)) or name == "all":
        raise ValueError(f"method name {name!r} is taken")

    def add(fn: Callable[["SeedRun"], MethodOutput]) -> Callable[["SeedRun"], MethodOutput]:
        METHODS[name] = MethodInfo(name, fn, family, needs_class_vectors, fit_on)
        return fn

    return add


def method_info(name: str) -> MethodInfo:
    """The registry entry of a resolved name (``single:<backbone>`` methods are made on demand)."""
    if name.startswith(SINGLE_PREFIX):
        return MethodInfo(name, _single(name[len(SINGLE_PREFIX) :]), "single backbone")
    return METHODS[name]


# -- baselines -----------------------------------------------------------------------------------
def _single(backbone: str) -> Callable[[SeedRun], MethodOutput]:
    def run(r: SeedRun) -> MethodOutput:
        return MethodOutput(probs=r.probes[backbone], gflops_per_image=gflops(r.fs, [backbone]))

    return run


@register_method("best_single", family="single backbone")
def _best_single(r: SeedRun) -> MethodOutput:
    best = baselines.best_single(r.probes, r.fs)
    return MethodOutput(
        probs=r.probes[best],
        gflops_per_image=gflops(r.fs, [best]),
        extra={"chosen_backbone_index": float(r.fs.backbones.index(best))},
    )


@register_method("concat", family="fixed fusion")
def _concat(r: SeedRun) -> MethodOutput:
    # through the fit cache: the gate's anchor needs every fixed fusion, in every run that fits a gate
    probs = r._fit("concat", {}, lambda: baselines.fit_concat(r.fs, r.seed, r.train, r.config.expert))
    return MethodOutput(probs=probs, gflops_per_image=r.total_gflops())


@register_method("prob_avg", family="fixed fusion")
def _prob_avg(r: SeedRun) -> MethodOutput:
    return MethodOutput(probs=baselines.prob_average(r.probes), gflops_per_image=r.total_gflops())


@register_method("prob_avg_cal", family="fixed fusion")
def _prob_avg_calibrated(r: SeedRun) -> MethodOutput:
    probs = {s: r.experts.probs(s).mean(axis=1) for s in EVAL_SPLITS}
    return MethodOutput(probs=probs, gflops_per_image=r.total_gflops())


def _stacking(r: SeedRun, source: str) -> MethodOutput:
    oof = r.oof_probes if source == "oof" else None
    probs = r._fit(
        "stacking",
        {"source": source, "folds": OOF_FOLDS},
        lambda: baselines.fit_stacking(
            r.fs, r.probes, source, r.seed, r.train, r.config.expert, oof_train=oof
        ),
    )
    return MethodOutput(probs=probs, gflops_per_image=r.total_gflops())


@register_method("stacking", family="fixed fusion")
def _stacking_oof(r: SeedRun) -> MethodOutput:
    """A meta-learner on the probes' out-of-fold train probabilities."""
    return _stacking(r, "oof")


@register_method("stacking_val", family="fixed fusion", fit_on="val")
def _stacking_val(r: SeedRun) -> MethodOutput:
    """A meta-learner fit on the validation split (its validation accuracy is in-sample)."""
    return _stacking(r, "val")


@register_method("best_fixed", family="fixed fusion")
def _best_fixed(r: SeedRun) -> MethodOutput:
    """The non-adaptive fusion with the best validation accuracy (then NLL) on this seed."""
    y = r.fs.labels["val"]

    def score(name: str) -> tuple[float, float]:
        out = r.output(name)
        return (-M.accuracy(y, out.predictions("val")), M.log_loss(out.probs["val"], y))

    best = min(NON_ADAPTIVE, key=score)
    chosen = r.output(best)
    return MethodOutput(
        probs=chosen.probs,
        gflops_per_image=chosen.gflops_per_image,
        extra={"chosen_fixed_index": float(NON_ADAPTIVE.index(best))},
    )


@register_method("oracle", family="oracle", fit_on="labels")
def _oracle(r: SeedRun) -> MethodOutput:
    preds = {
        s: baselines.oracle_predictions({b: p[s].argmax(1) for b, p in r.probes.items()}, r.fs.labels[s])
        for s in EVAL_SPLITS
    }
    return MethodOutput(preds=preds, gflops_per_image=r.total_gflops())


# -- jointly trained mixtures (the control) ------------------------------------------------------
def _moe_output(r: SeedRun, moe: MoE) -> MethodOutput:
    fs = r.fs
    out = MethodOutput(
        probs={s: moe.predict_proba(fs, s) for s in EVAL_SPLITS},
        extra={
            "gate_params": float(moe.gate_params),
            "gate_mflops": moe.gate_flops / 1e6,
            "epochs_run": float(len(moe.history_.train_loss)),
        },
    )
    if moe.config.gate != "uniform":
        out.gate_weights = moe.gate_weights(fs, "test")
        usage = gate_usage(out.gate_weights)
        out.extra.update(
            gate_max_weight=usage["mean_max_weight"], gate_effective_experts=usage["effective_experts"]
        )
    if gflops(fs, fs.backbones) is None:
        return out
    out.gflops_per_image = moe.expected_gflops(fs, "test")
    # top-k of the uniform gate would only drop a fixed, arbitrary set of experts: report learned gates
    if moe.config.gate in ("thumbnail", "feature", "static"):
        for k in r.config.top_k:
            if k < len(moe.expert_names):
                out.top_k[k] = TopK(
                    M.accuracy(fs.labels["test"], moe.predict(fs, "test", top_k=k)),
                    moe.expected_gflops(fs, "test", top_k=k),
                )
    return out


@register_method("moe_uniform", family="gated mixture")
def _moe_uniform(r: SeedRun) -> MethodOutput:
    return _moe_output(r, r.moe("uniform"))


@register_method("moe_thumbnail_joint", family="gated mixture")
def _moe_thumbnail_joint(r: SeedRun) -> MethodOutput:
    return _moe_output(r, r.moe("thumbnail"))


@register_method("moe_feature_joint", family="gated mixture")
def _moe_feature_joint(r: SeedRun) -> MethodOutput:
    return _moe_output(r, r.moe("feature"))


# -- two-stage mixtures (gates fit on out-of-fold expert outputs) --------------------------------
def thumbnail_choices(stored: int) -> tuple[int, ...]:
    """The book recipe's candidate thumbnail sizes: ``THUMBNAIL_CHOICES`` up to the stored size."""
    return tuple(s for s in THUMBNAIL_CHOICES if s <= stored) or (stored,)


def recipe(name: str, thumbnail_size: int, n_experts: int, cheapest: str | None = None) -> TwoStageConfig:
    """The two-stage configuration behind a method name (``thumbnail_size``: the stored thumbnails;
    a noisy top-k gate keeps at most ``n_experts``; ``cheapest``: the backbone ``moe_cheap_feature``
    reads)."""
    if name == "moe_thumbnail":
        return TwoStageConfig(gate="thumbnail", thumbnail_sizes=thumbnail_choices(thumbnail_size))
    if name == "moe_cheap_feature":
        if cheapest is None:
            raise ValueError("moe_cheap_feature needs the name of the cheapest backbone (cheapest=...)")
        return TwoStageConfig(gate="feature", feature_backbones=(cheapest,))
    gate, noisy = TWO_STAGE[name]
    return TwoStageConfig(
        gate=gate,
        thumbnail_sizes=(thumbnail_size,),
        noisy_top_k=None if noisy is None else min(noisy, n_experts),
        shrink=noisy is None,
    )


def _two_stage_output(r: SeedRun, name: str) -> MethodOutput:
    fs, ex = r.fs, r.experts
    m = r.two_stage(recipe(name, fs.thumbnail_size, len(ex.names), r.cheapest))
    weights = m.gate_weights(fs, ex, "test")
    usage = gate_usage(weights)
    out = MethodOutput(
        probs={s: m.predict_proba(fs, ex, s) for s in EVAL_SPLITS},
        gate_weights=weights,
        extra={
            "alpha": m.alpha_,
            "gate_mflops": m.gate_flops / 1e6,
            "gate_max_weight": usage["mean_max_weight"],
            "gate_effective_experts": usage["effective_experts"],
            "active_experts": float(m.default_top_k(None) or len(ex.names)),
            "anchor_index": float(ANCHORS.index(m.anchor_.name)),
        },
    )
    if "thumbnail" in m.config.gate:
        out.extra["thumbnail_size"] = float(m.size_)
    if m.config.shrink and m.config.gate != "static":
        # how often the gate changes its anchor's answer: near 0, "no better than the anchor" says that
        # validation switched the gate off rather than that it routes no better
        out.extra["gate_changes_anchor"] = float(
            np.mean(out.probs["test"].argmax(1) != m.anchor_.probs["test"].argmax(1))
        )
    if gflops(fs, fs.backbones) is None:
        return out
    out.gflops_per_image = m.expected_gflops(fs, ex, "test")
    if m.config.noisy_top_k is None and not m.needs_all_backbones:
        for k in r.config.top_k:
            if k < len(ex.names):
                out.top_k[k] = TopK(
                    M.accuracy(fs.labels["test"], m.predict_proba(fs, ex, "test", top_k=k).argmax(1)),
                    m.expected_gflops(fs, ex, "test", top_k=k),
                )
    return out


# name -> (gate inputs, noisy top-k); "moe_thumbnail" also chooses its thumbnail size on validation
TWO_STAGE: dict[str, tuple[str, int | None]] = {
    "moe_static": ("static", None),
    "moe_thumbnail_oof": ("thumbnail", None),
    "moe_thumbnail_noisy": ("thumbnail", 2),
    "moe_thumbnail": ("thumbnail", None),
    "moe_feature": ("feature", None),
    "moe_cheap_feature": ("feature", None),
    "moe_confidence": ("confidence", None),
    "moe_thumbnail_conf": ("thumbnail+confidence", None),
}


def _register_two_stage(name: str) -> None:
    @register_method(name, family="gated mixture")
    def run(r: SeedRun) -> MethodOutput:
        return _two_stage_output(r, name)


for _recipe in TWO_STAGE:  # one entry per recipe, in the table's order
    _register_two_stage(_recipe)


def _thumbnail_at_alpha(r: SeedRun, alpha: float) -> MethodOutput:
    """The book recipe's fitted gate (its thumbnail size chosen on validation) mixed at a fixed ``alpha``."""
    fs, ex = r.fs, r.experts
    m = r.two_stage(recipe("moe_thumbnail", fs.thumbnail_size, len(ex.names), r.cheapest))
    cost = (
        None
        if r.total_gflops() is None
        else (m.expected_gflops(fs, ex, "test") if alpha else r.total_gflops())
    )
    return MethodOutput(
        probs={s: m.predict_proba(fs, ex, s, alpha=alpha) for s in EVAL_SPLITS},
        gflops_per_image=cost,  # alpha = 0 runs the anchor alone, no gate
        extra={"anchor_index": float(ANCHORS.index(m.anchor_.name))},
    )


@register_method("moe_thumbnail_alpha0", family="fixed fusion")
def _moe_thumbnail_alpha0(r: SeedRun) -> MethodOutput:
    """``moe_thumbnail`` with its gate switched off (alpha = 0): its anchor, the same fit's reference for
    "does the gate add anything?" (a fixed fusion chosen on validation, so never a candidate of
    ``best_fixed``, which chooses among the same fusions)."""
    return _thumbnail_at_alpha(r, 0.0)


@register_method("moe_thumbnail_alpha1", family="gated mixture")
def _moe_thumbnail_alpha1(r: SeedRun) -> MethodOutput:
    """``moe_thumbnail``'s gate unshrunk (alpha = 1): the gate's own routing, without its anchor."""
    return _thumbnail_at_alpha(r, 1.0)


@register_method("moe_thumbnail_label", family="gated mixture", needs_class_vectors=True)
def _moe_thumbnail_label(r: SeedRun) -> MethodOutput:
    """The joint thumbnail mixture with a label-space head beside each visual expert."""
    return _moe_output(r, r.moe("thumbnail", label_experts=True))


# -- label space ---------------------------------------------------------------------------------
@register_method("label_space", family="label space", needs_class_vectors=True)
def _label_space(r: SeedRun) -> MethodOutput:
    probs = {s: r.label_model.predict_proba(r.fs, s) for s in EVAL_SPLITS}
    return MethodOutput(probs=probs, gflops_per_image=r.total_gflops())


@register_method("blend_label", family="label space", needs_class_vectors=True)
def _blend_label(r: SeedRun) -> MethodOutput:
    """The book's visual fusion (``moe_thumbnail``) blended with the label-space heads."""
    return _blend(r, r.label_model)


@register_method("blend_random", family="label space", needs_class_vectors=True)
def _blend_random(r: SeedRun) -> MethodOutput:
    """The control of ``blend_label``: the same blend with heads on random class vectors, so that what
    ``blend_label`` gains over it is what the words' meaning adds."""
    return _blend(r, r.random_label_model)


def _blend(r: SeedRun, label_model: LabelSpaceModel) -> MethodOutput:
    """``moe_thumbnail`` blended with ``label_model``'s probabilities, the weight chosen on validation."""
    visual = r.output("moe_thumbnail")
    p_lab = {s: label_model.predict_proba(r.fs, s) for s in EVAL_SPLITS}
    w = choose_blend_weight(visual.probs["val"], p_lab["val"], r.fs.labels["val"])
    return MethodOutput(
        probs={s: blend(visual.probs[s], p_lab[s], w) for s in EVAL_SPLITS},
        gflops_per_image=visual.gflops_per_image,
        extra={"blend_weight": w},
    )


def method_names(backbones: Sequence[str], needs_class_vectors: bool | None = None) -> list[str]:
    """Every valid method name for these backbones, in report order (``"all"`` expands to this); with
    ``needs_class_vectors`` False (True), only the methods that do not (do) read word vectors."""
    names = [f"{SINGLE_PREFIX}{b}" for b in backbones] + list(METHODS)
    if needs_class_vectors is None:
        return names
    return [m for m in names if method_info(m).needs_class_vectors == needs_class_vectors]


def resolve_methods(spec: Any, backbones: Sequence[str] | None) -> list[str] | str:
    """The one check of method names: a list or comma-separated string of registered names,
    ``single_<backbone>`` (or ``single:<backbone>``) and ``"all"``, resolved against ``backbones``.
    Without backbones (features not known yet) every name is checked but ``single_<b>`` and ``"all"``
    stay unexpanded, and the names come back as given."""
    if not isinstance(spec, str) and not (
        isinstance(spec, Sequence) and all(isinstance(m, str) for m in spec)
    ):
        raise ParameterError(f"methods must be a comma-separated string or a list of names, got {spec!r}")
    names = split_names(spec)
    if backbones is None:
        shown = f"{', '.join(METHODS)}, single_<backbone> (or 'all')"
        unknown = [
            m
            for m in names
            if m != "all" and m not in METHODS and not m.startswith(("single_", SINGLE_PREFIX))
        ]
        if unknown or not names:
            raise ParameterError(f"unknown method(s) {unknown or spec!r}; valid methods: {shown}")
        return spec if isinstance(spec, str) else list(spec)
    valid = method_names(backbones)
    out: list[str] = []
    for name in names:
        expanded = (
            valid
            if name == "all"
            else [name.replace("single_", SINGLE_PREFIX, 1) if name.startswith("single_") else name]
        )
        for m in expanded:
            if m not in valid:
                raise ParameterError(f"unknown method {name!r}; valid methods: {', '.join(valid)} (or 'all')")
            if m not in out:
                out.append(m)
    if not out:
        raise ParameterError(f"no methods given; valid methods: {', '.join(valid)} (or 'all')")
    return out


def selectable(methods: Sequence[str]) -> list[str]:
    """The methods a choice made on validation may pick among: only those fit on train alone."""
    return [m for m in methods if method_info(m).fit_on == "train"]


def any_needs_class_vectors(methods: Sequence[str]) -> bool:
    """Whether any of these resolved methods reads the classes' word vectors."""
    return any(method_info(m).needs_class_vectors for m in methods)
