"""Notebook 03's tables as the page shows them, over its ``Study``: the C2 comparisons, how the gates route
where the experts disagree and use their experts, what the gate costs, the accuracy-compute frontier,
and the best Fashion-MNIST fusion as the text cites it."""

from __future__ import annotations

import pandas as pd

from fusion_lib.book.pages import interval, table
from fusion_lib.data.backbones import short_name
from fusion_lib.studies.runner import ExperimentResult
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


def comparisons_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Every C2 comparison with its difference, Holm-adjusted p and verdict."""
    shown = comparisons[["dataset", "method", "baseline", "difference (points, 95% CI)", "p_holm", "verdict"]]
    return table(shown, index=["dataset", "method", "baseline"], labels={"p_holm": "p (Holm)"})


def disagreement_share(routing: pd.DataFrame) -> dict[str, str]:
    """The share of test images where the experts disagree, per dataset, as the text cites it."""
    share = routing.groupby("dataset", sort=False)["images where experts disagree, %"].first()
    return {"moe-disagree-share": ", ".join(f"{d} {v:.0f}%" for d, v in share.items())}


def routing_views(routing: pd.DataFrame) -> list[pd.DataFrame]:
    """``Study.routing``'s frame as three tables (gates by datasets): routed to a right expert, accuracy on
    these images and the gap closed."""
    return [
        routing.pivot_table(index="method", columns="dataset", values=column, aggfunc="first", sort=False)
        .rename_axis(columns=column)
        .round(2)
        for column in ("routes to a right expert, %", "accuracy on these images, %", "gap closed")
    ]


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


def frontier_table(frontier: pd.DataFrame) -> pd.DataFrame:
    """The points on each dataset's accuracy-compute frontier (``Study.frontier``)."""
    on_front = frontier[frontier["on_frontier"]]
    return table(
        on_front[["dataset", "label", "k", "gflops", "accuracy"]],
        index=["dataset", "label"],
        percent_columns=["accuracy"],
        labels={"gflops": "GFLOPs / image", "label": "on the frontier"},
    )


def best_fashion(study: Study) -> str:
    """The Fashion-MNIST fusion with the best mean validation accuracy (``Study.best_fusion``) and its test
    accuracy with its 95% CI, as the text cites it."""
    if "fashion_mnist" not in study.datasets:
        return "(Fashion-MNIST is not in this profile)"
    best, acc, lo, hi = study.best_fusion("fashion_mnist")
    return (
        f"{interval(acc, lo, hi, digits=2)}% test accuracy ({best}, the fusion with "
        "the best mean validation accuracy among those whose weights are fit on train; their "
        "temperatures, alpha, anchor and early stopping are tuned on that validation split, so the pick is "
        "somewhat optimistic, its test accuracy is not; mean over seeds on the 10,000-image official "
        "test set, 95% CI over seeds and images)"
    )
