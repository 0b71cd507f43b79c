"""Baselines the mixture is measured against.

Single-backbone linear probes, the best probe chosen on validation, feature concatenation,
probability averaging, stacking, and the oracle bound. Probe outputs are ``probes[backbone][split]``
probability arrays ``(n, C)`` so the agreement study and every fusion baseline share them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from fusion_lib.data.device import resolve_device
from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.fusion.experts import ExpertHead, inputs_transformed, make_expert
from fusion_lib.fusion.training import TrainConfig, TrainHistory, fit_module, predict_in_batches, to_tensors

Probs = dict[str, np.ndarray]
STACKING_SOURCES = ("val", "oof")


def _features(fs: FeatureSet, split: str, backbones: Sequence[str]) -> np.ndarray:
    feats = [fs.features[split][b] for b in backbones]
    return feats[0] if len(feats) == 1 else np.concatenate(feats, axis=1)


def fit_probe(
    fs: FeatureSet,
    backbones: str | Sequence[str],
    seed: int = 0,
    train: TrainConfig | None = None,
    kind: str = "linear",
    rows: np.ndarray | None = None,
) -> tuple[ExpertHead, TrainHistory]:
    """Train a head on one backbone's features (or several, concatenated) with early stopping on val.

    ``rows`` restricts training to those train-split rows (used for out-of-fold predictions).
    """
    train = train or TrainConfig()
    names = [backbones] if isinstance(backbones, str) else list(backbones)
    unknown = sorted(set(names) - set(fs.backbones))
    if unknown:
        raise ValueError(f"unknown backbones {unknown}; this FeatureSet has {fs.backbones}")
    device = resolve_device(train.device)
    # without rows, the split's own array (not a copy), whose statistics other heads share
    x_train, y_train = _features(fs, "train", names), fs.labels["train"]
    if rows is not None:
        x_train, y_train = x_train[np.asarray(rows)], y_train[np.asarray(rows)]
    torch.manual_seed(seed)
    head = make_expert(x_train, fs.n_classes, kind).to(device)
    x, y = to_tensors([x_train, y_train], device)
    train_data = (head.norm.transform(x), y)
    val_data = None
    if len(fs.labels["val"]):
        x_val, y_val = to_tensors([_features(fs, "val", names), fs.labels["val"]], device)
        val_data = (head.norm.transform(x_val), y_val)
    with inputs_transformed(head):
        history = fit_module(
            head, lambda m, b: F.cross_entropy(m(b[0]), b[1]), train_data, val_data, train, seed
        )
    return head, history


def probe_proba(
    head: ExpertHead,
    fs: FeatureSet,
    split: str,
    backbones: str | Sequence[str],
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Class probabilities of a trained probe on one split (optionally some rows only)."""
    names = [backbones] if isinstance(backbones, str) else list(backbones)
    x = _features(fs, split, names)
    device = next(head.parameters()).device
    inputs = to_tensors([x if rows is None else x[rows]], device)
    return predict_in_batches(lambda b: torch.softmax(head(b[0]), dim=1), inputs).cpu().numpy()


def fit_single_probes(
    fs: FeatureSet, seed: int = 0, train: TrainConfig | None = None, kind: str = "linear"
) -> dict[str, Probs]:
    """A probe per backbone: ``{backbone: {split: probabilities (n, C)}}`` for every split."""
    out = {}
    for b in fs.backbones:
        head, _ = fit_probe(fs, b, seed, train, kind)
        out[b] = {s: probe_proba(head, fs, s, b) for s in SPLITS if s in fs.labels}
    return out


def _val_key(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return -float(np.mean(p.argmax(1) == y)), -float(np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))


def best_single(probes: Mapping[str, Probs], fs: FeatureSet) -> str:
    """The backbone whose probe has the best validation accuracy (ties: lower validation NLL)."""
    if not probes:
        raise ValueError("best_single needs at least one probe")
    return min(probes, key=lambda b: _val_key(probes[b]["val"], fs.labels["val"]))


def fit_concat(
    fs: FeatureSet, seed: int = 0, train: TrainConfig | None = None, kind: str = "linear"
) -> Probs:
    """One probe on the concatenation of every backbone's features."""
    head, _ = fit_probe(fs, fs.backbones, seed, train, kind)
    return {s: probe_proba(head, fs, s, fs.backbones) for s in SPLITS if s in fs.labels}


def prob_average(probes: Mapping[str, Probs]) -> Probs:
    """Unweighted mean of the probes' probabilities, per split."""
    if not probes:
        raise ValueError("prob_average needs at least one probe")
    splits = next(iter(probes.values())).keys()
    return {s: np.mean([p[s] for p in probes.values()], axis=0) for s in splits}


