"""The one seeded, stratified train/val/test split: ``datasets`` draws a dataset's subsets with it, and
``FeatureSet.draw`` each seed's split of a cached pool.

A split that cannot be drawn fails here, with the sizes asked, the images available per class and the sizes
that would fit, before scikit-learn is called. ``DatasetError`` lives here, the lowest module that raises it;
``datasets`` re-exports it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

# Classes listed one by one in a message; more are summed up as a range of counts.
_LISTED_CLASSES = 10


class DatasetError(ValueError):
    """A dataset that cannot be loaded as asked."""


def draw_split(
    labels: np.ndarray,
    train: int,
    val: int,
    test: int,
    seed: int,
    what: str,
    *,
    test_labels: np.ndarray | None = None,
    test_first: bool = False,
    class_names: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Indices of ``train``, ``val`` and ``test`` images, each split stratified by class, seeded, sorted.

    Train + val are drawn out of ``labels`` (seed), train out of them (seed + 1), and val is the rest. The
    test images come from ``test_labels`` (an official test split) when given, else from the images
    train + val leave (seed + 2). ``test_first`` draws the test images first out of all of ``labels`` and
    train + val out of the rest: ``FeatureSet.draw``'s order, which every cached seed's split was drawn in.
    ``what`` names the dataset in messages; ``class_names`` name the labels there.
    """

    labels = np.asarray(labels)
    everything = np.arange(len(labels))
    asked = f"train={train}, val={val}, test={test}"
    wanted = {"train": train, "val": val, "test": test, "train + val": train + val}

    def pick(
        pool: np.ndarray, candidates: np.ndarray, split: str, offset: int, source: str, leave: str = ""
    ) -> np.ndarray:
        """``split``'s images out of ``candidates``, leaving enough for the later split ``leave`` names."""
        n = wanted[split]
        problem = _problem(pool[candidates], n, split, leave, wanted.get(leave, 0), class_names)
        if problem:
            raise DatasetError(
                f"{what}: cannot draw {split} = {n} images, stratified by class, from {source}"
                f"{_per_class(pool[candidates], class_names)}: {problem}. Asked for {asked}; choose sizes "
                f"that fit."
            )
        if n == len(candidates):
            return np.sort(candidates)
        chosen, _ = train_test_split(
            candidates, train_size=n, stratify=pool[candidates], random_state=seed + offset
        )
        return np.sort(chosen)

    rows: dict[str, np.ndarray] = {}
    rest = everything
    pooled_test = test_labels is None
    if pooled_test and test_first:
        rows["test"] = pick(labels, everything, "test", 2, f"all {len(everything)} images", "train + val")
        rest = np.setdiff1d(everything, rows["test"])
    trainval = pick(
        labels,
        rest,
        "train + val",
        0,
        _source(rest, everything, "test")
        if pooled_test
        else f"the {len(everything)} images of the official training split",
        "test" if pooled_test and not test_first else "",
    )
    rows["train"] = pick(labels, trainval, "train", 1, f"the {len(trainval)} images of train + val", "val")
    rows["val"] = np.setdiff1d(trainval, rows["train"])
    if not pooled_test:
        official = np.arange(len(test_labels))
        rows["test"] = pick(
            test_labels, official, "test", 2, f"the {len(official)} images of the official test split"
        )
    elif not test_first:
        left = np.setdiff1d(everything, trainval)
        rows["test"] = pick(labels, left, "test", 2, _source(left, everything, "train + val"))
    return {split: rows[split] for split in ("train", "val", "test")}


def _source(candidates: np.ndarray, everything: np.ndarray, taken: str) -> str:
    if len(candidates) == len(everything):
        return f"all {len(everything)} images"
    return f"the {len(candidates)} images left of {len(everything)} after {taken}"


def _problem(
    labels: np.ndarray, n: int, split: str, leave: str, later: int, class_names: Sequence[str]
) -> str:
    """Why ``n`` images cannot be drawn, stratified, out of images with these ``labels`` so that ``later``
    remain for the split ``leave`` names, and which sizes would fit; "" when they can. The conditions are
    scikit-learn's: every class has two images, and the draw takes one of each and leaves one of each,
    unless it takes all."""
    m = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    k = len(classes)
    upper = min(m - k, m - later)
    fits = [f"{k} to {upper}"] if k and counts.min() >= 2 and k <= upper else []
    fits += [f"all {m}"] if not later else []
    can = f"{split} can be {' or '.join(fits)} here" if fits else f"no size of {split} fits here"
    if n > m:
        return f"there are only {m}; {can}"
    if n > m - later:
        return f"that leaves only {m - n} for {leave} = {later}; {can}"
    if n == m:
        return ""
    if counts.min() < 2:
        lone = [_name(c, class_names) for c in classes[counts < 2]]
        return (
            f"{', '.join(lone)} {'has' if len(lone) == 1 else 'have'} only one image there, and a stratified "
            f"draw takes one image of each class and leaves one out unless it takes all; {can}"
        )
    if n < k:
        return f"a stratified draw takes at least one image of each of the {k} classes; {can}"
    if n > m - k:
        return f"a stratified draw leaves at least one image of each of the {k} classes out; {can}"
    return ""


def _name(label: int, class_names: Sequence[str]) -> str:
    return repr(class_names[label]) if 0 <= label < len(class_names) else f"class {label}"


def _per_class(labels: np.ndarray, class_names: Sequence[str]) -> str:
    """The images of each class as " (a 21, b 20)", or their range when there are many classes."""
    classes, counts = np.unique(labels, return_counts=True)
    if not len(classes):
        return ""
    if len(classes) <= _LISTED_CLASSES:
        return " (" + ", ".join(f"{_name(c, class_names)} {n}" for c, n in zip(classes, counts)) + ")"
    return f" ({len(classes)} classes, {counts.min()} to {counts.max()} images each)"
