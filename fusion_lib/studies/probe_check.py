"""Do a backbone's weights carry what ImageNet taught them? For weights without an ImageNet head (the
ports), no ImageNet sample can be classified, so a linear probe of the features on real images is set
against the same architecture with random weights: pretrained features must win by a wide margin."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fusion_lib.data.datasets import SplitSizes
from fusion_lib.data.extraction import load_feature_set
from fusion_lib.data.feature_set import SPLITS
from fusion_lib.data.spec import FeatureSpec

# 300 CIFAR cats and dogs, the size of the check in the assets' notes (../shared/ASSETS.md)
PROBE_SIZES = SplitSizes(200, 50, 50)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Mean accuracy of a standardised logistic regression over stratified ``folds``-fold cross-validation."""

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, features, labels, cv=cv).mean())


def probe_check(
    backbones: Sequence[str],
    dataset: str = "cifar_cats_dogs",
    sizes: SplitSizes = PROBE_SIZES,
    input_size: int = 80,
    folds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per backbone: the cross-validated probe accuracy of its pretrained features and of the same
    architecture with random weights (``load_backbone(..., weights="random")``) on the same images, and the
    margin in points. Features go through the feature cache like any others."""
    acc: dict[str, dict[str, float]] = {}
    for weights in ("auto", "random"):
        spec = FeatureSpec(dataset, tuple(backbones), sizes, seed, input_size, weights=weights)
        fs = load_feature_set(spec, progress=progress)
        labels = np.concatenate([fs.labels[s] for s in SPLITS])
        for b in fs.backbones:
            x = np.concatenate([fs.features[s][b] for s in SPLITS])
            acc.setdefault(b, {})[weights] = probe_accuracy(x, labels, folds, seed)
    return pd.DataFrame(
        [
            {
                "backbone": b,
                "pretrained": a["auto"],
                "random init": a["random"],
                "margin (points)": 100 * (a["auto"] - a["random"]),
            }
            for b, a in acc.items()
        ]
    )
