"""Repeated stratified k-fold cross-validation (``studies.cross_validation``): every image is tested once
per repeat, each fold's test set is stratified, validation never meets test, and a repeat's folds merge
into one result row holding every image with its id."""

from __future__ import annotations

import numpy as np
import pytest
from configs import experiment
from conftest import planted_feature_set

from fusion_lib.data.splits import DatasetError
from fusion_lib.studies.cross_validation import (
    CrossValidation,
    FoldedPool,
    fold_rows,
    folded,
    merge_folds,
    run_seed,
)
from fusion_lib.studies.runner import run_experiment

LABELS = np.repeat([0, 1, 2], [40, 25, 15])  # unbalanced on purpose


@pytest.mark.parametrize("seed", [0, 3])
def test_every_image_is_tested_once_per_repeat_stratified_and_apart_from_validation(seed):
    folds = fold_rows(LABELS, 5, 16, seed)
    assert len(folds) == 5
    tested = np.concatenate([f["test"] for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(LABELS)))  # each image exactly once
    for f in folds:
        assert not set(f["val"]) & set(f["test"]) and not set(f["train"]) & set(f["test"])
        assert not set(f["train"]) & set(f["val"])
        assert len(f["train"]) + len(f["val"]) + len(f["test"]) == len(LABELS)
        assert len(f["val"]) == 16
        # stratified: each class's share of a fold is its share of the folder, to one image
        share = np.bincount(LABELS[f["test"]], minlength=3)
        assert np.all(np.abs(share - np.bincount(LABELS) / 5) <= 1)
        assert set(LABELS[f["val"]]) == {0, 1, 2}
    other = fold_rows(LABELS, 5, 16, seed + 1)
    assert any(not np.array_equal(a["test"], b["test"]) for a, b in zip(folds, other))


def test_a_fold_that_cannot_be_drawn_says_why():
    with pytest.raises(DatasetError, match="every class needs at least 5 images"):
        fold_rows(np.repeat([0, 1], [10, 3]), 5, 4, 0)


def test_the_design_rule_and_its_sentence():
    cv = CrossValidation()
    assert cv.applies(100) and cv.applies(2499) and not cv.applies(2500)
    assert cv.folds_for(np.repeat([0, 1], [30, 3])) == 3  # a class of 3 images: 3 folds
    assert cv.folds_for(LABELS) == 5
    assert "5-fold cross-validation" in cv.describe(100, 5, [0, 1])
    assert "every image is tested once per repeat" in cv.describe(100, 5, [0, 1])
    assert "One stratified 60/20/20" in cv.describe(5000, 5, [0, 1])
    with pytest.raises(ValueError, match="folds must be"):
        CrossValidation(folds=1)
    # repeats fall with the folder's size, never below one
    assert [cv.repeats_for(n) for n in (100, 1000, 1500, 2000, 2499)] == [3, 3, 2, 1, 1]
    assert "; 1 repeat(s), not 3, because at 2000 images" in cv.describe(2000, 5, [0])
    assert "not 3" not in cv.describe(100, 5, [0, 1, 2])
    assert "not 3" not in cv.describe(100, 5, [0, 1])  # fewer seeds than repeats: not the folder's size
    with pytest.raises(ValueError, match="image_tests must be at least 1"):
        CrossValidation(image_tests=0)


def test_merged_folds_hold_every_image_once_per_repeat():
    fs = planted_feature_set({"a": 1.5, "b": 0.8}, sizes=(60, 20, 20), seed=1)
    with pytest.raises(ValueError, match="splits share indices"):
        folded(fs, CrossValidation(), seeds=[0])
    fs.indices = {"train": np.arange(60), "val": np.arange(60, 80), "test": np.arange(80, 100)}
    assert list(folded(fs, CrossValidation(folds=4, image_tests=150), seeds=[0, 1, 2]).repeats) == [0]
    pool = folded(fs, CrossValidation(folds=4, repeats=2), seeds=[0, 1, 2])
    assert isinstance(pool, FoldedPool) and list(pool.repeats) == [0, 1]
    assert pool.run_seeds == tuple(run_seed(s, f) for s in (0, 1) for f in range(4))
    assert isinstance(pool.subset_backbones(["a"]), FoldedPool)
    config = experiment(seeds=pool.run_seeds, epochs=3, methods="single:a,single:b,best_single,prob_avg")
    fits = run_experiment(config, feature_set=pool, progress=False)
    merged = merge_folds(fits, pool)
    everything = np.concatenate([fs.indices[s] for s in ("train", "val", "test")])
    assert merged.seeds == [0, 1]
    for seed in merged.seeds:
        assert np.array_equal(np.sort(merged.image_ids[seed]), np.sort(everything))
        assert len(merged.labels[seed]["test"]) == 100
    # the merged accuracy is that of every image's prediction from the fit that did not train on it
    acc = merged.metrics.query("method == 'prob_avg' and metric == 'accuracy'")["value"]
    assert np.allclose(acc, [c.mean() for c in merged.correct("prob_avg")])
    per_fit = fits.metrics.query("method == 'prob_avg' and metric == 'accuracy'")["value"]
    assert np.isclose(acc.mean(), per_fit.mean())  # folds of equal size: the mean of the folds
    d = merged.compare("prob_avg", "best_single")
    assert d.n_images == 100 and d.n_seeds == 2
