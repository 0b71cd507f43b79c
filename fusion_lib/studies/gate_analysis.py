"""What a trained gate does, and whether any gate can win: mean weight per class, each expert's
favourite images, how predictable "expert k is right" is, the share of the
averaging-to-oracle gap a gate closes, and how it routes on the images where the experts disagree."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.gates import FeatureGate, ThumbnailGate, resize_thumbnails
from fusion_lib.fusion.training import TrainConfig, fit_module, predict_in_batches, to_tensors
from fusion_lib.fusion.two_stage import ExpertOutputs
from fusion_lib.studies.runner import ExperimentResult
from fusion_lib.studies.stats import bootstrap_mean_ci


def _check(weights: np.ndarray, n: int | None = None) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"gate weights must be (n_images, n_experts), got shape {w.shape}")
    if n is not None and len(w) != n:
        raise ValueError(f"{len(w)} rows of gate weights but {n} labels; they must be aligned")
    return w


def gate_by_class(
    weights: np.ndarray, labels: np.ndarray, class_names: Sequence[str], expert_names: Sequence[str]
) -> pd.DataFrame:
    """Mean gate weight of each expert over the images of each class (classes x experts)."""
    w = _check(weights, len(labels))
    if w.shape[1] != len(expert_names):
        raise ValueError(f"{w.shape[1]} gate columns but {len(expert_names)} expert names")
    labels = np.asarray(labels)
    rows = [
        w[labels == c].mean(0) if np.any(labels == c) else np.full(w.shape[1], np.nan)
        for c in range(len(class_names))
    ]
    return pd.DataFrame(
        rows, index=pd.Index(class_names, name="class"), columns=pd.Index(expert_names, name="expert")
    )


def favourite_images(weights: np.ndarray, k: int = 6) -> np.ndarray:
    """Row indices of the ``k`` images each expert gets the most weight on: (n_experts, k), best first."""
    w = _check(weights)
    if not 1 <= k <= len(w):
        raise ValueError(f"k must be between 1 and the number of images ({len(w)}), got {k}")
    # stable sort on the negated weights keeps ties in image order, so the choice is reproducible
    return np.argsort(-w, axis=0, kind="stable")[:k].T


def gate_usage(weights: np.ndarray) -> dict[str, float]:
    """How spread the gate's decisions are: the mean of each image's largest weight, and the effective
    number of experts in use, exp(entropy of the mean weight vector) (1 = collapsed onto one expert,
    K = all used equally)."""
    w = _check(weights)
    mean_w = w.mean(0)
    nz = mean_w[mean_w > 0]
    return {
        "mean_max_weight": float(w.max(1).mean()),
        "effective_experts": float(np.exp(-(nz * np.log(nz)).sum())),
    }


def routing_auc(
    fs: FeatureSet,
    experts: ExpertOutputs,
    seed: int = 0,
    train: TrainConfig | None = None,
    thumbnail_size: int | None = None,
) -> pd.DataFrame:
    """Can any gate win? How well the thumbnail alone, and the backbone features, predict "expert k is
    right" on validation images.

    Targets: on the train split, whether each expert's out-of-fold prediction is right; on validation,
    whether its prediction is. Two multi-label models are fit on train and early-stopped on validation
    binary cross-entropy: the thumbnail gate's mini-CNN and the feature gate's MLP, each with one
    logit per expert. Returns the validation ROC AUC per expert and input (0.5: no signal), and the
    expert's validation error rate (an AUC is undefined for an expert that is never wrong).
    """
    train = train or TrainConfig()
    right = {
        s: (experts.log_probs[s].argmax(2) == fs.labels[s][:, None]).astype(np.float32)
        for s in ("train", "val")
    }
    size = thumbnail_size or fs.thumbnail_size

    def thumbs(split: str) -> torch.Tensor:
        return resize_thumbnails(torch.as_tensor(fs.thumbnails[split]), size)

    models = {
        "thumbnail": (
            lambda: ThumbnailGate(len(experts.names), size),
            lambda s: [thumbs(s)],
            lambda m, x: m([], x[0]),
        ),
        "features": (
            lambda: FeatureGate([fs.features["train"][b] for b in experts.names], len(experts.names)),
            lambda s: list(to_tensors([fs.features[s][b] for b in experts.names], torch.device("cpu"))),
            lambda m, x: m(list(x), None),
        ),
    }
    rows = []
    for name, (build, inputs, forward) in models.items():
        # seeded before the model is built: its initial weights must not depend on what trained before
        # (models that an earlier run trained may come from the fit cache instead)
        torch.manual_seed(seed)
        model = build()
        tr = (*inputs("train"), torch.as_tensor(right["train"]))
        va = (*inputs("val"), torch.as_tensor(right["val"]))
        fit_module(
            model,
            lambda m, b: F.binary_cross_entropy_with_logits(forward(m, b[:-1]), b[-1]),
            tr,
            va,
            train,
            seed,
        )
        scores = predict_in_batches(lambda b: forward(model, b), tuple(inputs("val"))).numpy()
        for k, expert in enumerate(experts.names):
            y = right["val"][:, k]
            auc = roc_auc_score(y, scores[:, k]) if 0 < y.sum() < len(y) else float("nan")
            rows.append(
                {"expert": expert, "input": name, "auc": float(auc), "val_error": float(1 - y.mean())}
            )
    return pd.DataFrame(rows)


def gap_closed(
    accuracy: pd.DataFrame, methods: Sequence[str], average: str = "prob_avg", oracle: str = "oracle"
) -> pd.DataFrame:
    """The fraction of the gap between averaging and the oracle that each method closes, per seed.

    ``accuracy`` has columns ``method, seed, value`` (test accuracy); 0 is averaging, 1 the oracle,
    negative values fall below averaging.
    """
    wide = accuracy.pivot_table(index="seed", columns="method", values="value")
    missing = sorted({average, oracle, *methods} - set(wide.columns))
    if missing:
        raise ValueError(f"gap_closed needs the accuracy of {missing}; run those methods too")
    gap = wide[oracle] - wide[average]
    out = pd.DataFrame({m: (wide[m] - wide[average]) / gap.where(gap > 0) for m in methods})
    return out.reset_index().melt(id_vars="seed", var_name="method", value_name="gap_closed")


# what the routing table shows where the experts never disagree on right and wrong
NOTHING_TO_ROUTE = "no image to route"


def disagreement_routing(
    expert_correct: Sequence[np.ndarray],
    gate_weights: Mapping[str, Sequence[np.ndarray]],
    fused_correct: Mapping[str, Sequence[np.ndarray]],
    average: str = "prob_avg",
    image_ids: Sequence[np.ndarray] | None = None,
) -> pd.DataFrame:
    """How gates route on the only images where routing can matter: those where some experts are right
    and some wrong (all seeds pooled, 95% CIs from the hierarchical bootstrap).

    ``expert_correct``: per seed, ``(n, K)`` whether each expert is right on each test image;
    ``gate_weights[method]``: per seed, that method's ``(n, K)`` weights; ``fused_correct[method]``: per
    seed, whether the method's fused answer is right (it must hold every gated method and ``average``).
    One row per gated method, plus ``average`` (its routing rate is the share of right experts, what a
    uniform pick would hit) and the oracle (always right): the share of images with most weight on a
    right expert, the fused accuracy on the disagreement images, and the share of the averaging-to-oracle
    gap closed there (accuracy minus averaging's, over averaging's distance to 100%). Where the experts
    never disagree, every row says ``NOTHING_TO_ROUTE`` and the share is 0.
    """
    seeds = [np.asarray(c, dtype=bool) for c in expert_correct]
    if any(c.ndim != 2 for c in seeds):
        raise ValueError("expert_correct must hold one (n_images, n_experts) array per seed")
    missing = sorted({average, *gate_weights} - set(fused_correct))
    if missing:
        raise ValueError(f"fused_correct lacks {missing}; give every gated method and {average!r}")
    dis = [(c.any(1) & ~c.all(1)) for c in seeds]
    if not any(d.any() for d in dis):
        # an easy folder: every expert right (or wrong) on every test image; the rows say so
        none = {
            "routes to a right expert, %": NOTHING_TO_ROUTE,
            "accuracy on these images, %": NOTHING_TO_ROUTE,
        }
        methods = [average, *gate_weights, "oracle"]
        return pd.DataFrame([{"method": m, **none, "gap closed": np.nan} for m in methods]).assign(
            **{"images where experts disagree, %": 0.0}
        )
    ids = None if image_ids is None else [np.asarray(i)[d] for i, d in zip(image_ids, dis)]

    def ci(per_seed: list[np.ndarray]) -> str:
        mean, low, high = bootstrap_mean_ci([100.0 * v[d] for v, d in zip(per_seed, dis)], image_ids=ids)
        return f"{mean:.1f} [{low:.1f}, {high:.1f}]"

    def acc(per_seed: Sequence[np.ndarray]) -> float:
        return float(np.mean([np.asarray(v, dtype=float)[d].mean() for v, d in zip(per_seed, dis)]))

    share = float(np.mean([d.mean() for d in dis]))
    avg_acc = acc(fused_correct[average])
    rows = [
        {
            "method": average,
            "routes to a right expert, %": ci([c.mean(1) for c in seeds]),
            "accuracy on these images, %": ci([np.asarray(v, float) for v in fused_correct[average]]),
            "gap closed": 0.0,
        }
    ]
    for method, weights in gate_weights.items():
        picked = [c[np.arange(len(c)), _check(w, len(c)).argmax(1)] for c, w in zip(seeds, weights)]
        fused = [np.asarray(v, float) for v in fused_correct[method]]
        rows.append(
            {
                "method": method,
                "routes to a right expert, %": ci([p.astype(float) for p in picked]),
                "accuracy on these images, %": ci(fused),
                "gap closed": (acc(fused) - avg_acc) / (1 - avg_acc) if avg_acc < 1 else float("nan"),
            }
        )
    rows.append(
        {
            "method": "oracle",
            "routes to a right expert, %": "100.0",
            "accuracy on these images, %": "100.0",
            "gap closed": 1.0,
        }
    )
    return pd.DataFrame(rows).assign(**{"images where experts disagree, %": 100 * share})


def disagreement_table(result: ExperimentResult, methods: Sequence[str]) -> pd.DataFrame:
    """``disagreement_routing`` of ``methods`` (gated methods of ``result``) against ``prob_avg``, the
    experts being the calibrated probes the two-stage gates mix."""
    seeds = result.seeds
    missing = [s for s in seeds if s not in result.experts]
    if missing:
        raise ValueError(
            f"no expert outputs for seeds {missing}; run a two-stage method such as moe_thumbnail"
        )
    expert_correct = [
        result.experts[s].log_probs["test"].argmax(2) == result.labels[s]["test"][:, None] for s in seeds
    ]
    gated = {m: [result.outputs[(m, s)].gate_weights for s in seeds] for m in methods}
    no_gate = [m for m, w in gated.items() if any(x is None for x in w)]
    if no_gate:
        raise ValueError(f"methods {no_gate} have no per-image gate weights")
    fused = {m: result.correct(m) for m in [*methods, "prob_avg"]}
    return disagreement_routing(expert_correct, gated, fused, "prob_avg", result.test_ids)


def disagreement_examples(
    result: ExperimentResult, seed: int, method: str = "moe_thumbnail", n: int = 3
) -> pd.DataFrame:
    """Up to ``n`` test images of one seed where the experts disagree (some right, some wrong), drawn at
    random with ``seed``: half (rounded up) among those the gated ``method`` fuses right, the rest among
    those it gets wrong, where there are enough of each. One row per image and expert: ``row`` (the
    image's row in the seed's test split), ``label``, ``expert`` (index), ``prediction`` (the expert's),
    ``right``, ``weight`` (the gate's) and ``fused`` (the mixture's answer)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if seed not in result.experts:
        raise ValueError(f"no expert outputs for seed {seed}; run a two-stage method such as moe_thumbnail")
    out = result.outputs.get((method, seed))
    if out is None or out.gate_weights is None:
        raise ValueError(f"{method!r} has no per-image gate weights on seed {seed}; run a gated mixture")
    labels = result.labels[seed]["test"]
    predictions = result.experts[seed].log_probs["test"].argmax(2)  # (n, K)
    right = predictions == labels[:, None]
    weights = _check(out.gate_weights, len(labels))
    fused = out.predictions("test")
    disagree = right.any(1) & ~right.all(1)
    rng = np.random.default_rng(seed)
    wanted = {True: -(-n // 2), False: n // 2}
    pools = {ok: np.flatnonzero(disagree & ((fused == labels) == ok)) for ok in (True, False)}
    # where one kind is short, the other fills the gallery
    for ok in (True, False):
        spare = len(pools[ok]) - wanted[ok]
        if spare < 0:
            wanted[not ok] += -spare
            wanted[ok] = len(pools[ok])
    rows = np.concatenate(
        [
            np.sort(rng.choice(pools[ok], min(wanted[ok], len(pools[ok])), replace=False))
            for ok in (True, False)
        ]
    ).astype(int)
    k = right.shape[1]
    return pd.DataFrame(
        {
            "row": np.repeat(rows, k),
            "label": np.repeat(labels[rows], k),
            "expert": np.tile(np.arange(k), len(rows)),
            "prediction": predictions[rows].ravel(),
            "right": right[rows].ravel(),
            "weight": weights[rows].ravel(),
            "fused": np.repeat(fused[rows], k),
        }
    )
