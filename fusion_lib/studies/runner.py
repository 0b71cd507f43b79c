"""Experiment runner: every fusion method over several seeds on one dataset's cached features.

``run_experiment(config)`` returns an ``ExperimentResult``: a tidy metrics frame with columns
``dataset, method, seed, metric, value`` (test-split metrics unless the metric name says otherwise)
and every method's outputs, so that any two methods can be compared with a paired 95% CI
(``result.compare(a, b)``). Given ``config.out_dir`` it writes ``config.json``, ``results.csv`` and
``results.json`` there. The methods live in ``fusion_lib.studies.methods`` (named in ``registry``), each
seed's models in ``seed_run``, the configuration in
``fusion_lib.studies.config`` and the command line in ``fusion_lib.studies.cli``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion_lib.data.extraction import load_feature_set
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.label_space import class_vectors, load_vectors
from fusion_lib.fusion.two_stage import ExpertOutputs
from fusion_lib.studies import metrics as M
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.registry import MethodOutput, any_needs_class_vectors, resolve_methods, selectable
from fusion_lib.studies.seed_run import EVAL_SPLITS, restrict, seed_loop
from fusion_lib.studies.stats import (
    Difference,
    dataset_stream,
    paired_difference,
    score_table,
)

__all__ = [
    "ExperimentResult",
    "load_features",
    "load_results",
    "run_experiment",
    "save_results",
]
RESULT_COLUMNS = ["dataset", "method", "seed", "metric", "value"]
TOP_K_COLUMNS = ["dataset", "method", "seed", "k", "accuracy", "gflops_per_image"]


def load_features(config: ExperimentConfig) -> FeatureSet:
    """The features of ``config.data`` (``fusion_lib.data.extraction.load_feature_set``, cached on disk),
    extracted on the training device."""

    if config.data is None:
        raise ValueError("config.data is None: give a FeatureSpec, or pass the FeatureSet to run_experiment")
    return load_feature_set(config.data, config.train.device)


def method_metrics(out: MethodOutput, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """The metrics rows of one method's output on one seed whose val and test ``labels`` are given."""
    y_test, y_val = labels["test"], labels["val"]
    res = {
        "accuracy": M.accuracy(y_test, out.predictions("test")),
        "val_accuracy": M.accuracy(y_val, out.predictions("val")),
    }
    if out.probs is not None:
        res.update(
            ece=M.expected_calibration_error(out.probs["test"], y_test),
            nll=M.log_loss(out.probs["test"], y_test),
        )
    if out.gflops_per_image is not None:
        res["gflops_per_image"] = out.gflops_per_image
    top_k = {}  # the CSV's flat names; ExperimentResult.top_k keeps them as fields
    for k, t in out.top_k.items():
        top_k.update({f"accuracy_top{k}": t.accuracy, f"gflops_per_image_top{k}": t.gflops_per_image})
    return {**res, **out.extra, **top_k}


