"""The label-space study: what the class-name vectors look like, how the label-space model compares
with and combines with the visual mixture, how it does zero-shot, and where images land in word space.

``run_label_study`` trains, per seed and on that seed's split of the pool (``FeatureSet.draw``), the
models of ``fusion_lib.studies.methods`` that involve the label space (sharing them through one
``seed_run.SeedRun`` per seed, as ``run_experiment`` does) and keeps what its summary tables do not show: per-backbone accuracies, the
mixtures' gate weights, the chosen blend weights, the accuracy-versus-weight curves and every
combined model's per-image correctness (for paired comparisons, ``compare``); a control replaces the
word vectors with random unit vectors (as heads, and blended with the visual mixture like the
label-space model).

``run_zero_shot`` scores the closed-form zero-shot map of ``fusion.label_space`` over every way of
holding ``N_HELD_OUT`` classes out (``held_out_splits``), beside a permutation null that shuffles the
class vectors among the classes; ``ZeroShotStudy.summary`` gives each measure with its 95% CI.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.label_space import (
    ZERO_SHOT_RIDGE,
    ClassMoments,
    LabelSpaceModel,
    blend,
    class_words,
    cosine_scores,
    fit_zero_shot_map,
    tokenize,
)
from fusion_lib.fusion.training import BLEND_GRID, to_tensors
from fusion_lib.studies import metrics as M
from fusion_lib.studies.claims import claim_word
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.seed_run import restrict, seed_loop
from fusion_lib.studies.stats import (
    N_BOOT,
    Difference,
    bootstrap_means,
    dataset_stream,
    paired_difference,
    percentile_interval,
    pooled_difference,
    score_table,
)

# Class-name words that need replacing in GloVe 6B: a single letter ("T" of "T-shirt") is a letter's
# vector, not a garment's, and two dog breeds of Oxford-IIIT Pets have no vector at all.
BOOK_ALIASES: dict[str, str] = {"t": "tee", "keeshond": "spitz dog", "leonberger": "leonberg dog"}
STUDY_METHODS = (
    "prob_avg",
    "label_space",
    "moe_thumbnail",
    "moe_thumbnail_joint",
    "moe_thumbnail_label",
    "blend_label",
)
# what each combined model is, for the ``backbone`` column of LabelStudy.accuracy
_COMBINED = {
    "prob_avg": ("visual", "average"),
    "label_space": ("label space", "average"),
    "random_space": ("random vectors", "average"),
    "moe_thumbnail": ("visual", "thumbnail MoE"),
    "moe_thumbnail_joint": ("visual", "joint thumbnail MoE"),
    "moe_thumbnail_label": ("fusion", "joint thumbnail MoE"),
    "blend_label": ("fusion", "blend"),
    "blend_random": ("control", "blend"),
}
# every model the label study scores, the registry's and its controls
STUDY_MODELS: tuple[str, ...] = tuple(_COMBINED)
# The single-backbone head families, in the order the book shows them.
FAMILIES: tuple[str, ...] = ("visual", "label space", "random vectors")
# The fusions the book compares, top to bottom.
FUSION_METHODS: tuple[str, ...] = (
    "prob_avg",
    "moe_thumbnail",
    "moe_thumbnail_joint",
    "label_space",
    "moe_thumbnail_label",
    "blend_label",
    "blend_random",
)
# Claim C3 ("label-space word vectors add to the blend") as paired comparisons: each fusion against
# the visual model it adds the label space to, and the word vectors against random ones.
C3_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("blend_label", "moe_thumbnail"),
    ("blend_label", "blend_random"),
    ("moe_thumbnail_label", "moe_thumbnail_joint"),
)
N_HELD_OUT = 3
# zero-shot holds N_HELD_OUT classes out and fits its map on the rest, which needs two at least
MIN_ZERO_SHOT_CLASSES = N_HELD_OUT + 2
# the label-space picture's plane is the class vectors' first two principal components: three span it
MIN_SPACE_CLASSES = 3
N_SPLITS = 120
N_PERMUTATIONS = 100
# zero-shot measures, what each averages over, and its chance level given (classes, held out)
ZERO_SHOT_MEASURES: dict[str, str] = {
    "zsl_top1": "unseen-class images, top-1 among the held-out classes",
    "gzsl_unseen": "unseen-class images, top-1 among all classes (U)",
    "top5": "unseen-class images, true class among the 5 best of all classes",
    "gzsl_seen": "seen-class images, top-1 among all classes (S)",
    "harmonic": "harmonic mean 2SU / (S + U)",
}


def aliases_for(class_names: Sequence[str], aliases: Mapping[str, str] = BOOK_ALIASES) -> dict[str, str]:
    """The entries of ``aliases`` that apply to these class names (as a whole name or as one of their
    tokens)."""
    used = set(class_names) | {t for name in class_names for t in tokenize(name)}
    return {k: v for k, v in aliases.items() if k in used}


def class_name_table(
    class_names: Sequence[str],
    class_vecs: np.ndarray,
    vectors: Any,
    aliases: Mapping[str, str] | None = None,
    n_neighbours: int = 5,
) -> pd.DataFrame:
    """One row per class: its tokens, the words whose vectors are averaged, and the vocabulary words
    nearest to its class vector (``vectors`` is gensim KeyedVectors)."""
    if len(class_vecs) != len(class_names):
        raise ValueError(f"got {len(class_vecs)} class vectors for {len(class_names)} class names")
    aliases = dict(aliases or {})
    rows = []
    for name, vec in zip(class_names, class_vecs):
        near = vectors.similar_by_vector(np.asarray(vec, dtype=np.float32), topn=n_neighbours)
        rows.append(
            {
                "class": name,
                "tokens": " ".join(tokenize(name)),
                "words used": " ".join(class_words(name, aliases)),
                "nearest words": ", ".join(w for w, _ in near),
            }
        )
    return pd.DataFrame(rows)


def cosine_matrix(class_vecs: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Cosine similarity between every pair of class vectors, labelled by class name."""
    v = np.asarray(class_vecs, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return pd.DataFrame(v @ v.T, index=list(class_names), columns=list(class_names)).rename_axis(
        index="class", columns="class"
    )


def held_out_splits(
    n_classes: int, n_held: int = N_HELD_OUT, max_splits: int = N_SPLITS, seed: int = 0
) -> list[tuple[int, ...]]:
    """The zero-shot splits: every set of ``n_held`` classes, in lexicographic order, when there are at
    most ``max_splits``; otherwise ``max_splits`` distinct sets drawn with ``default_rng(seed)``."""
    if not 1 <= n_held <= n_classes - 2:
        raise ValueError(
            f"holding out {n_held} of {n_classes} classes must leave at least 2 to train on; "
            f"use 1 <= n_held <= {n_classes - 2}"
        )
    if max_splits < 1:
        raise ValueError(f"max_splits must be >= 1, got {max_splits}")
    if math.comb(n_classes, n_held) <= max_splits:
        return list(itertools.combinations(range(n_classes), n_held))
    rng, out = np.random.default_rng(seed), {}
    while len(out) < max_splits:
        out.setdefault(tuple(sorted(int(c) for c in rng.choice(n_classes, n_held, replace=False))), None)
    return list(out)


def blend_curve(
    p_visual: np.ndarray, p_label: np.ndarray, y: np.ndarray, grid: Sequence[float] = BLEND_GRID
) -> pd.DataFrame:
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


def head_geometry(model: LabelSpaceModel, fs: FeatureSet, class_vecs: np.ndarray, head: str) -> str:
    """How ``model``'s ``head`` places the test images of ``fs``: the mean cosine of an image's embedding
    to its true class vector and to the other classes', and the head's learned softmax scale."""
    emb = label_embeddings(model, fs, "test", head)
    cos_true = (emb * class_vecs[fs.labels["test"]]).sum(1)
    cos_all = emb @ class_vecs.T
    scale = model.heads_[head].log_scale.detach().exp().item()
    return (
        f"mean cosine to the true class {cos_true.mean():.3f}, "
        f"to the other classes {(cos_all.sum(1) - cos_true).mean() / (fs.n_classes - 1):.3f}; "
        f"learned softmax scale {scale:.1f}"
    )


def project_label_space(
    class_vecs: np.ndarray, embeddings: np.ndarray, n_components: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA fitted on the class vectors, applied to them and to image embeddings.

    Returns (class coordinates ``(C, k)``, image coordinates ``(n, k)``, explained variance ratio of
    the class vectors ``(k,)``): the plane in which the classes are most spread out.
    """
    if embeddings.ndim != 2 or embeddings.shape[1] != class_vecs.shape[1]:
        raise ValueError(
            f"embeddings {embeddings.shape} must be (n, {class_vecs.shape[1]}) like the class vectors"
        )
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
    validation); combined models have ``backbone`` "average", "thumbnail MoE", "joint thumbnail MoE"
    or "blend"; ``gates``: (dataset, seed, model, expert, weight) the mean test gate weight of every
    expert of the jointly trained mixtures ``moe_thumbnail_joint`` and ``moe_thumbnail_label``;
    ``blend``: (dataset, seed, weight, weight_random) the blend weights chosen on validation;
    ``curves``: (dataset, seed, split, weight, accuracy, nll) of ``blend_label``;
    ``correct``: {(model, seed): per-test-image correctness} of every model of ``accuracy``;
    ``label_models``: the label-space model of every seed (trained on ``fs.draw(seed)``);
    ``image_ids``: per seed, the pool index of each test image (seeds sharing images are resampled
    jointly by the intervals; empty when the pool does not record them).
    """

    accuracy: pd.DataFrame
    gates: pd.DataFrame
    blend: pd.DataFrame
    curves: pd.DataFrame
    correct: dict[tuple[str, int], np.ndarray]
    label_models: dict[int, LabelSpaceModel]
    image_ids: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted({s for _, s in self.correct})

    def test_ids(self) -> list[np.ndarray] | None:
        """Per seed, the test images' pool indices (None when not recorded)."""
        return [self.image_ids[s] for s in self.seeds] if len(self.image_ids) == len(self.seeds) else None


def run_label_study(
    fs: FeatureSet, class_vecs: np.ndarray, config: ExperimentConfig, progress: bool = True
) -> LabelStudy:
    """Train and score, for each of ``config.seeds`` on ``fs.draw(seed)``, the probes, label heads,
    random-vector heads and label-space methods (``random:`` heads use ``random_class_vectors(C, dim,
    seed)``)."""
    acc_rows, gate_rows, blend_rows, curve_rows, correct, models, ids = [], [], [], [], {}, {}, {}
    for run in seed_loop(restrict(fs, config), config, class_vecs, desc="label study", progress=progress):
        split, seed = run.fs, run.seed
        y = split.labels
        if run.test_ids is not None:
            ids[seed] = run.test_ids

        def add(model: str, family: str, backbone: str, probs: np.ndarray) -> None:
            correct[(model, seed)] = probs.argmax(1) == y["test"]
            acc_rows.append(
                {
                    "dataset": fs.dataset,
                    "seed": seed,
                    "model": model,
                    "family": family,
                    "backbone": backbone,
                    "accuracy": float(correct[(model, seed)].mean()),
                }
            )

        for b, p in run.probes.items():
            add(f"probe:{b}", "visual", b, p["test"])
        for b, p in run.label_model.backbone_proba(split, "test").items():
            add(f"label:{b}", "label space", b, p)
        control = run.random_label_model
        for b, p in control.backbone_proba(split, "test").items():
            add(f"random:{b}", "random vectors", b, p)
        outputs = {m: run.output(m) for m in (*STUDY_METHODS, "blend_random")}
        weight = outputs["blend_label"].extra["blend_weight"]
        weight_random = outputs["blend_random"].extra["blend_weight"]
        probs = {m: out.probs for m, out in outputs.items()}
        visual = probs["moe_thumbnail"]
        probs["random_space"] = {s: control.predict_proba(split, s) for s in ("val", "test")}
        for m, (family, kind) in _COMBINED.items():
            add(m, family, kind, probs[m]["test"])
        for label_experts in (False, True):
            moe = run.moe("thumbnail", label_experts)
            for expert, w in zip(moe.expert_names, moe.gate_weights(split, "test").mean(0)):
                gate_rows.append(
                    {
                        "dataset": fs.dataset,
                        "seed": seed,
                        "expert": expert,
                        "weight": float(w),
                        "model": f"moe_thumbnail_{'label' if label_experts else 'joint'}",
                    }
                )
        blend_rows.append(
            {"dataset": fs.dataset, "seed": seed, "weight": weight, "weight_random": weight_random}
        )
        for part in ("val", "test"):
            curve = blend_curve(visual[part], probs["label_space"][part], y[part])
            curve_rows.append(curve.assign(dataset=fs.dataset, seed=seed, split=part))
        models[seed] = run.label_model
    curves = pd.concat(curve_rows, ignore_index=True)
    curves = curves[["dataset", "seed", "split", "weight", "accuracy", "nll"]]
    gates = pd.DataFrame(gate_rows)[["dataset", "seed", "model", "expert", "weight"]]
    return LabelStudy(pd.DataFrame(acc_rows), gates, pd.DataFrame(blend_rows), curves, correct, models, ids)


def accuracy_ci(
    study: LabelStudy, models: Sequence[str], n_boot: int = N_BOOT, seed: int | None = None
) -> pd.DataFrame:
    """Test accuracy in percent of each model, mean over seeds, with its 95% CI (hierarchical bootstrap
    over seeds and test images, ``stats.score_table``; ``seed`` None: the dataset's own stream): columns
    model, accuracy, low, high, text (``"91.23 [90.61, 91.80]"``)."""
    correct = {m: [study.correct[(m, s)] for s in study.seeds] for m in models}
    return score_table(correct, image_ids=study.test_ids(), n_boot=n_boot, seed=_stream(study, seed))


def _stream(study: LabelStudy, seed: int | None) -> int:
    return dataset_stream(study.accuracy["dataset"].iloc[0]) if seed is None else seed


def difference(
    study: LabelStudy, a: str, b: str, n_boot: int = N_BOOT, seed: int | None = None
) -> Difference:
    """Accuracy of model ``a`` minus ``b`` in points, paired over seeds and test images
    (``fusion_lib.studies.stats.paired_difference``, hierarchical bootstrap; ``seed`` None: the
    dataset's own stream, so that datasets pooled for C3 resample independently)."""
    seeds = study.seeds
    missing = [m for m in (a, b) if (m, seeds[0]) not in study.correct]
    if missing:
        known = sorted({m for m, _ in study.correct})
        raise ValueError(f"no per-image results for {missing}; models: {known}")
    return paired_difference(
        [study.correct[(a, s)] for s in seeds],
        [study.correct[(b, s)] for s in seeds],
        image_ids=study.test_ids(),
        n_boot=n_boot,
        seed=_stream(study, seed),
    )


def compare(
    study: LabelStudy,
    pairs: Sequence[tuple[str, str]] = C3_COMPARISONS,
    n_boot: int = N_BOOT,
    seed: int | None = None,
) -> pd.DataFrame:
    """Accuracy difference A - B in points for each pair, with its paired 95% CI over seeds and test
    images: columns dataset, a, b, diff, low, high, p_value, text, verdict (a sentence) and word
    (better / worse / equivalent / inconclusive, unadjusted: word a family with ``stats.family_words``
    from ``p_value`` and the TOST ``p_equivalence``)."""
    dataset = study.accuracy["dataset"].iloc[0]
    rows = []
    for a, b in pairs:
        d = difference(study, a, b, n_boot, seed)
        rows.append(
            {
                "dataset": dataset,
                "a": a,
                "b": b,
                "diff": d.diff,
                "low": d.low,
                "high": d.high,
                "p_value": d.p_value,
                "p_equivalence": d.p_equivalence(),
                "text": d.text(),
                "verdict": d.verdict(a, b),
                "word": d.word(),
            }
        )
    return pd.DataFrame(rows)


def c3_verdict(studies: Sequence[LabelStudy]) -> tuple[str, Difference, Difference]:
    """C3's word and its two deciding differences, each the equal-weight mean over the datasets:
    the blend against the visual fusion it blends into, and the word vectors against random vectors
    inside the same blend. Supported only when both are better: a gain that random vectors match
    comes from a second ensemble, not from language; otherwise the word of the first that fails."""
    if not studies:
        raise ValueError("c3_verdict needs at least one dataset's label study")
    (blend_a, blend_b), (words_a, words_b) = C3_COMPARISONS[:2]
    gain = pooled_difference([difference(s, blend_a, blend_b) for s in studies])
    words = pooled_difference([difference(s, words_a, words_b) for s in studies])
    failing = next((d for d in (gain, words) if d.word() != "better"), None)
    return ("supported" if failing is None else claim_word(failing)), gain, words


def _accumulate(scores: np.ndarray, y: np.ndarray, held: Sequence[int], sums: dict[str, np.ndarray]) -> None:
    """Add one split's per-image hits to ``sums``: ``scores`` ``(n, C)`` or ``(n, P, C)``."""
    held_arr = np.asarray(held)
    unseen = np.isin(y, held_arr)
    yy = y.reshape((-1,) + (1,) * (scores.ndim - 2))
    true = np.take_along_axis(scores, yy[..., None], axis=-1)
    top1 = scores.argmax(-1) == yy
    mask = unseen.reshape(yy.shape)
    sums["zsl_top1"] += mask & (held_arr[scores[..., held_arr].argmax(-1)] == yy)
    sums["gzsl_unseen"] += mask & top1
    sums["top5"] += mask & ((scores > true).sum(-1) < 5)
    sums["gzsl_seen"] += ~mask & top1


@dataclass
class ZeroShotStudy:
    """Zero-shot results of one dataset over ``splits`` (sets of held-out classes) and seeds.

    ``values[model][measure]``: per seed, each test image's hit rate over the seed's splits in which
    its class is held out (``zsl_top1``, ``gzsl_unseen``, ``top5``) or seen (``gzsl_seen``); NaN where
    there is none. Models are the backbones and ``"mean"`` (their mean cosine score). ``null[measure]``:
    the ``"mean"`` model's dataset-level value under each of the ``n_permutations`` shuffles of the
    class vectors among the classes (one shuffle per split and permutation index).
    """

    dataset: str
    n_classes: int
    splits: list[tuple[int, ...]]
    seeds: list[int]
    n_train: int
    values: dict[str, dict[str, list[np.ndarray]]]
    null: dict[str, np.ndarray]

    def chance(self, measure: str) -> float:
        """Accuracy of a uniform random guess (``top5``: among all classes; ``zsl_top1``: among the
        held-out ones)."""
        n_held = len(self.splits[0])
        return {"zsl_top1": 1 / n_held, "top5": min(5, self.n_classes) / self.n_classes}.get(
            measure, 1 / self.n_classes
        )

    def summary(self, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
        """One row per measure of the ``"mean"`` model (in ``ZERO_SHOT_MEASURES`` order): estimate with
        its 95% CI (seed-stratified percentile bootstrap over test images, ``fusion_lib.studies.stats``),
        chance, the permutation null's mean and 95% range, and the one-sided permutation p-value."""
        rows = []
        reps = {}
        for measure in ZERO_SHOT_MEASURES:
            if measure == "harmonic":
                s, u = reps["gzsl_seen"], reps["gzsl_unseen"]
                est = _harmonic(*(self.estimate("mean", m) for m in ("gzsl_seen", "gzsl_unseen")))
                low, high = percentile_interval(_harmonic(s, u))
            else:
                reps[measure] = bootstrap_means(self._paired("mean", measure), n_boot=n_boot, seed=seed)
                est = self.estimate("mean", measure)
                low, high = percentile_interval(reps[measure])
            null = self.null[measure]
            null_low, null_high = percentile_interval(null)
            rows.append(
                {
                    "dataset": self.dataset,
                    "measure": measure,
                    "estimate": est,
                    "low": low,
                    "high": high,
                    "chance": self.chance(measure),
                    "null_mean": float(null.mean()),
                    "null_low": null_low,
                    "null_high": null_high,
                    "p_value": float((1 + np.sum(null >= est)) / (1 + len(null))),
                }
            )
        return pd.DataFrame(rows)

    def estimate(self, model: str, measure: str) -> float:
        """The dataset-level value: mean over seeds of the mean over images (``harmonic``: of S and U)."""
        if measure == "harmonic":
            return float(_harmonic(self.estimate(model, "gzsl_seen"), self.estimate(model, "gzsl_unseen")))
        return float(np.mean([v.mean() for v in self._paired(model, measure)]))

    def per_model(self) -> pd.DataFrame:
        """Point estimates of every measure for every model: rows models, columns measures."""
        return pd.DataFrame({m: {k: self.estimate(m, k) for k in ZERO_SHOT_MEASURES} for m in self.values}).T

    def _paired(self, model: str, measure: str) -> list[np.ndarray]:
        """Per seed, the measure's per-image values over the images where S and U are both defined (so
        that bootstrap replicates of S and U, drawn with one seed, resample the same images)."""
        vals = self.values[model]
        return [
            v[~np.isnan(s) & ~np.isnan(u)]
            for v, s, u in zip(vals[measure], vals["gzsl_seen"], vals["gzsl_unseen"])
        ]


def _harmonic(s: np.ndarray | float, u: np.ndarray | float) -> np.ndarray:
    s, u = np.asarray(s, dtype=np.float64), np.asarray(u, dtype=np.float64)
    return np.where(s + u > 0, 2 * s * u / np.where(s + u > 0, s + u, 1.0), 0.0)


def run_zero_shot(
    fs: FeatureSet,
    class_vecs: np.ndarray,
    seeds: Sequence[int],
    n_held: int = N_HELD_OUT,
    max_splits: int = N_SPLITS,
    n_permutations: int = N_PERMUTATIONS,
    ridge: float = ZERO_SHOT_RIDGE,
    progress: bool = True,
) -> ZeroShotStudy:
    """Zero-shot over ``held_out_splits(C, n_held, max_splits)``, each split scored under one seed
    (split i under ``seeds[i % len(seeds)]``, on ``fs.draw(seed)``), so the splits cover every seed's
    data draw at the cost of one fit per split and backbone. Per split and backbone the map of
    ``label_space.fit_zero_shot_map`` is fitted on the seen classes' train images; the test images
    are scored against all classes with the true class vectors and with ``n_permutations`` random
    shuffles of them among the classes (drawn with ``default_rng(seed)``)."""
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed")
    if n_permutations < 19:
        raise ValueError(f"n_permutations must be >= 19 for a 95% null range, got {n_permutations}")
    if len(class_vecs) != fs.n_classes:
        raise ValueError(f"got {len(class_vecs)} class vectors for {fs.n_classes} classes")
    c, models = fs.n_classes, [*fs.backbones, "mean"]
    splits = held_out_splits(c, n_held, max_splits)
    values: dict[str, dict[str, list[np.ndarray]]] = {m: {k: [] for k in _HITS} for m in models}
    null_sums: dict[str, list[np.ndarray]] = {k: [] for k in _HITS}
    steps = tqdm(total=len(splits), desc=f"{fs.dataset} zero-shot", disable=not progress)
    n_train = 0
    for i, seed in enumerate(seeds):
        mine = splits[i :: len(seeds)]
        if not mine:
            continue
        split = fs.draw(seed)
        y, n_train = split.labels["test"], len(split.labels["train"])
        moments = {
            b: ClassMoments.of(split.features["train"][b], split.labels["train"], c) for b in fs.backbones
        }
        rng = np.random.default_rng(seed)
        sums = {m: {k: np.zeros(len(y)) for k in _HITS} for m in models}
        null = {k: np.zeros((len(y), n_permutations)) for k in _HITS}
        for held in mine:
            seen = [k for k in range(c) if k not in held]
            vecs = np.stack([class_vecs] + [class_vecs[rng.permutation(c)] for _ in range(n_permutations)])
            mean = None  # the backbones' mean cosine score, summed in place
            for b in fs.backbones:
                weights = fit_zero_shot_map(moments[b], seen, ridge).seen_weights(split.features["test"][b])
                scores = cosine_scores(weights, vecs, seen)
                _accumulate(scores[:, 0], y, held, sums[b])
                mean = scores if mean is None else np.add(mean, scores, out=mean)
            mean /= len(fs.backbones)
            _accumulate(mean[:, 0], y, held, sums["mean"])
            _accumulate(mean[:, 1:], y, held, null)
            steps.update()
        held_out_count = np.zeros(c)
        np.add.at(held_out_count, np.asarray(mine).ravel(), 1.0)
        unseen = held_out_count[y]  # per image: the number of its seed's splits that hold its class out
        count = {"gzsl_seen": len(mine) - unseen}
        with np.errstate(invalid="ignore", divide="ignore"):
            for k in _HITS:
                n = count.get(k, unseen)
                for m in models:
                    values[m][k].append(np.where(n > 0, sums[m][k] / np.where(n > 0, n, 1), np.nan))
                keep = n > 0
                null_sums[k].append(null[k][keep] / n[keep, None])
    steps.close()
    null_stats = {k: np.mean([v.mean(0) for v in null_sums[k]], axis=0) for k in _HITS}
    null_stats["harmonic"] = _harmonic(null_stats["gzsl_seen"], null_stats["gzsl_unseen"])
    return ZeroShotStudy(fs.dataset, c, splits, list(seeds), n_train, values, null_stats)


_HITS = ("zsl_top1", "gzsl_unseen", "top5", "gzsl_seen")
