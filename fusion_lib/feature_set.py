"""The in-memory result of feature extraction: what every fusion method consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class FeatureSet:
    """Frozen backbone features, labels and thumbnails for the train/val/test splits of one dataset.

    ``features[split][backbone]`` is a float32 array ``(n_split, dim_backbone)``;
    ``labels[split]`` is an int64 array ``(n_split,)``;
    ``thumbnails[split]`` is a float32 array ``(n_split, 3, t, t)`` with values in [0, 1];
    ``backbone_gflops[backbone]`` is the backbone's cost per image at the extraction input size.
    """

    dataset: str
    backbones: list[str]
    class_names: list[str]
    features: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]
    thumbnails: dict[str, np.ndarray]
    backbone_gflops: dict[str, float] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, labels in self.labels.items():
            n = len(labels)
            for name in self.backbones:
                got = self.features[split][name].shape[0]
                if got != n:
                    raise ValueError(
                        f"FeatureSet: split {split!r} has {n} labels but backbone {name!r} has "
                        f"{got} feature rows; features and labels must be aligned row by row."
                    )
            if split in self.thumbnails and len(self.thumbnails[split]) != n:
                raise ValueError(
                    f"FeatureSet: split {split!r} has {n} labels but {len(self.thumbnails[split])} thumbnails."
                )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def dims(self) -> dict[str, int]:
        """Feature dimension per backbone."""
        return {b: int(self.features["train"][b].shape[1]) for b in self.backbones}

    def subset_backbones(self, names: list[str]) -> "FeatureSet":
        """A view of this set restricted to some backbones (for leave-one-out ablations)."""
        unknown = sorted(set(names) - set(self.backbones))
        if unknown:
            raise ValueError(f"unknown backbones {unknown}; this FeatureSet has {self.backbones}")
        return FeatureSet(
            dataset=self.dataset,
            backbones=list(names),
            class_names=self.class_names,
            features={s: {b: f[b] for b in names} for s, f in self.features.items()},
            labels=self.labels,
            thumbnails=self.thumbnails,
            backbone_gflops={b: self.backbone_gflops[b] for b in names if b in self.backbone_gflops},
            indices=self.indices,
        )