@dataclass
class ExperimentResult:
    """What ``run_experiment`` returns: tidy metrics plus every method's outputs, for paired comparisons.

    ``metrics`` has columns ``dataset, method, seed, metric, value``; ``outputs[(method, seed)]`` holds
    the method's validation and test outputs; ``labels[seed]`` the labels of that seed's split;
    ``experts[seed]`` the calibrated expert outputs the two-stage gates were fit on (where one ran);
    ``image_ids[seed]`` the pool index of each of that seed's test images, so that intervals resample
    an image shared by several seeds (an official test set) jointly (empty: seeds' images distinct).
    """

    metrics: pd.DataFrame
    outputs: dict[tuple[str, int], MethodOutput]
    labels: dict[int, dict[str, np.ndarray]]
    experts: dict[int, ExpertOutputs] = field(default_factory=dict)
    image_ids: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def top_k(self) -> pd.DataFrame:
        """Sparse top-k inference of the gated mixtures that report it: one row per (method, seed, k)
        with test ``accuracy`` and ``gflops_per_image`` (columns ``TOP_K_COLUMNS``)."""
        dataset = self.metrics["dataset"].iat[0] if len(self.metrics) else ""
        rows = [
            (dataset, method, seed, k, t.accuracy, t.gflops_per_image)
            for (method, seed), out in self.outputs.items()
            for k, t in out.top_k.items()
        ]
        return pd.DataFrame(rows, columns=TOP_K_COLUMNS)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.outputs))

    @property
    def seeds(self) -> list[int]:
        return list(self.labels)

    def correct(self, method: str, split: str = "test") -> list[np.ndarray]:
        """One boolean array per seed: whether ``method`` got each image of that seed's split right."""
        if method not in self.methods:
            raise ValueError(f"method {method!r} was not run; run methods: {', '.join(self.methods)}")
        return [self.outputs[(method, s)].predictions(split) == self.labels[s][split] for s in self.seeds]

    @property
    def test_ids(self) -> list[np.ndarray] | None:
        """Per seed, the pool index of each test image (None when the pool did not record them)."""
        return [self.image_ids[s] for s in self.seeds] if len(self.image_ids) == len(self.seeds) else None

    def compare(
        self, method: str, baseline: str, split: str = "test", *, relative: bool = False, offset: int = 0
    ) -> Difference:
        """``method`` minus ``baseline`` accuracy in points (with ``relative``: ``method``'s error reduction
        in percent of ``baseline``'s errors), with a paired 95% CI from the hierarchical bootstrap over
        seeds and test images (``fusion_lib.studies.stats``); ``offset`` shifts the bootstrap stream (a
        reseeding, to see whether a word depends on the draws)."""
        ids = self.test_ids if split == "test" else None
        return paired_difference(
            self.correct(method, split),
            self.correct(baseline, split),
            image_ids=ids,
            seed=self.stream + offset,
            relative=relative,
        )

    @property
    def stream(self) -> int:
        """The bootstrap seed of this dataset's statistics (``stats.dataset_stream``): every comparison on
        it shares one set of draws, and another dataset's are independent of them."""
        return dataset_stream(str(self.metrics["dataset"].iat[0]) if len(self.metrics) else "")

    def best_on_validation(self, candidates: Sequence[str] | None = None) -> str:
        """The candidate (default: every method run) with the best mean validation accuracy over seeds,
        among those a choice on validation may consider (``methods.selectable``: never one fit on
        validation, such as ``stacking_val``, nor the oracle)."""
        pool = selectable(candidates if candidates is not None else self.methods)
        missing = sorted(set(pool) - set(self.methods))
        if missing or not pool:
            raise ValueError(f"cannot choose among {missing or 'no methods'}; run methods: {self.methods}")
        val = self.metrics[(self.metrics["metric"] == "val_accuracy") & self.metrics["method"].isin(pool)]
        return str(val.groupby("method", sort=False)["value"].mean().reindex(pool).idxmax())

    def comparisons(self, baseline: str, methods: Sequence[str] | None = None) -> pd.DataFrame:
        """Every method against ``baseline``: difference, 95% CI, McNemar p (one seed) and display text."""
        rows = []
        for m in methods or [m for m in self.methods if m != baseline]:
            d = self.compare(m, baseline)
            rows.append(
                {
                    "method": m,
                    "baseline": baseline,
                    "diff": d.diff,
                    "low": d.low,
                    "high": d.high,
                    "p_mcnemar": d.p_mcnemar,
                    "n_images": d.n_images,
                    "n_seeds": d.n_seeds,
                    "vs baseline (points, 95% CI)": d.text(),
                }
            )
        return pd.DataFrame(rows)

    def accuracy_ci(self, method: str) -> tuple[float, float, float]:
        """(accuracy, low, high) in points over every seed's test images (hierarchical bootstrap over
        seeds and images)."""
        row = score_table({method: self.correct(method)}, image_ids=self.test_ids, seed=self.stream).iloc[0]
        return float(row["accuracy"]), float(row["low"]), float(row["high"])

    def mean_metric(self, metric: str) -> pd.Series:
        """The mean over seeds of ``metric`` per method (methods without it are left out)."""
        m = self.metrics[self.metrics["metric"] == metric]
        return m.groupby("method", sort=False)["value"].mean()

    def table(self, baseline: str | None = None) -> pd.DataFrame:
        """One row per method: test accuracy with its 95% CI, test NLL (mean over seeds; blank for a
        method without probabilities), mean GFLOPs per image and, given a ``baseline``, the paired
        difference to it (points, 95% CI) with its word, Holm-adjusted over the methods compared."""
        gf, nll = self.mean_metric("gflops_per_image"), self.mean_metric("nll")
        if baseline is not None and baseline not in self.methods:
            raise ValueError(f"method {baseline!r} was not run; run methods: {', '.join(self.methods)}")
        scores = score_table(
            {m: self.correct(m) for m in self.methods}, baseline, image_ids=self.test_ids, seed=self.stream
        )
        rows = []
        for m, s in zip(self.methods, scores.itertuples()):
            row = {
                "method": m,
                "accuracy % (95% CI)": s.text,
                "test NLL": f"{nll[m]:.3f}" if m in nll.index else "",
                "GFLOPs / image": f"{gf[m]:.3f}" if m in gf.index else "",
            }
            if baseline is not None:
                row[f"vs {baseline} (points, 95% CI)"] = s.difference
                row["verdict (Holm)"] = s.word
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")