def _stack_inputs(probes: Mapping[str, Probs], split: str, backbones: Sequence[str]) -> np.ndarray:
    # probabilities, not log-probabilities: bounded inputs keep the stacker from overfitting the
    # overconfident tails of the probes (measured: log inputs lose several points of test accuracy)
    return np.concatenate([probes[b][split] for b in backbones], axis=1)


def oof_train_probs(
    fs: FeatureSet, seed: int = 0, train: TrainConfig | None = None, kind: str = "linear", n_folds: int = 5
) -> dict[str, np.ndarray]:
    """Each backbone's probe probabilities on the train split, out of fold: every train image is scored
    by a probe fit on the other ``n_folds - 1`` folds, so no output is in-sample."""
    n = len(fs.labels["train"])
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be in [2, {n}] (the train size), got {n_folds}")
    folds = np.array_split(np.random.default_rng(seed).permutation(n), n_folds)
    out = {b: np.zeros((n, fs.n_classes), dtype=np.float32) for b in fs.backbones}
    for i, held in enumerate(folds):
        fit_rows = np.concatenate([f for j, f in enumerate(folds) if j != i])
        for b in fs.backbones:
            head, _ = fit_probe(fs, b, seed, train, kind, rows=fit_rows)
            out[b][held] = probe_proba(head, fs, "train", b, rows=held)
    return out


def fit_stacking(
    fs: FeatureSet,
    probes: Mapping[str, Probs],
    source: str = "oof",
    seed: int = 0,
    train: TrainConfig | None = None,
    kind: str = "linear",
    n_folds: int = 5,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    oof_train: Mapping[str, np.ndarray] | None = None,
) -> Probs:
    """Logistic regression on the probes' concatenated probabilities, never fit on test labels.

    ``source="val"`` fits it on validation-split probabilities (so its val output is in-sample);
    ``source="oof"`` fits it on out-of-fold train probabilities (probes retrained on ``n_folds``
    folds, or ``oof_train`` when given) and leaves validation untouched. Its inputs are the probes'
    class probabilities, concatenated over backbones (K x C numbers per image). The inverse regularisation strength is chosen among
    ``Cs`` by stratified 5-fold cross-validated log-loss on the fitting split (plain ``C=1`` when
    some class has a single fitting example).
    """
    if source not in STACKING_SOURCES:
        raise ValueError(f"unknown stacking source {source!r}; valid sources: {list(STACKING_SOURCES)}")
    backbones = list(probes)
    if source == "val":
        x_fit, y_fit = _stack_inputs(probes, "val", backbones), fs.labels["val"]
    else:
        oof = oof_train or oof_train_probs(fs.subset_backbones(backbones), seed, train, kind, n_folds)
        x_fit, y_fit = (
            _stack_inputs({b: {"train": oof[b]} for b in backbones}, "train", backbones),
            fs.labels["train"],
        )
    counts = np.bincount(y_fit)
    n_splits = min(5, int(counts[counts > 0].min()))
    cv = StratifiedKFold(n_splits, shuffle=True, random_state=seed) if n_splits >= 2 else None
    model = (
        LogisticRegressionCV(
            Cs=list(Cs),
            cv=cv,
            scoring="neg_log_loss",
            max_iter=1000,
            l1_ratios=(0.0,),
            use_legacy_attributes=False,
        )
        if cv
        else LogisticRegression(max_iter=1000)
    ).fit(x_fit, y_fit)
    out = {}
    for s in SPLITS:
        if s not in fs.labels:
            continue
        probs = np.zeros((len(fs.labels[s]), fs.n_classes))
        # classes absent from the fitting labels get probability 0
        probs[:, model.classes_] = model.predict_proba(_stack_inputs(probes, s, backbones))
        out[s] = probs
    return out


def oracle_predictions(preds: Mapping[str, np.ndarray], y_true: np.ndarray) -> np.ndarray:
    """The true label where some model is right, else the first model's (wrong) prediction.

    Its accuracy is the oracle bound: the best any per-image selection among the models could do.
    """
    if not preds:
        raise ValueError("oracle_predictions needs at least one prediction array")
    stacked = np.stack(list(preds.values()))
    if stacked.shape[1] != len(y_true):
        raise ValueError(f"predictions have {stacked.shape[1]} entries but y_true has {len(y_true)}")
    return np.where((stacked == y_true).any(axis=0), y_true, stacked[0])
