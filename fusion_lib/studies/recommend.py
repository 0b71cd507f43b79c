"""What to use on a dataset, in one sentence: the cheapest method as good as the best on validation,
confirmed on test against the best single backbone, with the backbones it could do without.

The choice reads validation accuracy only (``recommend``): the best method on validation sets the bar,
and the method with the fewest backbone GFLOPs per image whose validation accuracy is within ``margin``
points of it is recommended. Test data then confirms or questions it: the paired difference to the best
single backbone (``ExperimentResult.compare``, 95% interval over seeds and test images). Where that
interval includes 0, the sentence says nothing is distinguishable and how the interval would narrow with
more images. ``leave_one_out`` refits the recommended method without each of its backbones; a backbone
whose removal costs at most ``margin`` points of validation accuracy could be dropped. ``per_class_changes``
counts, class by class, the test images the recommendation gets right that the best single backbone gets
wrong and the reverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.registry import SINGLE_PREFIX, selectable
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.stats import MARGIN, Difference

BASELINE = "best_single"  # the single backbone chosen on validation, per seed: "the best single backbone"
MORE_DATA = (2, 4)  # folder sizes (multiples of the current one) the sentence projects the interval to


def is_single(method: str) -> bool:
    """Whether ``method`` runs one backbone alone (no fusion)."""
    return method == BASELINE or method.startswith(SINGLE_PREFIX)


@dataclass(frozen=True)
class Recommendation:
    """The choice ``recommend`` made and the evidence for it.

    ``method``: what to use; ``best``: the best method on validation; ``single``: the single backbone
    best on validation; ``compared``: the fusion checked on test against ``BASELINE`` (``method`` when it
    is a fusion, else the best fusion on validation), ``gain`` that difference in points;
    ``candidates``: per candidate its validation accuracy (points), GFLOPs per image and whether it is
    within ``margin`` of the best; ``leave_one_out``: ``leave_one_out``'s table for ``method`` (None when
    not computed); ``n_images``: distinct test images behind ``gain``.
    """

    method: str
    best: str
    single: str
    compared: str
    gain: Difference
    margin: float
    candidates: pd.DataFrame
    n_images: int
    leave_one_out: pd.DataFrame | None = None

    @property
    def distinguishable(self) -> bool:
        """Whether the test interval of ``compared`` against the best single backbone excludes 0."""
        return self.gain.significant

    @property
    def droppable(self) -> list[str]:
        """The backbones ``method`` could drop (``leave_one_out``), none when that was not computed."""
        if self.leave_one_out is None:
            return []
        return list(self.leave_one_out.index[self.leave_one_out["droppable"]])

    def width(self, factor: float = 1.0) -> float:
        """The gain's 95% interval width in points with ``factor`` times the test images: the width now
        scaled by 1 / sqrt(factor), an approximation (it assumes the same per-image spread)."""
        return (self.gain.high - self.gain.low) / math.sqrt(factor)

    def gflops(self, method: str | None = None) -> float:
        """Backbone GFLOPs per image of ``method`` (default: the recommended one)."""
        return float(self.candidates.loc[method or self.method, "GFLOPs / image"])

    def sentence(self) -> str:
        """The recommendation in words: what to use, its gain with interval, cost and droppable backbones."""
        single = _backbone(self.single)
        cost = f"{self.gflops():.2f} GFLOPs per image"
        bar = (
            "best on validation"
            if self.method == self.best
            else f"within {self.margin:g} points of the best method on validation ({self.best})"
        )
        if is_single(self.method):
            head = (
                f"Use the single backbone {_backbone(self.method)} ({cost}): it is the cheapest method {bar}."
            )
            check = (
                f" On test the best fusion on validation, {self.compared}, differs from the best single "
                f"backbone by {self.gain.text()} points (95% CI)"
            )
            if self.gain.low > 0:
                return head + check + ", a gain validation did not show: rerun with more images to decide."
            if not self.distinguishable:
                return head + check + ". " + self._nothing()
            return head + check + ", confirming the choice."
        if self.gain.low > 0:
            drop = self.droppable
            dropping = (
                f" Leaving one out, it could drop {', '.join(map(_backbone, drop))} ({self.margin:g} points of "
                "validation accuracy or less each)."
                if drop
                else " Leaving one out, each of its backbones costs more than "
                f"{self.margin:g} points of validation accuracy."
                if self.leave_one_out is not None
                else ""
            )
            return (
                f"Use {self.method}: the cheapest method {bar}, it beats the best single backbone on test by "
                f"{self.gain.text()} points (95% CI), at {cost}.{dropping}"
            )
        if self.gain.high < 0:
            return (
                f"Use the single backbone {single} ({self.gflops(self.single):.2f} GFLOPs per image): "
                f"{self.method}, the cheapest method {bar}, trails the best single backbone on test by "
                f"{self.gain.text()} points (95% CI)."
            )
        return (
            f"{self._nothing()} {self.method}, the cheapest method {bar} ({cost}), differs from the best "
            f"single backbone on test by {self.gain.text()} points (95% CI). Until more images say otherwise, "
            f"the single backbone {single} ({self.gflops(self.single):.2f} GFLOPs per image) does as well "
            "for less compute."
        )

    def _nothing(self) -> str:
        more = " and ".join(f"about {self.width(f):.1f} with {f} times as many" for f in MORE_DATA)
        return (
            "Nothing is distinguishable on these images: the test interval of fusion against the best "
            f"single backbone includes 0. It is {self.width():.1f} points wide with {self.n_images} test "
            f"images; {more} (an approximation: the width shrinks as 1/sqrt(images))."
        )


def _backbone(method: str) -> str:
    return method.removeprefix(SINGLE_PREFIX)


def candidates(result: ExperimentResult, margin: float = MARGIN) -> pd.DataFrame:
    """Every method a validation choice may pick that reports its compute: mean validation accuracy
    (points), GFLOPs per image and whether it is within ``margin`` of the best, cheapest first. Each
    backbone's own probe stands for the single backbones where the result has them (``best_single``,
    a different backbone per seed, only where it has not); ``best_fixed`` is left out, its candidates
    stand for it."""
    pool = selectable(result.methods)
    if any(m.startswith(SINGLE_PREFIX) for m in pool):
        pool = [m for m in pool if m != BASELINE]
    # best_fixed is a rule (the fixed fusion best on validation, per fit), not a method a user can run;
    # its validation accuracy is its pick's, so the methods it picks among stand for it
    pool = [m for m in pool if m != "best_fixed"] if len(pool) > 1 else pool
    val = result.mean_metric("val_accuracy").reindex(pool) * 100
    gflops = result.mean_metric("gflops_per_image").reindex(pool)
    table = pd.DataFrame({"validation accuracy %": val, "GFLOPs / image": gflops}).dropna()
    if table.empty:
        raise ValueError(
            f"no method with validation accuracy and GFLOPs per image among {result.methods}; run the "
            "single backbones and fusions with the backbones' costs recorded in the FeatureSet."
        )
    best = table["validation accuracy %"].max()
    table["within margin"] = table["validation accuracy %"] >= best - margin
    return table.sort_values(["GFLOPs / image", "validation accuracy %"], ascending=[True, False])


def recommend(
    result: ExperimentResult,
    margin: float = MARGIN,
    leave_one_out: pd.DataFrame | None = None,
) -> Recommendation:
    """The cheapest method within ``margin`` points of the best validation accuracy (ties: the more
    accurate on validation), checked on test against ``BASELINE`` (which ``result`` must have run);
    ``leave_one_out`` is ``leave_one_out``'s table for that method, if computed."""
    if BASELINE not in result.methods:
        raise ValueError(f"recommend compares against {BASELINE!r}; run it (run methods: {result.methods})")
    table = candidates(result, margin)
    method = str(table.index[table["within margin"]][0])
    best = str(table["validation accuracy %"].idxmax())
    singles = table[[is_single(m) for m in table.index]]
    fusions = table[[not is_single(m) for m in table.index]]
    if singles.empty or fusions.empty:
        raise ValueError(
            f"recommend needs single backbones and fusions among the candidates {list(table.index)}"
        )
    compared = str(fusions["validation accuracy %"].idxmax()) if is_single(method) else method
    ids = result.test_ids
    n_images = (
        len(np.unique(np.concatenate(ids)))
        if ids
        else sum(len(result.labels[s]["test"]) for s in result.seeds)
    )
    if leave_one_out is not None and leave_one_out.attrs.get("method") != method:
        leave_one_out = None  # a table of another method says nothing about this one
    return Recommendation(
        method=method,
        best=best,
        single=str(singles["validation accuracy %"].idxmax()),
        compared=compared,
        gain=result.compare(compared, BASELINE),
        margin=margin,
        candidates=table,
        n_images=n_images,
        leave_one_out=leave_one_out,
    )


