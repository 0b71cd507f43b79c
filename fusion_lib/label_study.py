"""The label-space study: what the class-name vectors look like, how the label-space model compares
with and combines with the visual mixture, how it does zero-shot, and where images land in word space.

``run_label_study`` trains, per seed, the models of ``fusion_lib.experiment`` that involve the label
space (sharing them exactly as ``run_experiment`` does) and keeps what its summary tables do not
show: per-backbone accuracies, the mixtures' gate weights, the chosen blend weights and the
accuracy-versus-weight curves; a control replaces the word vectors with random unit vectors (as heads,
and blended with the visual mixture like the label-space model).
``run_zero_shot`` repeats ``label_embedding.zero_shot`` over seeds next to its chance levels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from fusion_lib import metrics as M
from fusion_lib.experiment import METHODS, ExperimentConfig, SeedRun
from fusion_lib.feature_set import FeatureSet
from fusion_lib.label_embedding import (LabelSpaceModel, blend, choose_blend_weight, class_words, tokenize,
                                        zero_shot)
from fusion_lib.training import deterministic, num_threads, to_tensors

# Class-name words that need replacing in GloVe 6B: a single letter ("T" of "T-shirt") is a letter's
# vector, not a garment's, and two dog breeds of Oxford-IIIT Pets have no vector at all.
BOOK_ALIASES: dict[str, str] = {"t": "tee", "keeshond": "spitz dog", "leonberger": "leonberg dog"}
BLEND_GRID: tuple[float, ...] = tuple(float(w) for w in np.linspace(0.0, 1.0, 11))
STUDY_METHODS = ("prob_avg", "label_space", "moe_thumbnail", "moe_thumbnail_label", "blend_label")
# what each combined model is, for the ``backbone`` column of LabelStudy.accuracy
_COMBINED = {"prob_avg": ("visual", "average"), "label_space": ("label space", "average"),
             "random_space": ("random vectors", "average"), "moe_thumbnail": ("visual", "thumbnail MoE"),
             "moe_thumbnail_label": ("fusion", "thumbnail MoE"), "blend_label": ("fusion", "blend"),
             "blend_random": ("control", "blend")}


def aliases_for(class_names: Sequence[str], aliases: Mapping[str, str] = BOOK_ALIASES) -> dict[str, str]:
    """The entries of ``aliases`` that apply to these class names (as a whole name or as one of its tokens)."""
    used = set(class_names) | {t for name in class_names for t in tokenize(name)}
    return {k: v for k, v in aliases.items() if k in used}


def class_name_table(class_names: Sequence[str], class_vecs: np.ndarray, vectors: Any,
                     aliases: Mapping[str, str] | None = None, n_neighbours: int = 5) -> pd.DataFrame:
    """One row per class: its tokens, the words whose vectors are averaged, and the vocabulary words
    nearest to its class vector (``vectors`` is gensim KeyedVectors)."""
    if len(class_vecs) != len(class_names):
        raise ValueError(f"got {len(class_vecs)} class vectors for {len(class_names)} class names")
    aliases = dict(aliases or {})
    rows = []
    for name, vec in zip(class_names, class_vecs):
        near = vectors.similar_by_vector(np.asarray(vec, dtype=np.float32), topn=n_neighbours)
        rows.append({"class": name, "tokens": " ".join(tokenize(name)), "words used": " ".join(class_words(name, aliases)),
                     "nearest words": ", ".join(w for w, _ in near)})
    return pd.DataFrame(rows)


def cosine_matrix(class_vecs: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Cosine similarity between every pair of class vectors, labelled by class name."""
    v = np.asarray(class_vecs, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return pd.DataFrame(v @ v.T, index=list(class_names), columns=list(class_names)).rename_axis(
        index="class", columns="class")


def random_class_vectors(n_classes: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in random directions ``(n_classes, dim)``: class vectors that carry no word meaning."""
    vecs = np.random.default_rng(seed).normal(size=(n_classes, dim))
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def held_out_classes(n_classes: int, fraction: float = 0.25, min_held: int = 2, seed: int = 0) -> list[int]:
    """The zero-shot classes: ``max(min_held, ceil(fraction * n_classes))`` distinct classes drawn
    uniformly with ``numpy.random.default_rng(seed)``, sorted; at least one class stays seen."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n_held = max(min_held, math.ceil(fraction * n_classes))
    if n_held >= n_classes:
        raise ValueError(f"holding out {n_held} of {n_classes} classes leaves none to train on; "
                         f"lower min_held or fraction")
    return sorted(int(c) for c in np.random.default_rng(seed).choice(n_classes, n_held, replace=False))


def blend_curve(p_visual: np.ndarray, p_label: np.ndarray, y: np.ndarray,
                grid: Sequence[float] = BLEND_GRID) -> pd.DataFrame:
    """Accuracy and NLL of ``blend(p_visual, p_label, w)`` for every ``w`` of ``grid``
    (the curve that ``choose_blend_weight`` maximises on validation)."""
    if not len(p_visual) == len(p_label) == len(y):
        raise ValueError(f"probabilities ({len(p_visual)}, {len(p_label)}) and labels ({len(y)}) must align")
    rows = []
    for w in grid:
        p = blend(p_visual, p_label, float(w))
        rows.append({"weight": float(w), "accuracy": M.accuracy(y, p.argmax(1)), "nll": M.log_loss(p, y)})
    return pd.DataFrame(rows)


@torch.no_grad()
def label_embeddings(model: LabelSpaceModel, fs: FeatureSet, split: str, backbone: str) -> np.ndarray:
    """Unit-norm word-space embeddings ``(n, dim)`` of one split's images by one backbone's head."""
    if backbone not in model.heads_:
        raise ValueError(f"no label-space head for {backbone!r}; heads: {list(model.heads_)}")
    head = model.heads_[backbone]
    (x,) = to_tensors([fs.features[split][backbone]], next(head.parameters()).device)
    return head.embed(x).cpu().numpy()


def best_head(model: LabelSpaceModel, fs: FeatureSet) -> str:
    """The backbone whose label-space head is most accurate on the validation split (first on ties)."""
    y = fs.labels["val"]
    acc = {b: M.accuracy(y, p.argmax(1)) for b, p in model.backbone_proba(fs, "val").items()}
    return max(acc, key=acc.get)


def project_label_space(class_vecs: np.ndarray, embeddings: np.ndarray,
                        n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA fitted on the class vectors, applied to them and to image embeddings.

    Returns (class coordinates ``(C, k)``, image coordinates ``(n, k)``, explained variance ratio of
    the class vectors ``(k,)``): the plane in which the classes are most spread out.
    """
    if embeddings.ndim != 2 or embeddings.shape[1] != class_vecs.shape[1]:
        raise ValueError(f"embeddings {embeddings.shape} must be (n, {class_vecs.shape[1]}) like the class vectors")
    if n_components > len(class_vecs) - 1:
        raise ValueError(f"{len(class_vecs)} class vectors span at most {len(class_vecs) - 1} PCA components")
    pca = PCA(n_components=n_components).fit(class_vecs)
    return pca.transform(class_vecs), pca.transform(embeddings), pca.explained_variance_ratio_


def spread_labels(y: np.ndarray, min_gap: float) -> np.ndarray:
    """Label heights near ``y`` that are at least ``min_gap`` apart: overlapping labels form groups
    centred on their points' mean height (for annotating points that lie on top of each other)."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(y, kind="stable")
    groups: list[list[int]] = []  # runs of labels, bottom to top, each spaced by min_gap
    for i in order:
        groups.append([i])
        while len(groups) > 1:
            low, high = groups[-2], groups[-1]
            low_top = y[low].mean() + min_gap * (len(low) - 1) / 2
            high_bottom = y[high].mean() - min_gap * (len(high) - 1) / 2
            if high_bottom - low_top >= min_gap:
                break
            groups[-2:] = [low + high]
    out = np.empty_like(y)
    for g in groups:
        out[g] = y[g].mean() + min_gap * (np.arange(len(g)) - (len(g) - 1) / 2)
    return out


@dataclass
class LabelStudy:
    """Tidy results of one dataset over seeds (test split unless named otherwise).

    ``accuracy``: (dataset, seed, model, family, backbone, accuracy) with models ``probe:<b>`` (visual
    linear probe), ``label:<b>`` (label-space head), ``random:<b>`` (the same head on random class
    vectors), the combined methods of ``STUDY_METHODS``, ``random_space`` (mean of the random heads)
    and ``blend_random`` (the visual mixture blended with ``random_space``, weight chosen on
    validation); combined models have ``backbone`` "average", "thumbnail MoE" or "blend";
    ``gates``: (dataset, seed, model, expert, weight) the mean test gate weight of every expert of
    ``moe_thumbnail`` and ``moe_thumbnail_label``; ``blend``: (dataset, seed, weight, weight_random)
    the blend weights chosen on validation; ``curves``: (dataset, seed, split, weight, accuracy, nll)
    of ``blend_label``;
    ``label_models``: the label-space model of every seed.
    """

    accuracy: pd.DataFrame
    gates: pd.DataFrame
    blend: pd.DataFrame
    curves: pd.DataFrame
    label_models: dict[int, LabelSpaceModel]


def run_label_study(fs: FeatureSet, class_vecs: np.ndarray, config: ExperimentConfig,
                    progress: bool = True) -> LabelStudy:
    """Train and score, for each of ``config.seeds``, the probes, label heads, random-vector heads and
    label-space methods (``random:`` heads use ``random_class_vectors(C, dim, seed)``)."""
    if not config.seeds:
        raise ValueError("config.seeds is empty; give at least one seed")
    y = fs.labels
    acc_rows, gate_rows, blend_rows, curve_rows, models = [], [], [], [], {}
    with deterministic(), num_threads(config.threads):
        for seed in tqdm(config.seeds, desc=f"{fs.dataset} label study", disable=not progress):
            run = SeedRun(fs, seed, config, class_vecs)

            def add(model: str, family: str, backbone: str, probs: np.ndarray) -> None:
                acc_rows.append({"dataset": fs.dataset, "seed": seed, "model": model, "family": family,
                                 "backbone": backbone, "accuracy": M.accuracy(y["test"], probs.argmax(1))})

            for b, p in run.probes.items():
                add(f"probe:{b}", "visual", b, p["test"])
            for b, p in run.label_model.backbone_proba(fs, "test").items():
                add(f"label:{b}", "label space", b, p)
            control = LabelSpaceModel(random_class_vectors(*class_vecs.shape, seed=seed), run.train).fit(fs, seed)
            for b, p in control.backbone_proba(fs, "test").items():
                add(f"random:{b}", "random vectors", b, p)
            outputs = {m: METHODS[m](run) for m in STUDY_METHODS}
            weight = outputs["blend_label"].extra["blend_weight"]
            probs = {m: out.probs for m, out in outputs.items()}
            visual = probs["moe_thumbnail"]
            probs["random_space"] = {s: control.predict_proba(fs, s) for s in ("val", "test")}
            weight_random = choose_blend_weight(visual["val"], probs["random_space"]["val"], y["val"], BLEND_GRID)
            probs["blend_random"] = {s: blend(visual[s], probs["random_space"][s], weight_random) for s in visual}
            for m, (family, kind) in _COMBINED.items():
                add(m, family, kind, probs[m]["test"])
            for label_experts in (False, True):
                moe = run.moe("thumbnail", label_experts)
                for expert, w in zip(moe.expert_names, moe.gate_weights(fs, "test").mean(0)):
                    gate_rows.append({"dataset": fs.dataset, "seed": seed, "expert": expert, "weight": float(w),
                                      "model": "moe_thumbnail_label" if label_experts else "moe_thumbnail"})
            blend_rows.append({"dataset": fs.dataset, "seed": seed, "weight": weight, "weight_random": weight_random})
            for split in ("val", "test"):
                curve = blend_curve(visual[split], probs["label_space"][split], y[split])
                curve_rows.append(curve.assign(dataset=fs.dataset, seed=seed, split=split))
            models[seed] = run.label_model
    curves = pd.concat(curve_rows, ignore_index=True)[["dataset", "seed", "split", "weight", "accuracy", "nll"]]
    gates = pd.DataFrame(gate_rows)[["dataset", "seed", "model", "expert", "weight"]]
    return LabelStudy(pd.DataFrame(acc_rows), gates, pd.DataFrame(blend_rows), curves, models)


def run_zero_shot(fs: FeatureSet, class_vecs: np.ndarray, held_out: Sequence[int], config: ExperimentConfig,
                  progress: bool = True) -> pd.DataFrame:
    """``label_embedding.zero_shot`` for each of ``config.seeds``, with chance levels: ``chance_top1``
    = 1/C, ``chance_top5`` = min(5, C)/C (all C classes compete) and ``chance_unseen`` = 1/len(held_out)."""
    if not config.seeds:
        raise ValueError("config.seeds is empty; give at least one seed")
    c = fs.n_classes
    frames = []
    with deterministic(), num_threads(config.threads):
        for seed in tqdm(config.seeds, desc=f"{fs.dataset} zero-shot", disable=not progress):
            frames.append(zero_shot(fs, class_vecs, held_out, seed, config.train_config()).assign(seed=seed))
    out = pd.concat(frames, ignore_index=True).assign(dataset=fs.dataset, chance_top1=1.0 / c,
                                                      chance_top5=min(5, c) / c,
                                                      chance_unseen=1.0 / len(set(held_out)))
    return out[["dataset", "seed", *[col for col in out.columns if col not in ("dataset", "seed")]]]

