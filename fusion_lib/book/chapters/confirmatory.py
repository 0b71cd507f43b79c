"""Notebook 06's confirmatory test: the committed plan's design run on its fresh seeds, and its words.

At the book profile the run is the plan's own (its datasets, experts, seeds and methods) and its words
are confirmatory. At any other profile, or with overrides, the same code runs on the profile's own
datasets, experts and seeds, as a check of the machinery, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from IPython.display import Markdown
from matplotlib.figure import Figure

from fusion_lib.book.figures import lay_out, panel_grid
from fusion_lib.book.pages import markdown, table
from fusion_lib.book.profiles import Profile, get_profile
from fusion_lib.data.backbones import OFFLINE_BACKBONES, short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.claims import PlannedVerdict
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_study import aliases_for
from fusion_lib.studies.plan import ConfirmatoryPlan
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.runs import StudyRun
from fusion_lib.studies.stats import family_words
from fusion_lib.studies.study import Study
from fusion_lib.studies.zoo_sweep import draw_zoos, run_sweep, slope_table

# the profile whose unchanged run is the plan's confirmatory run
CONFIRMATORY_PROFILE = "book"


@dataclass(frozen=True)
class Design:
    """What a run of the plan covers, and whether its words are the confirmatory ones."""

    confirmatory: bool
    datasets: tuple[str, ...]
    experts: tuple[str, ...]
    seeds: tuple[int, ...]

    def describe(self) -> str:
        """One sentence for the page."""
        what = (
            "the confirmatory run of the plan"
            if self.confirmatory
            else "a check of the plan's machinery at a small profile, NOT the confirmatory test"
        )
        return (
            f"This is {what}: {len(self.datasets)} dataset(s) ({', '.join(self.datasets)}), experts "
            f"{', '.join(self.experts)}, seeds {', '.join(map(str, self.seeds))}."
        )

    def profile(self, base: Profile) -> Profile:
        """``base`` as this run uses it: its datasets, experts and seeds, every seed on every dataset (the
        plan's seeds replace the profile's, and no dataset is capped to fewer)."""
        return replace(base, datasets=self.datasets, backbones=self.experts, seeds=self.seeds, max_seeds={})


def design(profile: Profile, plan: ConfirmatoryPlan) -> Design:
    """The plan's own design at the unchanged book profile; elsewhere the profile's own datasets, experts
    and seeds (the plan's seeds run only in the planned design)."""
    if profile == get_profile(CONFIRMATORY_PROFILE):
        return Design(True, plan.datasets, plan.experts, plan.seeds)
    return Design(False, profile.datasets, profile.backbones, profile.seeds)


def run_config(
    profile: Profile, plan: ConfirmatoryPlan, run_design: Design, dataset: str, class_names: Sequence[str]
) -> ExperimentConfig:
    """The experiment config of ``dataset`` in ``run_design``: the plan's methods on the design's experts
    and seeds, under the profile's training settings (so that its fits are the ones the exploratory
    notebooks load for the same seeds)."""
    return profile.experiment_config(
        dataset,
        run_design.experts,
        methods=list(plan.methods),
        seeds=list(run_design.seeds),
        aliases=aliases_for(class_names),
    )


def run(profile: Profile, plan: ConfirmatoryPlan, run_design: Design) -> Study:
    """Every method the plan names, on each dataset of ``run_design``, over its seeds."""

    def run_one(name: str) -> tuple[ExperimentResult, FeatureSet]:
        pool = profile.feature_set(name, run_design.experts)
        config = run_config(profile, plan, run_design, name, pool.class_names)
        return run_experiment(config, feature_set=pool, progress=False), pool

    return Study.of(run_design.datasets, run_one)


def verdicts(study: Study, plan: ConfirmatoryPlan) -> dict[tuple[str, str], PlannedVerdict]:
    """The planned verdict of every test of the plan, primary and secondary, keyed by (method, reference)."""
    pairs = [(t.method, t.reference) for t in plan.tests] + [p for t in plan.tests for p in t.secondary]
    return study.planned_verdicts(list(dict.fromkeys(pairs)), plan.margin, plan.reseeds)


def claim_verdicts(
    decided: Mapping[tuple[str, str], PlannedVerdict], plan: ConfirmatoryPlan
) -> dict[str, PlannedVerdict]:
    """Each claim's verdict: its primary test's."""
    return {t.claim: decided[(t.method, t.reference)] for t in plan.tests}


def verdict_table(decided: Mapping[tuple[str, str], PlannedVerdict], plan: ConfirmatoryPlan) -> pd.DataFrame:
    """One row per claim and test: primary tests decide the claim, secondary ones are reported beside it
    (same statistic, margin and reseeding; not deciding)."""
    rows = []
    for t in plan.tests:
        tests = [("primary", t.method, t.reference)] + [("secondary", a, b) for a, b in t.secondary]
        for kind, a, b in tests:
            v = decided[(a, b)]
            rows.append(
                {
                    "claim": t.claim,
                    "test": kind,
                    "comparison": f"{a} vs {b}",
                    "word": v.word,
                    "relative error reduction, % (95% CI)": v.difference.text(),
                    "reseeds agreeing": f"{v.agreeing} of {v.reseeds}"
                    + (" (borderline)" if v.borderline else ""),
                }
            )
    return pd.DataFrame(rows).set_index(["claim", "test", "comparison"])


def per_dataset_table(study: Study, plan: ConfirmatoryPlan) -> pd.DataFrame:
    """Descriptive: every planned comparison on every dataset, in percent of the reference's errors and
    in points, with superiority (two-sided) and equivalence (two one-sided tests at the plan's margin)
    p-values Holm-adjusted together over the whole table, and the word they give."""
    pairs = [(t.method, t.reference) for t in plan.tests] + [p for t in plan.tests for p in t.secondary]

    def rows(run: StudyRun[ExperimentResult]) -> pd.DataFrame:
        result, out = run.result, []
        for a, b in pairs:
            rel = result.compare(a, b, relative=True)
            out.append(
                {
                    "comparison": f"{a} vs {b}",
                    "relative, % (95% CI)": rel.text(),
                    "points (95% CI)": result.compare(a, b).text(),
                    "diff": rel.diff,
                    "p_superiority": rel.p_value,
                    "p_equivalence": rel.p_equivalence(plan.margin),
                }
            )
        return pd.DataFrame(out)

    df = study.frame(rows)
    df["p_superiority (Holm)"], df["p_equivalence (Holm)"], df["word"] = family_words(
        df["diff"], df["p_superiority"], df["p_equivalence"]
    )
    return df.drop(columns=["diff", "p_superiority", "p_equivalence"]).set_index(["dataset", "comparison"])


def gate_table(study: Study) -> pd.DataFrame:
    """Per dataset, the mean alpha validation chose for ``moe_thumbnail`` and the share of test images on
    which its gate changes its anchor's answer (mean over seeds): what an "equivalent" C2b rests on."""

    def row(run: StudyRun[ExperimentResult]) -> pd.DataFrame:
        m = run.result.mean_metric
        return pd.DataFrame(
            {
                "mean alpha (val)": [m("alpha").get("moe_thumbnail", np.nan)],
                "images whose answer the gate changes, %": [
                    100 * m("gate_changes_anchor").get("moe_thumbnail", np.nan)
                ],
            }
        )

    return study.frame(row).set_index("dataset")


def glue_words(
    decided: Mapping[tuple[str, str], PlannedVerdict], plan: ConfirmatoryPlan, run_design: Design
) -> dict[str, str]:
    """The values the introduction cites: the plan's hash, and each claim's word and number."""
    status = "" if run_design.confirmatory else " (machinery check, not confirmatory)"
    out = {"conf-plan-hash": plan.short_hash, "conf-status": status or "confirmatory"}
    for claim, v in claim_verdicts(decided, plan).items():
        key = claim.lower()
        out[f"conf-{key}-word"] = v.word + (" (borderline)" if v.borderline else "") + status
        out[f"conf-{key}-number"] = (
            f"{v.difference.text()} % of the reference's errors, {v.agreeing} of {v.reseeds} reseeds agree"
        )
    return out


@dataclass(frozen=True)
class SweepDesign:
    """The zoo sweep a run makes: the plan's at the unchanged book profile, else a small one on the
    profile's own backbones, datasets and seeds (zoos as large as those backbones allow)."""

    datasets: tuple[str, ...]
    candidates: tuple[str, ...]
    zoos: tuple[tuple[str, ...], ...]
    seeds: tuple[int, ...]

    def describe(self) -> str:
        """One sentence for the page."""
        return (
            f"{len(self.zoos)} zoos of {len(self.zoos[0])} among {len(self.candidates)} backbones, on "
            f"{', '.join(self.datasets)}, seeds {', '.join(map(str, self.seeds))}"
        )


def sweep_design(profile: Profile, plan: ConfirmatoryPlan) -> SweepDesign:
    """Draw the sweep's zoos (``zoo_sweep.draw_zoos``) among the candidates this profile has."""
    s = plan.sweep
    if profile == get_profile(CONFIRMATORY_PROFILE):
        datasets, candidates, size, seeds = s.datasets, OFFLINE_BACKBONES, s.zoo_size, s.seeds
    else:
        candidates = profile.all_backbones()
        datasets, size, seeds = profile.datasets, min(s.zoo_size, len(candidates) - 1), profile.seeds
    zoos = draw_zoos(candidates, s.zoos, size, s.draw_seed)
    return SweepDesign(tuple(datasets), tuple(candidates), tuple(zoos), tuple(seeds))


def run_zoo_sweep(profile: Profile, d: SweepDesign) -> pd.DataFrame:
    """Every zoo of ``d`` on every dataset: one row each, gains and covariates in points."""
    frames = []
    for name in d.datasets:
        pool = profile.feature_set(name, d.candidates)
        # no progress bar on the page: a widget there would load its script from the network
        config = profile.experiment_config(name, seeds=list(d.seeds))
        frames.append(run_sweep(pool, config, d.zoos, progress=False))
    return pd.concat(frames, ignore_index=True)


def sweep_slopes(sweep: pd.DataFrame) -> pd.DataFrame | Markdown:
    """The slopes of ``zoo_sweep.slope_table``, or a sentence saying why there are too few zoos for them."""
    try:
        slopes = slope_table(sweep).reset_index()
    except ValueError as exc:
        return markdown(f"No regression at this profile: {exc}.")
    labels = {
        "slope": "double-fault slope (points of gain per point)",
        "low": "95% low",
        "high": "95% high",
        "r2": "R²",
    }
    return table(slopes, labels, index="gain", digits=2)


def sweep_figure(sweep: pd.DataFrame) -> Figure:
    """Fusion and adaptivity gain of every zoo against its mean double fault, one colour per dataset,
    marker size growing with mean expert accuracy."""
    fig, axes = panel_grid(2, sharex=True)
    acc = sweep["mean expert accuracy"]
    sizes = 20 + 80 * (acc - acc.min()) / max(float(acc.max() - acc.min()), 1e-9)
    for ax, gain in zip(axes, ("fusion gain", "adaptivity gain")):
        for i, (name, part) in enumerate(sweep.groupby("dataset", sort=False)):
            ax.scatter(
                part["mean double fault"],
                part[gain],
                s=sizes[part.index],
                color=f"C{i}",
                alpha=0.7,
                label=name,
            )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(xlabel="mean double fault (% of test images)", ylabel=f"{gain} (points)", title=gain)
        ax.grid(alpha=0.3)
    axes[0].legend(title="dataset (size: mean expert accuracy)", loc="best")
    return lay_out(fig)


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sweep's zoos as the page shows them: short backbone names, points to two decimals."""
    shown = sweep.assign(zoo=sweep["zoo"].map(lambda z: " + ".join(short_name(b) for b in z.split(" + "))))
    return table(shown, index=["dataset", "zoo"], digits=2)
