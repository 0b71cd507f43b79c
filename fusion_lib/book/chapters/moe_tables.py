"""Notebook 03's tables and study runs: every visual method on each dataset and on each zoo, the C2
comparisons, how the gates route where the experts disagree, what they cost, and the numbers the
text cites, as the page shows them."""

from __future__ import annotations

from typing import Any

import pandas as pd

from fusion_lib.book.pages import interval, markdown, table
from fusion_lib.book.profiles import Profile
from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.claims import C2_QUESTIONS, ZOO_METHODS, claim_word
from fusion_lib.studies.gate_analysis import routing_auc
from fusion_lib.studies.registry import SINGLE_PREFIX, method_names
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.runs import StudyRun
from fusion_lib.studies.study import Study

# The two-stage gates whose routing on disagreement images the page shows (not the recipe's variants).
ROUTED_GATES = (
    "moe_static",
    "moe_thumbnail",
    "moe_cheap_feature",
    "moe_feature",
    "moe_confidence",
    "moe_thumbnail_conf",
)
# The fusions whose share of the averaging-to-oracle gap the page shows.
GAP_METHODS = (
    "best_fixed",
    "moe_static",
    "moe_thumbnail_joint",
    "moe_thumbnail_oof",
    "moe_thumbnail_noisy",
    "moe_thumbnail",
    "moe_feature",
    "moe_cheap_feature",
    "moe_confidence",
    "moe_thumbnail_conf",
    "stacking",
)
USAGE = {  # the gates' use of their experts, as the usage table names it
    "gate_max_weight": "mean largest weight",
    "gate_effective_experts": "effective experts",
    "alpha": "alpha (val)",
    "thumbnail_size": "thumbnail px (val)",
}


def run_study(profile: Profile) -> Study:
    """Every visual method (the registry's methods that need no word vectors) on each dataset's cached
    features, with top-k inference at every level below the number of experts."""
    methods = method_names(profile.backbones, needs_class_vectors=False)
    top_k = list(range(1, len(profile.backbones)))

    def run(name: str) -> tuple[ExperimentResult, FeatureSet]:
        pool = profile.feature_set(name)
        config = profile.experiment_config(name, methods=methods, top_k=top_k)
        return run_experiment(config, feature_set=pool, progress=False), pool

    return Study.of(profile.datasets, run)


def result_tables(study: Study, baseline: str = "best_fixed") -> list[Any]:
    """Per dataset, a line naming its seeds and test images and its table against ``baseline``."""
    out: list[Any] = []
    for run in study.runs:
        result = run.result
        n_test = len(result.labels[result.seeds[0]]["test"])
        out.append(markdown(f"**{run.dataset}**: {len(result.seeds)} seeds x {n_test:,} test images"))
        out.append(result.table(baseline).rename(index=short_name))
    return out


def c2_values(study: Study, comparisons: pd.DataFrame) -> dict[str, str]:
    """What the text cites of C2: each question's pooled word and difference, and the comparisons read."""
    values = {}
    for key, (a, b) in zip(("fusion", "adapt"), C2_QUESTIONS.values()):
        d = study.pooled(a, b)
        values[f"moe-c2-{key}-word"] = claim_word(d)
        values[f"moe-c2-{key}-number"] = d.text()
    values["moe-c2-n-read"] = str(len(comparisons))
    return values


