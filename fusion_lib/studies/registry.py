"""The method registry: every fusion method's name, its facts, and the one check of method names.

A method is a function of one seed's trained models (a ``fusion_lib.studies.seed_run.SeedRun``) to a
``MethodOutput``, registered by ``@register_method(name, family=..., needs_class_vectors=...,
fit_on=...)`` as timm's model files register their models in ``_registry``. ``METHODS`` maps each name
to its ``MethodInfo`` (in report order: the order ``"all"`` expands to); ``resolve_methods`` is the one
place names are checked. The single-backbone methods (``single:<backbone>``) are made on demand from
the factory the method module gives ``register_single_backbone``.

This module imports nothing of the studies: the method bodies (``fusion_lib.studies.methods``) import
it to register themselves, and ``ExperimentConfig`` imports it to check names without the models. So
that a built-in name is known whoever asks first, every lookup here imports the method module once
(``_ensure_builtins``); read ``METHODS`` through ``method_names`` and ``method_info``, not directly.

A method's ``fit_on`` governs what may be chosen on validation (``selectable``): a method fit on
another split than train (``stacking_val`` on validation, so its validation accuracy is in-sample;
``oracle`` on the labels of the split it predicts) is never a candidate of such a choice.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from fusion_lib.data.checks import ParameterError, split_names

SINGLE_PREFIX = "single:"
# What a method may be fit on: "train" (every honest method), "val" (in-sample on validation) or
# "labels" (of the split it predicts: the oracle bound).
FIT_ON = ("train", "val", "labels")
FAMILIES = ("single backbone", "fixed fusion", "gated mixture", "label space", "oracle")
# The module whose import registers the built-in methods (named as a string: it imports this one).
BUILTIN_METHODS = "fusion_lib.studies.methods"


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


# A method: one seed's ``SeedRun`` to its output. The run is typed ``Any`` because the registry is a
# leaf: the engine imports it, not the other way round.
MethodFn = Callable[[Any], MethodOutput]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: ``fn(run) -> MethodOutput`` and the facts that govern its use. ``family``
    is one of ``FAMILIES``; ``needs_class_vectors``: it reads the classes' word vectors;
    ``fit_on``: "train", or the split it is also fit on ("val", or the "labels" of the split it
    predicts), which keeps it out of any choice made on validation."""

    name: str
    fn: MethodFn
    family: str
    needs_class_vectors: bool = False
    fit_on: str = "train"


METHODS: dict[str, MethodInfo] = {}  # in report order: the order "all" expands to
_single_backbone: list[Callable[[str], MethodFn]] = []  # the factory of single:<backbone>, once given
_builtins_loaded = False


def _ensure_builtins() -> None:
    """Import the built-in method module once, so that its ``@register_method`` calls have run before any
    name is looked up (a config may check names before anything imported the method bodies)."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: the method module's own registrations look names up
        importlib.import_module(BUILTIN_METHODS)


def register_method(
    name: str, *, family: str, needs_class_vectors: bool = False, fit_on: str = "train"
) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn(run) -> MethodOutput`` as method ``name`` (a decorator, as timm registers models)."""
    if family not in FAMILIES:
        raise ValueError(f"method {name!r}: unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if fit_on not in FIT_ON:
        raise ValueError(f"method {name!r}: fit_on must be one of {FIT_ON}, got {fit_on!r}")
    _ensure_builtins()  # so that a name taken by a built-in method is refused whoever registers first
    if name in METHODS or name.startswith(("single_", SINGLE_PREFIX)) or name == "all":
        raise ValueError(f"method name {name!r} is taken")

    def add(fn: MethodFn) -> MethodFn:
        METHODS[name] = MethodInfo(name, fn, family, needs_class_vectors, fit_on)
        return fn

    return add


def register_single_backbone(factory: Callable[[str], MethodFn]) -> Callable[[str], MethodFn]:
    """Register ``factory(backbone) -> fn``, the method ``single:<backbone>`` (a decorator; once)."""
    if _single_backbone:
        raise ValueError("the single-backbone methods are registered already")
    _single_backbone.append(factory)
    return factory


def method_info(name: str) -> MethodInfo:
    """The registry entry of a resolved name (``single:<backbone>`` methods are made on demand)."""
    _ensure_builtins()
    if name.startswith(SINGLE_PREFIX):
        return MethodInfo(name, _single_backbone[0](name[len(SINGLE_PREFIX) :]), "single backbone")
    return METHODS[name]


def method_names(backbones: Sequence[str] = (), needs_class_vectors: bool | None = None) -> list[str]:
    """Every valid method name for these backbones, in report order (``"all"`` expands to this; without
    backbones, the registered names alone); with ``needs_class_vectors`` False (True), only the methods
    that do not (do) read word vectors."""
    _ensure_builtins()
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
        registered = method_names()
        shown = f"{', '.join(registered)}, single_<backbone> (or 'all')"
        unknown = [
            m
            for m in names
            if m != "all" and m not in registered and not m.startswith(("single_", SINGLE_PREFIX))
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
