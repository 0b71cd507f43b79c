"""Repeated stratified k-fold cross-validation of a pool of images: every image tested once per repeat.

The book's datasets keep their one split per seed (``FeatureSet.draw``). A reader's small folder cannot
afford to leave four fifths of its images untested, so the own-images report runs ``CrossValidation``
instead where ``CrossValidation.applies``: each repeat (a seed) partitions the pool into k stratified
folds; each fold is the test set of one fit, whose validation images are drawn (stratified) from the
other folds and whose training images are the rest.

How the statistics stay honest: each (repeat, fold) is one fit, run as a "run seed" of the ordinary
per-seed loop (``FoldedPool.draw`` hands ``seed_runs`` that fold's split), and ``merge_folds`` then joins
a repeat's folds into one row per repeat holding every image's test prediction, with the images' pool
indices as ids. The hierarchical bootstrap of ``stats`` then resamples repeats and images, an image
tested in several repeats jointly, exactly as it does seeds that share an official test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.data.splits import DatasetError
from fusion_lib.studies.registry import MethodOutput, TopK
from fusion_lib.studies.runner import RESULT_COLUMNS, ExperimentResult, method_metrics

# A run seed encodes (repeat seed, fold) as seed * FOLD_STRIDE + fold: readable in logs and fit-cache
# entries (seed 1, fold 3 is run seed 103), and never equal for two folds of one repeat.
FOLD_STRIDE = 100


@dataclass(frozen=True)
class CrossValidation:
    """The report's test design for a folder: k stratified folds, repeated, below ``max_images``.

    Below ``max_images`` (2,500) a single split's 20% test set holds under 500 images; a paired
    difference that about one test image in ten decides differently then has a 95% interval about
    ±2.8 points wide (1.96 * sqrt(0.1 / 500) * 100), wider than most gains fusion brings, while k-fold
    tests all images, about sqrt(5) narrower, and its k fits per repeat are cheap at that size.
    Above it, a single split's test set is large enough and k times the fits would cost minutes.
    ``repeats`` caps the repeats at 3 (15 fits, three times a 5-seed single split's): more repeats
    narrow only the retraining part of the interval, the image part being fixed by the folder's size.
    Larger folders get fewer repeats (``repeats_for``), at least one: the repeats stop once they test
    ``image_tests`` images in all (3,000: a 1,000-image folder keeps three, a 2,000-image one gets
    one), because there the image part dominates the interval and each repeat's fits cost in
    proportion to the folder, which kept the report on 2,000 images over its 3-minute budget (4.1
    min with three repeats on the development machine).
    Each fold's validation set is ``val_share`` of the folder, as in the 60/20/20 split, so that
    a fit trains on as many images as it did there.
    """

    folds: int = 5
    repeats: int = 3
    val_share: float = 0.2
    max_images: int = 2500
    image_tests: int = 3000

    def __post_init__(self) -> None:
        if not 2 <= self.folds < FOLD_STRIDE:
            raise ValueError(f"folds must be between 2 and {FOLD_STRIDE - 1}, got {self.folds}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if self.image_tests < 1:
            raise ValueError(f"image_tests must be at least 1, got {self.image_tests}")
        if not 0 < self.val_share < 1 - 1 / self.folds:
            raise ValueError(
                f"val_share must be in (0, {1 - 1 / self.folds:.2f}) so that {self.folds} folds leave "
                f"training images, got {self.val_share}"
            )

    def applies(self, n_images: int) -> bool:
        """Whether a pool of ``n_images`` is cross-validated (else it keeps one split per seed)."""
        return n_images < self.max_images

    def repeats_for(self, n_images: int) -> int:
        """The repeats a pool of ``n_images`` gets: ``repeats``, or fewer (at least one) so that the
        repeats test about ``image_tests`` images in all."""
        return max(1, min(self.repeats, self.image_tests // max(n_images, 1)))

    def folds_for(self, labels: np.ndarray) -> int:
        """The folds a pool with these labels gets: ``folds``, or fewer where a class has fewer images
        (each fold's test set then holds at least one image of every class)."""
        counts = np.bincount(np.asarray(labels))
        return max(2, min(self.folds, int(counts[counts > 0].min())))

    def describe(self, n_images: int, folds: int, seeds: Sequence[int]) -> str:
        """The design in a sentence, with the reason it was chosen."""
        if not self.applies(n_images):
            return (
                f"One stratified 60/20/20 train/validation/test split per seed (seeds "
                f"{', '.join(map(str, seeds))}): the folder's {n_images} images are at least "
                f"{self.max_images}, so a fifth of them is already a large test set, and "
                "cross-validation would multiply the fits."
            )
        return (
            f"Repeated stratified {folds}-fold cross-validation, {len(seeds)} repeat(s) (seeds "
            f"{', '.join(map(str, seeds))}): each repeat splits the folder's {n_images} images into {folds} "
            f"folds, each fold is the test set of one fit whose validation images ({self.val_share:.0%} of "
            "the folder) are drawn from the other folds, so every image is tested once per repeat. "
            f"Folders under {self.max_images} images get this design because a single 20% test split "
            "would leave most images untested and the intervals too wide to decide anything"
            + (
                "."
                if self.repeats_for(n_images) == self.repeats
                else f"; {len(seeds)} repeat(s), not {self.repeats}, because at {n_images} images further "
                "repeats would narrow the intervals little (the images, not the retraining, make most of "
                "their width) and multiply the fits."
            )
        )


def run_seed(seed: int, fold: int) -> int:
    """The seed of the fit of ``fold`` in the repeat ``seed`` (``FOLD_STRIDE``)."""
    return seed * FOLD_STRIDE + fold


def fold_rows(labels: np.ndarray, folds: int, val: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per fold, the sorted rows of ``labels`` for train, val and test: the test rows partition all rows
    (stratified k-fold, shuffled with ``seed``), and ``val`` validation rows are drawn stratified from
    the other folds (seeded per fold)."""

    labels = np.asarray(labels)
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    classes = len(counts)
    if counts.min() < folds or val < classes:
        raise DatasetError(
            f"cannot cross-validate {len(labels)} images in {folds} folds with {val} validation images: "
            f"every class needs at least {folds} images (the smallest has {counts.min()}) and "
            f"validation at least one image of each of the {classes} classes; use fewer folds or more images."
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for fold, (rest, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if len(rest) - val < classes:
            raise DatasetError(
                f"fold {fold}: {val} validation images leave fewer than one training image per class "
                f"out of {len(rest)}; use a smaller validation share or more images."
            )
        train, valid = train_test_split(
            rest, test_size=val, stratify=labels[rest], random_state=run_seed(seed, fold)
        )
        out.append({"train": np.sort(train), "val": np.sort(valid), "test": np.sort(test)})
    return out


@dataclass
class FoldedPool(FeatureSet):
    """A pool whose ``draw(run_seed)`` is one fold's split of all its images (``fold_rows``); build it
    with ``folded``. ``repeats`` maps each repeat seed to its folds' run seeds, in fold order."""

    folds: int = 5
    val_size: int = 0
    repeats: dict[int, list[int]] = field(default_factory=dict)

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """Every fit's seed, repeat by repeat: the seeds to run the studies on."""
        return tuple(r for runs in self.repeats.values() for r in runs)

    def repeat_of(self, run: int) -> int:
        """The repeat seed of a run seed."""
        for seed, runs in self.repeats.items():
            if run in runs:
                return seed
        raise ValueError(f"run seed {run} is not one of this pool's folds: {self.run_seeds}")

    def _whole(self, by_split: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([by_split[s] for s in SPLITS])

    def draw(self, seed: int) -> FeatureSet:
        """The split of the fit ``seed`` (a run seed): one fold as test, validation from the others."""
        repeat, fold = self.repeat_of(seed), seed % FOLD_STRIDE
        rows = fold_rows(self._whole(self.labels), self.folds, self.val_size, repeat)[fold]

        def take(by_split: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            whole = self._whole(by_split)
            return {s: whole[rows[s]] for s in SPLITS}

        features = {b: take({s: self.features[s][b] for s in SPLITS}) for b in self.backbones}
        return FeatureSet(
            dataset=self.dataset,
            backbones=list(self.backbones),
            class_names=self.class_names,
            features={s: {b: features[b][s] for b in self.backbones} for s in SPLITS},
            labels=take(self.labels),
            thumbnails=take(self.thumbnails),
            backbone_gflops=dict(self.backbone_gflops),
            indices=take(self.indices),
            fixed_test=False,
        )

    def subset_backbones(self, names: list[str]) -> "FoldedPool":
        """The same folds over some backbones (the studies restrict a pool to their spec's backbones)."""
        return _fold(super().subset_backbones(names), self.folds, self.val_size, self.repeats)


def _fold(pool: FeatureSet, folds: int, val_size: int, repeats: dict[int, list[int]]) -> FoldedPool:
    return FoldedPool(
        **{f: getattr(pool, f) for f in FeatureSet.__dataclass_fields__},
        folds=folds,
        val_size=val_size,
        repeats=repeats,
    )


def folded(pool: FeatureSet, cv: CrossValidation, seeds: Sequence[int]) -> FoldedPool:
    """``pool``'s images (all its splits together) under ``cv``, repeated with the first
    ``cv.repeats_for(n_images)`` of ``seeds``. The pool must record each image's index (the ids the intervals pair images by)."""
    missing = [s for s in SPLITS if s not in pool.indices or s not in pool.thumbnails]
    if missing:
        raise ValueError(
            f"{pool.dataset}: cross-validation needs the pool's image indices and thumbnails of every split; "
            f"missing for {missing}. Load the features with fusion_lib.data.extraction.load_feature_set."
        )
    ids = np.concatenate([pool.indices[s] for s in SPLITS])
    if len(np.unique(ids)) != len(ids):
        raise ValueError(
            f"{pool.dataset}: cross-validation pairs images across folds by their index, but the pool's "
            "splits share indices; give every image of the pool its own index (its dataset index)."
        )
    labels = np.concatenate([pool.labels[s] for s in SPLITS])
    folds = cv.folds_for(labels)
    val_size = max(pool.n_classes, round(cv.val_share * len(labels)))
    repeats = {s: [run_seed(s, f) for f in range(folds)] for s in list(seeds)[: cv.repeats_for(len(labels))]}
    return _fold(pool, folds, val_size, repeats)


def merge_runs(
    correct: Mapping[tuple[str, int], np.ndarray], ids: Mapping[int, np.ndarray], pool: FoldedPool
) -> tuple[dict[tuple[str, int], np.ndarray], dict[int, np.ndarray]]:
    """Per-run ``correct[(model, run seed)]`` and test ``ids[run seed]`` joined per repeat (the folds'
    test images in fold order), so that a study's intervals resample repeats and images."""
    models = list(dict.fromkeys(m for m, _ in correct))
    merged = {
        (m, seed): np.concatenate([correct[(m, r)] for r in runs])
        for m in models
        for seed, runs in pool.repeats.items()
    }
    return merged, {seed: _repeat_ids(ids, runs) for seed, runs in pool.repeats.items()}


def _repeat_ids(ids: Mapping[int, np.ndarray], runs: Sequence[int]) -> np.ndarray:
    joined = np.concatenate([ids[r] for r in runs]).astype(np.int64)
    if len(np.unique(joined)) != len(joined):  # the folds must partition the images
        raise ValueError("the folds of a repeat test an image twice; their test sets must be disjoint")
    return joined


def _merge_output(outs: Sequence[MethodOutput], sizes: Sequence[int]) -> MethodOutput:
    """One repeat's output from its folds': predictions joined, costs and extras averaged over the
    folds, top-k accuracy weighted by each fold's test images."""
    joined = {
        kind: {s: np.concatenate([getattr(o, kind)[s] for o in outs]) for s in ("val", "test")}
        for kind in ("probs", "preds")
        if all(getattr(o, kind) is not None for o in outs)
    }
    gflops = [o.gflops_per_image for o in outs]
    extras = set.intersection(*(set(o.extra) for o in outs))
    gates = [o.gate_weights for o in outs]
    ks = set.intersection(*(set(o.top_k) for o in outs))
    weights = np.asarray(sizes, dtype=np.float64) / sum(sizes)
    return MethodOutput(
        probs=joined.get("probs"),
        preds=None if "probs" in joined else joined.get("preds"),
        gflops_per_image=None if None in gflops else float(np.mean(gflops)),
        extra={k: float(np.mean([o.extra[k] for o in outs])) for k in sorted(extras)},
        gate_weights=None if any(g is None for g in gates) else np.concatenate(gates),
        top_k={
            k: TopK(
                float(np.dot(weights, [o.top_k[k].accuracy for o in outs])),
                float(np.mean([o.top_k[k].gflops_per_image for o in outs])),
            )
            for k in sorted(ks)
        },
    )


def merge_folds(result: ExperimentResult, pool: FoldedPool) -> ExperimentResult:
    """``result`` (one "seed" per fit, run on ``pool``) as one seed per repeat holding every image's
    test prediction: the result the report's intervals, tables and recommendation read. Its metrics are
    recomputed on the joined predictions (accuracy over all images of the repeat; validation accuracy
    over the folds' validation sets, where an image may count in several folds)."""
    dataset = str(result.metrics["dataset"].iat[0]) if len(result.metrics) else pool.dataset
    outputs, labels, image_ids, rows = {}, {}, {}, []
    for seed, runs in pool.repeats.items():
        labels[seed] = {s: np.concatenate([result.labels[r][s] for r in runs]) for s in ("val", "test")}
        image_ids[seed] = _repeat_ids(result.image_ids, runs)
        sizes = [len(result.labels[r]["test"]) for r in runs]
        for method in result.methods:
            out = outputs[(method, seed)] = _merge_output([result.outputs[(method, r)] for r in runs], sizes)
            rows += [
                (dataset, method, seed, k, float(v)) for k, v in method_metrics(out, labels[seed]).items()
            ]
    metrics = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return replace(result, metrics=metrics, outputs=outputs, labels=labels, experts={}, image_ids=image_ids)


__all__ = [
    "FOLD_STRIDE",
    "CrossValidation",
    "FoldedPool",
    "fold_rows",
    "folded",
    "merge_folds",
    "merge_runs",
    "run_seed",
]
