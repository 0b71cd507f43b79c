"""The in-memory result of feature extraction: what every fusion method consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusion_lib.data.splits import draw_split

SPLITS = ("train", "val", "test")  # the one list of splits, in order


@dataclass
class FeatureSet:
    """Frozen backbone features, labels and thumbnails for the train/val/test splits of one dataset.

    ``features[split][backbone]`` is a float32 array ``(n_split, dim_backbone)``;
    ``labels[split]`` is an int64 array ``(n_split,)``;
    ``thumbnails[split]`` is a float32 array ``(n_split, 3, t, t)`` with values in [0, 1];
    ``backbone_gflops[backbone]`` is the backbone's cost per image at the extraction input size;
    ``fixed_test`` is True when the test split is the dataset's official test split, which every seed
    shares; otherwise ``draw`` re-draws the test images per seed too.
    """

    dataset: str
    backbones: list[str]
    class_names: list[str]
    features: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]
    thumbnails: dict[str, np.ndarray]
    backbone_gflops: dict[str, float] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    fixed_test: bool = True

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

    @property
    def thumbnail_size(self) -> int:
        """The side of the stored thumbnails in pixels (what a thumbnail gate can see at most)."""
        return int(next(iter(self.thumbnails.values())).shape[-1])

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
            fixed_test=self.fixed_test,
        )

    def draw(self, seed: int) -> "FeatureSet":
        """This seed's split of the cached pool: same sizes, rows re-drawn stratified by class.

        Train and validation are re-drawn from the pool's train + validation rows; the test rows too
        when ``fixed_test`` is False (datasets without an official test split). Features are extracted
        once for the pool, so more seeds cost no extraction.
        """
        pooled = ("train", "val") if self.fixed_test else SPLITS
        n = {s: len(self.labels[s]) for s in SPLITS}
        rows = draw_split(
            np.concatenate([self.labels[s] for s in pooled]),
            n["train"],
            n["val"],
            n["test"],
            seed,
            f"{self.dataset} (seed {seed})",
            test_labels=self.labels["test"] if self.fixed_test else None,
            test_first=True,
            class_names=self.class_names,
        )

        def take(by_split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            whole = np.concatenate([by_split[s] for s in pooled])
            return {**by_split, **{s: whole[rows[s]] for s in pooled}}

        return FeatureSet(
            dataset=self.dataset,
            backbones=list(self.backbones),
            class_names=self.class_names,
            features=_transpose({b: take({s: self.features[s][b] for s in SPLITS}) for b in self.backbones}),
            labels=take(self.labels),
            thumbnails=take(self.thumbnails)
            if all(s in self.thumbnails for s in pooled)
            else self.thumbnails,
            backbone_gflops=dict(self.backbone_gflops),
            indices=take(self.indices) if all(s in self.indices for s in pooled) else {},
            fixed_test=self.fixed_test,
        )


def _transpose(by_backbone: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    splits = next(iter(by_backbone.values())).keys() if by_backbone else SPLITS
    return {s: {b: arrays[s] for b, arrays in by_backbone.items()} for s in splits}
