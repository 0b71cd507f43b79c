"""Accuracy against compute: subset averages chosen on validation, the Pareto frontier and its plot.

A *point* is one way to classify an image at some cost: a single backbone, the probability average
of a subset of backbones, or a gated mixture that runs k backbones per image. Points are rows of a
DataFrame with columns ``label``, ``family``, ``k`` (backbones that run per image; the mean for
top-k gating of a gate that may pick the same backbone twice is still k), ``gflops`` and
``accuracy``, optionally ``low``/``high`` (a 95% CI of the accuracy). ``pareto_mask`` marks the
points that no other point beats on both axes; ``plot_frontier(ax, points)`` draws them all.
Every choice here (the best subset of each size, a setting) is made on validation, never on test.
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Hashable, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.baselines import prob_average
from fusion_lib.studies import metrics as M
from fusion_lib.studies.registry import SINGLE_PREFIX, method_info
from fusion_lib.studies.runner import ExperimentResult

Probs = Mapping[str, np.ndarray]
K = TypeVar("K", bound=Hashable)
POINT_COLUMNS = ["label", "family", "k", "gflops", "accuracy"]
FAMILY_STYLE = {  # marker per family; families not listed get "o"
    "single backbone": "s",
    "subset average": "^",
    "gated mixture": "o",
    "other fusion": "D",
}


def subset_table(probes: Mapping[str, Probs], fs: FeatureSet) -> pd.DataFrame:
    """The probability average of every non-empty subset of the probes' backbones, scored on val and test.

    ``probes[backbone][split]`` are class probabilities (``baselines.fit_single_probes``). One row per
    subset: ``subset`` (a tuple of backbone names in ``fs.backbones`` order), ``size``, ``val_accuracy``,
    ``val_nll``, test ``accuracy`` and ``gflops`` (the sum over the subset's backbones).
    """
    names = [b for b in fs.backbones if b in probes]
    if not names:
        raise ValueError(
            f"subset_table needs probes of the FeatureSet's backbones {fs.backbones}; "
            f"got probes for {list(probes)}"
        )
    missing = [b for b in names if b not in fs.backbone_gflops]
    if missing:
        raise ValueError(f"FeatureSet.backbone_gflops has no cost for {missing}")
    rows = []
    for size in range(1, len(names) + 1):
        for subset in combinations(names, size):
            avg = prob_average({b: probes[b] for b in subset})
            rows.append(
                {
                    "subset": subset,
                    "size": size,
                    "val_accuracy": M.accuracy(fs.labels["val"], avg["val"].argmax(1)),
                    "val_nll": M.log_loss(avg["val"], fs.labels["val"]),
                    "accuracy": M.accuracy(fs.labels["test"], avg["test"].argmax(1)),
                    "gflops": float(sum(fs.backbone_gflops[b] for b in subset)),
                }
            )
    return pd.DataFrame(rows)


def best_subsets(table: pd.DataFrame) -> pd.DataFrame:
    """The row of ``subset_table`` with the best validation accuracy for each size (and seed, if the
    table has a ``seed`` column); ties go to the lower validation NLL, then the cheaper subset."""
    missing = sorted({"subset", "size", "val_accuracy", "val_nll", "gflops"} - set(table.columns))
    if missing:
        raise ValueError(f"table lacks columns {missing}; pass the output of subset_table")
    keys = ["seed", "size"] if "seed" in table.columns else ["size"]
    ranked = table.sort_values(
        ["val_accuracy", "val_nll", "gflops"], ascending=[False, True, True], kind="stable"
    )
    return ranked.groupby(keys, sort=True).head(1).sort_values(keys).reset_index(drop=True)


def best_subset_average(
    probes: Mapping[str, Probs], fs: FeatureSet, size: int
) -> tuple[tuple[str, ...], Probs]:
    """The subset of ``size`` backbones whose probability average is best on validation, and that average."""
    table = subset_table(probes, fs)
    if size not in set(table["size"]):
        raise ValueError(
            f"size must be in [1, {table['size'].max()}] (the number of probed backbones), got {size}"
        )
    subset = best_subsets(table).set_index("size").loc[size, "subset"]
    return subset, prob_average({b: probes[b] for b in subset})


def subset_points(best: pd.DataFrame, names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Frontier points from ``best_subsets``: one per size, test accuracy and GFLOPs averaged over seeds.

    The label names the subset (through ``names``, e.g. short backbone names) when every seed chose the
    same one, else says that the best subset of that size was chosen per seed.
    """
    names = names or {}
    rows = []
    for size, group in best.groupby("size", sort=True):
        chosen = set(group["subset"])
        label = (
            "avg " + "+".join(names.get(b, b) for b in next(iter(chosen)))
            if len(chosen) == 1
            else f"avg, best {size} (per seed)"
        )
        rows.append(
            {
                "label": label,
                "family": "subset average",
                "k": int(size),
                "gflops": float(group["gflops"].mean()),
                "accuracy": float(group["accuracy"].mean()),
            }
        )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def experiment_points(
    result: ExperimentResult, pool: FeatureSet, names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Every frontier point of one dataset's ``run_experiment`` result: the runner's methods
    (``runner_points``, with 95% CIs) and the best subset average of each size, chosen on each seed's
    validation split. ``pool`` is the FeatureSet the result was run on; the single-backbone methods
    (``single:<b>``) must be among the result's methods."""
    missing = [b for b in pool.backbones if f"{SINGLE_PREFIX}{b}" not in result.methods]
    if missing:
        raise ValueError(
            f"subset averages need the single-backbone methods of {missing}; add them to the run"
        )
    tables = []
    for seed in result.seeds:
        probes = {b: result.outputs[(f"{SINGLE_PREFIX}{b}", seed)].probs for b in pool.backbones}
        tables.append(subset_table(probes, pool.draw(seed)).assign(seed=seed))
    subsets = subset_points(best_subsets(pd.concat(tables, ignore_index=True)), names)
    runner = runner_points(result.metrics, len(pool.backbones), result.accuracy_ci, names, result.top_k)
    return pd.concat([runner, subsets], ignore_index=True)


def runner_points(
    metrics: pd.DataFrame,
    n_backbones: int,
    accuracy_ci: Callable[[str], tuple[float, float, float]] | None = None,
    names: Mapping[str, str] | None = None,
    top_k: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Frontier points from ``run_experiment``'s tidy metrics (one dataset), averaged over seeds.

    ``single:<b>`` methods are single backbones (k=1, labelled through ``names``); the registry's gated
    mixtures are soft (k = ``n_backbones``, or the mean ``active_experts`` where reported) and, from
    ``top_k`` (``ExperimentResult.top_k``), at every sparse level k; other methods with a cost are
    "other fusion" with k = ``n_backbones``. The oracle is left out (no method can run it), as are methods without
    ``gflops_per_image``. ``accuracy_ci(method) -> (accuracy, low, high)`` in points (e.g.
    ``ExperimentResult.accuracy_ci``) adds ``low``/``high`` to the soft points.
    """
    missing = sorted({"method", "metric", "value"} - set(metrics.columns))
    if missing:
        raise ValueError(f"metrics lack columns {missing}; pass run_experiment's tidy metrics")
    names = names or {}
    mean = metrics.groupby(["method", "metric"], sort=False)["value"].mean()
    sparse = (
        top_k.groupby(["method", "k"], sort=False)[["accuracy", "gflops_per_image"]].mean()
        if top_k is not None and len(top_k)
        else None
    )
    rows = []
    for method in dict.fromkeys(metrics["method"]):
        got = mean[method]
        if method == "oracle" or "gflops_per_image" not in got or "accuracy" not in got:
            continue
        if method.startswith(SINGLE_PREFIX):
            b = method[len(SINGLE_PREFIX) :]
            family, label, k = "single backbone", names.get(b, b), 1.0
        else:
            family = "gated mixture" if method_info(method).family == "gated mixture" else "other fusion"
            label, k = method, float(got.get("active_experts", n_backbones))
        row = {
            "label": label,
            "family": family,
            "k": k,
            "gflops": got["gflops_per_image"],
            "accuracy": got["accuracy"],
            "low": np.nan,
            "high": np.nan,
        }
        if accuracy_ci is not None:
            _, low, high = accuracy_ci(method)
            row.update(low=low / 100, high=high / 100)
        rows.append(row)
        if sparse is None or method not in sparse.index.get_level_values("method"):
            continue
        for k, point in sparse.loc[method].iterrows():
            rows.append(
                {
                    "label": f"{method} top-{k}",
                    "family": family,
                    "k": float(k),
                    "gflops": point["gflops_per_image"],
                    "accuracy": point["accuracy"],
                    "low": np.nan,
                    "high": np.nan,
                }
            )
    return pd.DataFrame(rows, columns=[*POINT_COLUMNS, "low", "high"])


def choose_on_validation(
    val_scores: Mapping[K, float | Sequence[float]], costs: Mapping[K, float] | None = None
) -> K:
    """The key with the highest validation score (the mean, where a key has one score per seed).

    Ties go to the lower cost in ``costs`` (e.g. a smaller thumbnail), then to the first key. Use it
    for every setting the book picks (thumbnail size, subset, recipe): never pass test scores.
    """
    if not val_scores:
        raise ValueError("choose_on_validation needs at least one candidate")
    means = {k: float(np.mean(v)) for k, v in val_scores.items()}
    if any(np.isnan(m) for m in means.values()):
        raise ValueError(f"validation scores must be numbers, got {means}")
    if costs is not None and set(costs) != set(means):
        raise ValueError(f"costs must have the same keys as val_scores: {sorted(map(str, means))}")
    order = list(means)
    return min(order, key=lambda k: (-means[k], 0.0 if costs is None else costs[k], order.index(k)))


def pareto_mask(gflops: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """True for the points that no other point dominates (at most the cost and at least the accuracy,
    strictly better in one). Equal points are all kept."""
    c, a = np.asarray(gflops, dtype=float), np.asarray(accuracy, dtype=float)
    if c.shape != a.shape or c.ndim != 1:
        raise ValueError(f"gflops and accuracy must be 1-d and aligned, got shapes {c.shape} and {a.shape}")
    if np.isnan(c).any() or np.isnan(a).any():
        raise ValueError("gflops and accuracy must not contain NaN; drop points without a cost first")
    no_worse = (c[None, :] <= c[:, None]) & (a[None, :] >= a[:, None])
    better = (c[None, :] < c[:, None]) | (a[None, :] > a[:, None])
    return ~(no_worse & better).any(axis=1)


def _check_points(points: pd.DataFrame) -> None:
    missing = sorted(set(POINT_COLUMNS) - set(points.columns))
    if missing:
        raise ValueError(
            f"points lack columns {missing}; a point needs {POINT_COLUMNS} (optionally low, high)"
        )
    if points.empty:
        raise ValueError("no points to plot")


def plot_frontier(ax, points: pd.DataFrame, logx: bool = True, annotate: bool = True) -> pd.DataFrame:
    """Every point (marker by ``family``, error bars where ``low``/``high`` are given), the Pareto frontier
    as a staircase, and (``annotate``) the frontier's points labelled with their ``label`` and k (the
    others are too many to name legibly). Returns ``points`` with an ``on_frontier`` column, for the
    caption or a table."""
    _check_points(points)
    pts = points.assign(on_frontier=pareto_mask(points["gflops"], points["accuracy"]))
    for i, (family, group) in enumerate(pts.groupby("family", sort=False)):
        colour = f"C{i}"
        ci = group[group[["low", "high"]].notna().all(axis=1)] if {"low", "high"} <= set(group) else group[:0]
        if len(ci):
            yerr = np.vstack([ci["accuracy"] - ci["low"], ci["high"] - ci["accuracy"]])
            ax.errorbar(
                ci["gflops"], ci["accuracy"], yerr=yerr, fmt="none", ecolor=colour, capsize=3, linewidth=1
            )
        ax.scatter(
            group["gflops"],
            group["accuracy"],
            marker=FAMILY_STYLE.get(family, "o"),
            color=colour,
            label=family,
            zorder=3,
            s=36,
        )
        for _, r in group[group["on_frontier"]].iterrows() if annotate else ():
            ax.annotate(
                f"{r['label']} (k={r['k']:g})",
                (r["gflops"], r["accuracy"]),
                textcoords="offset points",
                xytext=(5, -10),
            )
    front = pts[pts["on_frontier"]].sort_values("gflops")
    # "post": the best accuracy available at a cost of at most x is flat until the next frontier point
    ax.step(
        front["gflops"],
        front["accuracy"],
        where="post",
        color="black",
        linestyle="--",
        linewidth=1,
        label="Pareto frontier",
        zorder=2,
    )
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel="GFLOPs per image" + (" (log scale)" if logx else ""), ylabel="test accuracy")
    ax.legend(loc="lower right")
    return pts