def run_experiment(
    config: ExperimentConfig,
    feature_set: FeatureSet | None = None,
    word_vectors: Any = None,
    progress: bool = True,
) -> ExperimentResult:
    """Run every method of ``config`` over its seeds (and write the metrics to ``config.out_dir``).

    Features are extracted once for a pool of images (``feature_set``, or loaded from the cache);
    each seed then trains on its own split of that pool, ``pool.draw(seed)``: train and validation
    are re-drawn per seed, and so is the test split where the dataset has no official one.
    A given ``feature_set`` is used as it is when ``config.data`` is None, else restricted to the
    spec's backbones; ``word_vectors`` (gensim KeyedVectors or a word -> vector mapping) replaces
    loading ``config.word_vectors``.
    """
    pool = restrict(feature_set, config) if feature_set is not None else load_features(config)
    methods = resolve_methods(config.methods, pool.backbones)
    class_vecs = None
    if any_needs_class_vectors(methods):
        vectors = word_vectors if word_vectors is not None else load_vectors(config.word_vectors)
        class_vecs = class_vectors(pool.class_names, vectors, config.aliases)
    rows, outputs, labels, experts, image_ids = [], {}, {}, {}, {}
    for run in seed_loop(pool, config, class_vecs, desc="methods", progress=progress):
        labels[run.seed] = {s: run.fs.labels[s] for s in EVAL_SPLITS}
        if run.test_ids is not None:
            image_ids[run.seed] = run.test_ids
        for method in tqdm(methods, desc=f"seed {run.seed}", leave=False, disable=not progress):
            out = outputs[(method, run.seed)] = run.output(method)
            for metric, value in method_metrics(out, run.fs.labels).items():
                rows.append((pool.dataset, method, run.seed, metric, float(value)))
        if "experts" in vars(run):  # only what the seed computed anyway (a cached property)
            experts[run.seed] = run.experts
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if config.out_dir:
        save_results(df, config)
    return ExperimentResult(df, outputs, labels, experts, image_ids)


def save_results(df: pd.DataFrame, config: ExperimentConfig) -> Path:
    """Write config.json, results.csv and results.json into ``config.out_dir``; return the folder."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.to_json())
    df.to_csv(out / "results.csv", index=False)
    df.to_json(out / "results.json", orient="records", indent=1)
    return out


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """Read the results.csv of a run folder."""
    return pd.read_csv(Path(out_dir) / "results.csv")