def leave_one_out(
    result: ExperimentResult,
    pool: FeatureSet,
    config: ExperimentConfig,
    method: str,
    margin: float = MARGIN,
) -> pd.DataFrame:
    """``method`` refit on ``pool`` without each backbone in turn (``config``'s seeds and training):
    per backbone left out, the validation accuracy without it (points), the change against ``result``'s
    and whether it could be dropped (a loss of at most ``margin``). Where one backbone is left, its own
    probe is what remains; ``result``'s ``single:`` row is read where it ran."""
    if is_single(method):
        raise ValueError(f"{method!r} runs one backbone: there is nothing to leave out")
    full = result.mean_metric("val_accuracy")
    if method not in full.index:
        raise ValueError(f"method {method!r} was not run; run methods: {', '.join(result.methods)}")
    rows = {}
    for left_out in pool.backbones:
        rest = [b for b in pool.backbones if b != left_out]
        refit = f"{SINGLE_PREFIX}{rest[0]}" if len(rest) == 1 else method
        if refit in full.index and len(rest) == 1:
            val = float(full[refit])
        else:
            run = replace(config, data=None, methods=[refit], out_dir=None)
            val = float(
                run_experiment(run, pool.subset_backbones(rest), progress=False).mean_metric("val_accuracy")[
                    refit
                ]
            )
        change = 100 * (val - float(full[method]))
        rows[left_out] = {
            "validation accuracy % without it": 100 * val,
            "change (points)": change,
            "droppable": change >= -margin,
        }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("backbone left out")
    table.attrs["method"] = method
    return table


def per_class_changes(
    result: ExperimentResult, method: str, class_names: Sequence[str], baseline: str = BASELINE
) -> pd.DataFrame:
    """Per class, over every seed's test images: how many tests (images x seeds), ``baseline``'s and
    ``method``'s accuracy (%), the images ``method`` gets right that ``baseline`` gets wrong (gained),
    the reverse (lost) and gained minus lost (net), the classes most helped first."""
    labels = np.concatenate([result.labels[s]["test"] for s in result.seeds])
    ours, theirs = (np.concatenate(result.correct(m)) for m in (method, baseline))
    rows = {}
    for c, name in enumerate(class_names):
        mine = labels == c
        gained, lost = int((ours & ~theirs & mine).sum()), int((theirs & ~ours & mine).sum())
        rows[name] = {
            "tests": int(mine.sum()),
            f"{baseline} %": 100 * theirs[mine].mean() if mine.any() else float("nan"),
            f"{method} %": 100 * ours[mine].mean() if mine.any() else float("nan"),
            "gained": gained,
            "lost": lost,
            "net": gained - lost,
        }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("class")
    return table.sort_values("net", ascending=False, kind="stable")