def comparisons_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Every C2 comparison with its difference, Holm-adjusted p and verdict."""
    shown = comparisons[["dataset", "method", "baseline", "difference (points, 95% CI)", "p_holm", "verdict"]]
    return table(shown, index=["dataset", "method", "baseline"], labels={"p_holm": "p (Holm)"})


def zoo_study(profile: Profile, study: Study) -> Study:
    """Every zoo of the profile on each dataset, zoo by zoo, with the methods the zoo comparisons read
    (``claims.ZOO_METHODS``); the zoo equal to the profile's experts takes ``study``'s runs."""
    runs = profile.zoo_runs(
        study,
        lambda pool, config: run_experiment(config, feature_set=pool, progress=False),
        methods=list(ZOO_METHODS),
    )
    return Study(runs)


def routing_table(study: Study) -> pd.DataFrame:
    """How each of ``ROUTED_GATES`` routes on the test images where the experts disagree, per dataset."""
    return study.routing(ROUTED_GATES)


def disagreement_share(routing: pd.DataFrame) -> dict[str, str]:
    """The share of test images where the experts disagree, per dataset, as the text cites it."""
    share = routing.groupby("dataset", sort=False)["images where experts disagree, %"].first()
    return {"moe-disagree-share": ", ".join(f"{d} {v:.0f}%" for d, v in share.items())}


def routing_views(routing: pd.DataFrame) -> list[pd.DataFrame]:
    """``routing_table`` as three tables (gates by datasets): routed to a right expert, accuracy on
    these images and the gap closed."""
    return [
        routing.pivot_table(index="method", columns="dataset", values=column, aggfunc="first", sort=False)
        .rename_axis(columns=column)
        .round(2)
        for column in ("routes to a right expert, %", "accuracy on these images, %", "gap closed")
    ]


def routing_aucs(profile: Profile, study: Study, seed: int) -> pd.DataFrame:
    """How well each input predicts that each expert is right (``gate_analysis.routing_auc``) on ``seed``,
    per dataset, experts shortened."""
    auc = study.frame(
        lambda run: routing_auc(
            run.pool.draw(seed), run.result.experts[seed], seed, profile.experiment_config(run.dataset).train
        )
    )
    return auc.assign(expert=auc["expert"].map(short_name))


def gap_table(study: Study) -> pd.DataFrame:
    """The share of the averaging-to-oracle gap each of ``GAP_METHODS`` closes, mean over seeds."""
    gap = study.gap_closed(GAP_METHODS)
    return gap.pivot_table(index="method", columns="dataset", values="gap_closed", sort=False).round(3)


def usage_table(study: Study) -> pd.DataFrame:
    """How the gates use their experts (``USAGE``), mean over seeds, per dataset and method."""
    return table(study.mean_metrics(list(USAGE)), index=["dataset", "method"], digits=2, labels=USAGE)


def gate_cost(run: StudyRun[ExperimentResult]) -> tuple[pd.DataFrame, str]:
    """Each backbone's GFLOPs per image beside the largest thumbnail gate's, as shares of the cheapest
    backbone; and the gate's share as the text cites it."""
    m, pool = run.result.metrics, run.pool
    gate_mflops = m[(m["method"] == "moe_thumbnail") & (m["metric"] == "gate_mflops")]["value"].max()
    gflops = pool.backbone_gflops
    cost = pd.DataFrame(
        {
            "model": [*map(short_name, gflops), "thumbnail gate (largest)"],
            "GFLOPs per image": [*gflops.values(), gate_mflops / 1e3],
        }
    )
    cheapest = min(gflops.values())
    cost["share of the cheapest backbone"] = cost["GFLOPs per image"] / cheapest
    shown = table(cost, index="model", percent_columns=["share of the cheapest backbone"], digits=4)
    return shown, f"{100 * gate_mflops / 1e3 / cheapest:.2f}%"


def frontier_table(on_front: pd.DataFrame) -> pd.DataFrame:
    """The points on the accuracy-compute frontier (``moe_figures.frontier_figure``)."""
    return table(
        on_front[["dataset", "label", "k", "gflops", "accuracy"]],
        index=["dataset", "label"],
        percent_columns=["accuracy"],
        labels={"gflops": "GFLOPs / image", "label": "on the frontier"},
    )


def best_fashion(study: Study) -> str:
    """The Fashion-MNIST fusion with the best mean validation accuracy (never one fit on validation nor
    the oracle) and its test accuracy with its 95% CI, as the text cites it."""
    if "fashion_mnist" not in study.datasets:
        return "(Fashion-MNIST is not in this profile)"
    fashion = study.result("fashion_mnist")
    fusions = [m for m in fashion.methods if not m.startswith(SINGLE_PREFIX) and m != "best_single"]
    best = fashion.best_on_validation(fusions)
    acc, lo, hi = fashion.accuracy_ci(best)
    return (
        f"{interval(acc, lo, hi, digits=2)}% test accuracy ({best}, the fusion with "
        "the best mean validation accuracy among those whose weights are fit on train; their "
        "temperatures, alpha, anchor and early stopping are tuned on that validation split, so the pick is "
        "somewhat optimistic, its test accuracy is not; mean over seeds on the 10,000-image official "
        "test set, 95% CI over seeds and images)"
    )
