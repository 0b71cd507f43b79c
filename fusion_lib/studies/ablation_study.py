"""The ablation study of one dataset as the book runs it: the pool (a subset of its training images), the
variants of each ablation (thumbnail size, gate width, leave one expert out, training-set size, soft vs
top-k gating, shrinkage, calibration), their runs and summaries (``studies.ablations``, fits shared
through one ``AblationRuns``), the choices validation made and the sentences a text cites; and the
accuracy push over input sizes and expert heads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.fusion.two_stage import TwoStageConfig
from fusion_lib.studies.ablations import AblationRuns, Variant, run_ablation, summarize, verdicts
from fusion_lib.studies.frontier import choose_on_validation
from fusion_lib.studies.methods import thumbnail_choices, two_stage_config
from fusion_lib.studies.seed_run import ANCHORS

# The gate widths compared (channels of its two convolutions); the book's recipe uses 16/32.
WIDTHS: dict[str, tuple[int, int]] = {
    "channels 4/8": (4, 8),
    "channels 16/32": (16, 32),
    "channels 64/128": (64, 128),
}
TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclass
class AblationStudy:
    """The ablations of one dataset's pool: ``reference`` is the book's ``moe_thumbnail`` on it; every
    ablation run through ``run`` keeps its per-seed ``results`` and its ``summaries`` (by name), and
    shares its fits with the others through ``runs``. The ``*_variants`` methods are the ablations the
    book runs (``Profile.ablation_study`` makes one on a profile's dataset)."""

    dataset: str
    pool: FeatureSet
    runs: AblationRuns
    thumbnail_size: int
    results: dict[str, pd.DataFrame] = field(default_factory=dict)
    summaries: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reference = Variant(self.pool)

    def describe(self) -> str:
        """Images per seed in each split, and whether the test split is fixed."""
        n = {s: len(self.pool.labels[s]) for s in SPLITS}
        test = "official and fixed" if self.pool.fixed_test else "drawn per seed"
        return (
            f"Per seed: {n['train']:,} train, {n['val']:,} validation and {n['test']:,} test images; "
            f"the test split is {test}."
        )

    def backbone_table(self) -> pd.DataFrame:
        """Each backbone's feature dimension and GFLOPs per image."""
        frame = pd.DataFrame(
            {"feature dimension": self.pool.dims(), "GFLOPs per image": self.pool.backbone_gflops}
        )
        return frame.rename(index=short_name).rename_axis("backbone").round(3)

    def two_stage_config(self) -> TwoStageConfig:
        """The book's recipe (``moe_thumbnail``) on this pool, as a config: what every variant changes."""
        return two_stage_config("moe_thumbnail", self.thumbnail_size, len(self.pool.backbones))

    def run(self, ablation: str, variants: dict[str, Variant], reference: str) -> pd.DataFrame:
        """Run ``variants`` over the seeds against ``reference`` (a variant's name); its summary."""
        self.results[ablation] = run_ablation(
            ablation, variants, self.runs, reference=reference, progress=False
        )
        self.summaries[ablation] = summarize(self.results[ablation])
        return self.summaries[ablation]

    def verdict(self, ablation: str) -> str:
        """The verdict sentences of an ablation run, as one paragraph."""
        return verdicts(self.summaries[ablation]).replace("\n", " ")

    def thumbnail_variants(self) -> dict[str, Variant]:
        """The recipe's choice on validation against each fixed candidate size."""
        fixed = {
            f"{t} px": Variant(self.pool, {"thumbnail_sizes": (t,)})
            for t in thumbnail_choices(self.thumbnail_size)
        }
        return {"chosen on validation": self.reference, **fixed}

    def chosen_thumbnails(self) -> str:
        """The thumbnail size validation chose on each seed (of the thumbnail-size ablation)."""
        chosen = self.results["thumbnail size"].query("reference")
        return ", ".join(f"{t} px on seed {s}" for s, t in zip(chosen["seed"], chosen["thumbnail_size"]))

    def width_variants(self) -> dict[str, Variant]:
        """The gate at each of ``WIDTHS``."""
        return {name: Variant(self.pool, {"gate_channels": c}) for name, c in WIDTHS.items()}

    def leave_one_out_variants(self) -> dict[str, Variant]:
        """Every expert, and the mixture without each one (none with a single expert)."""
        out = {"all experts": self.reference}
        for b in self.pool.backbones if len(self.pool.backbones) > 1 else []:
            rest = [x for x in self.pool.backbones if x != b]
            out[f"without {short_name(b)}"] = Variant(self.pool.subset_backbones(rest))
        return out

    def train_size_variants(self) -> dict[str, Variant]:
        """The recipe on each of ``TRAIN_FRACTIONS`` of the train split."""
        return {f"{f:.0%} of the train split": Variant(self.pool, train_fraction=f) for f in TRAIN_FRACTIONS}

    def gating_variants(self) -> dict[str, Variant]:
        """Soft gating and top-2 / top-1 inference of the same mixtures (levels below the expert count)."""
        levels = [None] + [k for k in (2, 1) if k < len(self.pool.backbones)]
        return {("soft" if k is None else f"top-{k}"): Variant(self.pool, top_k=k) for k in levels}

    def backbone_marks(self) -> dict[str, float]:
        """Each backbone's GFLOPs per image, by short name (marks on the top-k figure's cost axis)."""
        return {short_name(b): g for b, g in self.pool.backbone_gflops.items()}

    def shrinkage_variants(self) -> dict[str, Variant]:
        """Alpha chosen on validation, the raw gate (alpha = 1) and the anchor alone (alpha = 0)."""
        return {
            "alpha on validation": self.reference,
            "raw gate (alpha = 1)": Variant(self.pool, {"shrink": False}),
            "anchor (alpha = 0)": Variant(self.pool, {"alphas": (0.0,)}),
        }

    def chosen_anchors(self) -> str:
        """The anchor each seed chose (of the shrinkage ablation), as a sentence."""
        anchors = self.results["shrinkage"].query("reference")
        chosen = ", ".join(f"{a} (seed {s})" for s, a in zip(anchors["seed"], anchors["anchor"]))
        return f"The anchor, chosen per seed among {', '.join(ANCHORS)}: {chosen}."

    def calibration_variants(self) -> dict[str, Variant]:
        """Calibrated experts (the recipe) against raw ones."""
        return {"calibrated experts": self.reference, "raw experts": Variant(self.pool, {"calibrate": False})}

    def summary(self) -> pd.DataFrame:
        """Every ablation's summary, one after the other."""
        return pd.concat(self.summaries.values(), ignore_index=True)

    def fits_note(self) -> str:
        """How many results came from how many fits (settings equal to the reference share theirs)."""
        n = len(pd.concat(self.results.values()))
        return (
            f"{n} (setting, seed) results from {self.runs.n_runs} seed runs (probes, out-of-fold probes and "
            f"anchor) and {self.runs.n_gates} gates: settings equal to the reference, the fixed thumbnail "
            "sizes the recipe also fits, and soft and top-k inference share their fits."
        )


@dataclass
class AccuracyPush:
    """The accuracy push: the same small subset at each input size (``pools``), with linear and MLP
    experts; ``reference`` is ``input_size`` with linear experts (``Profile.accuracy_push``)."""

    pools: dict[int | None, FeatureSet]
    input_size: int | None

    @staticmethod
    def label(px: int | None) -> str:
        return f"{px} px" if px else "native size"

    @property
    def n_train(self) -> int:
        """Training images per seed of the subset."""
        return len(next(iter(self.pools.values())).labels["train"])

    @property
    def reference(self) -> str:
        return f"{self.label(self.input_size)}, linear experts"

    @property
    def detail(self) -> str:
        """What the push's figure title adds: the subset's training images."""
        return f"{self.n_train:,} training images"

    def variants(self) -> dict[str, Variant]:
        return {
            f"{self.label(px)}, {kind} experts": Variant(pool, expert=kind.lower())
            for px, pool in self.pools.items()
            for kind in ("linear", "MLP")
        }

    @staticmethod
    def choice(summary: pd.DataFrame) -> tuple[str, str]:
        """The setting validation prefers (ties to the cheaper) and its test accuracy with its CI."""
        chosen = choose_on_validation(
            dict(zip(summary["setting"], summary["val_accuracy"])),
            costs=dict(zip(summary["setting"], summary["gflops_per_image"])),
        )
        return chosen, summary.set_index("setting").loc[chosen, "accuracy (95% CI)"]
