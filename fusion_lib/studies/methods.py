"""The built-in fusion methods of the book, each a function of one seed's trained models.

Each method is one entry of the registry (``fusion_lib.studies.registry``), made by
``@register_method(name, family=..., needs_class_vectors=..., fit_on=...)`` on a function
``SeedRun -> MethodOutput``, as timm's model files register their models; the models they share (probes,
experts, mixtures, gates, the anchor) are trained once per seed by ``fusion_lib.studies.seed_run.SeedRun``.
The registry imports this module on its first lookup, so that these names are known to whoever asks.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fusion_lib.fusion import baselines
from fusion_lib.fusion.label_space import LabelSpaceModel, blend, choose_blend_weight
from fusion_lib.fusion.moe import MoE
from fusion_lib.fusion.two_stage import TwoStageConfig
from fusion_lib.studies import metrics as M
from fusion_lib.studies.gate_analysis import gate_usage
from fusion_lib.studies.registry import MethodOutput, TopK, register_method, register_single_backbone
from fusion_lib.studies.seed_run import ANCHORS, EVAL_SPLITS, NON_ADAPTIVE, OOF_FOLDS, SeedRun, gflops

# Thumbnail sizes the book's recipe chooses among on validation (capped at the stored thumbnail size).
THUMBNAIL_CHOICES = (8, 16, 32)


# -- baselines -----------------------------------------------------------------------------------
@register_single_backbone
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


def two_stage_config(
    name: str, thumbnail_size: int, n_experts: int, cheapest: str | None = None
) -> TwoStageConfig:
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
    m = r.two_stage(two_stage_config(name, fs.thumbnail_size, len(ex.names), r.cheapest))
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
    m = r.two_stage(two_stage_config("moe_thumbnail", fs.thumbnail_size, len(ex.names), r.cheapest))
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
