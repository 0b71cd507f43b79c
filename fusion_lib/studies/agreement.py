"""The agreement study: how accurate each backbone's probe is, how often the probes agree, and claim C1
("performance and agreement vary across datasets") tested beyond dataset difficulty."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

from fusion_lib.data.backbones import BACKBONE_CFGS, short_name
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.baselines import best_single
from fusion_lib.studies import metrics as M
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.runs import Runs, StudyRun
from fusion_lib.studies.seed_run import restrict, seed_loop
from fusion_lib.studies.stats import (
    MARGIN,
    N_BOOT,
    bootstrap_mean_ci,
    bootstrap_means,
    bootstrap_p,
    equivalence_p,
    family_words,
    interval,
    paired_difference,
    percentile_interval,
)

PAIRWISE = ("agreement", "kappa", "kappa_correct", "double_fault")
KAPPA_MARGIN = 0.05  # two datasets' kappa_c "equivalent" when their difference's interval lies within this


@dataclass
class AgreementStudy:
    """Tidy results of one dataset over several seeds, on the test split (or the one it was measured on).

    ``accuracy``: (dataset, backbone, seed, accuracy); ``pairs``: (dataset, seed, a, b, agreement, kappa,
    kappa_correct, double_fault) for every ordered pair (``kappa`` on the predicted labels,
    ``kappa_correct`` on correctness, see ``correctness_kappa``); ``bounds``: (dataset, seed, best_single,
    mean_single, oracle) where best_single is the probe chosen on validation. ``correct`` holds, per
    (model, seed), whether each of that seed's test images is classified right (models: every backbone,
    ``best_single``, ``oracle``); ``agree`` per seed the share of backbone pairs that agree on each test
    image; ``test_ids`` per seed the pool indices of its test images (equal ids: the same image), where
    the features carry them.
    """

    accuracy: pd.DataFrame
    pairs: pd.DataFrame
    bounds: pd.DataFrame
    correct: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    agree: dict[int, np.ndarray] = field(default_factory=dict)
    test_ids: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def backbones(self) -> list[str]:
        """The study's backbones, in the order they were fit."""
        return list(dict.fromkeys(self.accuracy["backbone"]))

    @property
    def seeds(self) -> list[int]:
        """The study's seeds, in order."""
        return sorted({s for _, s in self.correct})

    def per_seed(self, model: str) -> list[np.ndarray]:
        """``correct`` of ``model`` for every seed, in seed order."""
        return [c for (m, _), c in sorted(self.correct.items(), key=lambda kv: kv[0][1]) if m == model]

    def image_ids(self) -> list[np.ndarray] | None:
        """``test_ids`` in seed order, for the bootstrap's ``image_ids``; None unless every seed has them."""
        seeds = self.seeds
        return [self.test_ids[s] for s in seeds] if all(s in self.test_ids for s in seeds) else None

    def distinct_pairs(self) -> pd.DataFrame:
        """``pairs`` with each unordered backbone pair once per seed (the ordered row whose ``a`` sorts first)."""
        return self.pairs[self.pairs["a"] < self.pairs["b"]]

    def pair_means(self) -> pd.DataFrame:
        """Each distinct backbone pair's ``PAIRWISE`` measures, mean over seeds: one row per (a, b)."""
        return self.distinct_pairs().groupby(["a", "b"], sort=False)[list(PAIRWISE)].mean()

    def matrix(self, what: str) -> pd.DataFrame:
        """A backbone x backbone matrix of ``what`` (one of PAIRWISE), averaged over seeds."""
        if what not in PAIRWISE:
            raise ValueError(f"unknown pairwise measure {what!r}; valid: {', '.join(PAIRWISE)}")
        order = self.backbones
        m = self.pairs.pivot_table(index="a", columns="b", values=what, aggfunc="mean")
        return m.loc[order, order].rename_axis(index="backbone", columns="backbone")


def run_agreement_study(
    fs: FeatureSet, config: ExperimentConfig, progress: bool = False, split: str = "test"
) -> AgreementStudy:
    """Fit one probe per backbone per seed (``config.expert``, through the fit cache when
    ``config.fit_cache``, so an experiment on the same pool reuses them) and measure accuracy,
    agreement, kappa (on labels and on correctness), double fault and the oracle bound on ``split``
    ("test", or "val" for a choice that must not see test images, such as which experts to use). Each
    seed draws its own split of the pool (``fs.draw``) and records the measured images' pool indices when
    the features carry them."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    fs = restrict(fs, config)
    acc_rows, pair_rows, bound_rows = [], [], []
    correct: dict[tuple[str, int], np.ndarray] = {}
    agree: dict[int, np.ndarray] = {}
    test_ids: dict[int, np.ndarray] = {}
    for run in seed_loop(fs, config, desc="agreement", progress=progress):
        drawn, seed = run.fs, run.seed
        y = drawn.labels[split]
        if split in drawn.indices:
            test_ids[seed] = np.asarray(drawn.indices[split], dtype=np.int64)
        probes = run.probes
        preds = {b: probes[b][split].argmax(1) for b in fs.backbones}
        for b, p in preds.items():
            correct[(b, seed)] = p == y
        chosen = best_single(probes, drawn)
        correct[("best_single", seed)] = correct[(chosen, seed)]
        correct[("oracle", seed)] = np.any([correct[(b, seed)] for b in fs.backbones], axis=0)
        distinct = [(a, b) for i, a in enumerate(fs.backbones) for b in fs.backbones[i + 1 :]]
        if distinct:
            agree[seed] = np.mean([preds[a] == preds[b] for a, b in distinct], axis=0)
        for b, p in preds.items():
            acc_rows.append(
                {"dataset": fs.dataset, "backbone": b, "seed": seed, "accuracy": M.accuracy(y, p)}
            )
        for a in fs.backbones:
            for b in fs.backbones:
                pair_rows.append(
                    {
                        "dataset": fs.dataset,
                        "seed": seed,
                        "a": a,
                        "b": b,
                        "agreement": M.agreement(preds[a], preds[b]),
                        "kappa": M.cohen_kappa(preds[a], preds[b]),
                        "kappa_correct": correctness_kappa(correct[(a, seed)], correct[(b, seed)]),
                        "double_fault": M.double_fault(preds[a], preds[b], y),
                    }
                )
        bound_rows.append(
            {
                "dataset": fs.dataset,
                "seed": seed,
                "best_single": M.accuracy(y, preds[chosen]),
                "best_single_backbone": chosen,
                "mean_single": float(np.mean([M.accuracy(y, p) for p in preds.values()])),
                "oracle": M.oracle_accuracy(preds, y),
            }
        )
    return AgreementStudy(
        pd.DataFrame(acc_rows), pd.DataFrame(pair_rows), pd.DataFrame(bound_rows), correct, agree, test_ids
    )


class AgreementStudies(Runs[StudyRun[AgreementStudy]]):
    """The agreement study of each dataset (and zoo), one ``runs.StudyRun`` each, in order."""


def variation_summary(studies: AgreementStudies, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per dataset, with 95% hierarchical bootstrap intervals over seeds and test images, in percent or
    points: the best single backbone's accuracy (chosen on validation), the share of backbone pairs
    that agree on an image, and the oracle's gain over the best single backbone."""
    rows = []
    for run in studies.one_zoo("the variation summary"):
        name, study = run.dataset, run.result
        boot = {"image_ids": study.image_ids(), "n_boot": n_boot}
        acc = bootstrap_mean_ci([100 * c for c in study.per_seed("best_single")], **boot)
        agree = bootstrap_mean_ci([100 * study.agree[s] for s in sorted(study.agree)], **boot)
        gain = paired_difference(study.per_seed("oracle"), study.per_seed("best_single"), **boot)
        best = study.bounds["best_single_backbone"].mode().iloc[0]
        rows.append(
            {
                "dataset": name,
                "best backbone": best,
                "accuracy": acc[0],
                "accuracy_low": acc[1],
                "accuracy_high": acc[2],
                "agreement": agree[0],
                "agreement_low": agree[1],
                "agreement_high": agree[2],
                "oracle_gain": gain.diff,
                "oracle_gain_low": gain.low,
                "oracle_gain_high": gain.high,
            }
        )
    return pd.DataFrame(rows)


def variation_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``variation_summary`` as the book shows it: one row per dataset, each estimate with its interval."""
    shown = {
        "accuracy": "best single accuracy (%)",
        "agreement": "pairs that agree (%)",
        "oracle_gain": "oracle gain (points)",
    }
    out = pd.DataFrame(
        {"best backbone": summary["best backbone"].map(_short).to_numpy()},
        index=pd.Index(summary["dataset"], name="dataset"),
    )
    for m, label in shown.items():
        out[label] = [
            interval(*r, sign=m == "oracle_gain") for r in summary[[m, f"{m}_low", f"{m}_high"]].values
        ]
    return out


def correctness_kappa(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Kappa on correctness between two classifiers on the same images: how much more often they are both
    right or both wrong (p_o) than independent errors at their accuracies would be,
    p_e = acc_a * acc_b + (1 - acc_a) * (1 - acc_b), as kappa_c = (p_o - p_e) / (1 - p_e).

    0: errors as if independent; 1: right on exactly the same images; negative: right on different images
    more often than chance. Label-level Cohen's kappa rises with accuracy alone (two accurate probes agree
    because both are right); kappa_c does not. 1 when both are always right (or both always wrong), where
    p_e = 1 leaves nothing to discount (as ``metrics.cohen_kappa`` does).
    """
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"correctness_kappa needs two non-empty 1-d arrays of equal length, got shapes {a.shape} and {b.shape}"
        )
    a, b = a.astype(bool), b.astype(bool)
    return float(_kappa_c(np.mean(a == b), a.mean(), b.mean()))


def _kappa_c(p_o: np.ndarray | float, acc_a: np.ndarray | float, acc_b: np.ndarray | float) -> np.ndarray:
    """kappa_c from its rates; elementwise, so bootstrap replicates of the rates give its replicates."""
    p_e = np.asarray(acc_a) * acc_b + (1 - np.asarray(acc_a)) * (1 - np.asarray(acc_b))
    room = 1 - p_e
    return np.where(room > 0, (np.asarray(p_o) - p_e) / np.where(room > 0, room, 1.0), 1.0)


def _seed_mean(per_seed: Sequence[np.ndarray]) -> float:
    return float(np.mean([np.mean(v) for v in per_seed]))


def _shared_backbones(studies: AgreementStudies) -> list[str]:
    """The backbones every study shares, in the first study's order; ValueError unless C1 can compare them."""
    if not studies.runs:
        raise ValueError("C1 needs the agreement study of at least one dataset; got none")
    orders = {r.dataset: r.result.backbones for r in studies.one_zoo("C1")}
    first = next(iter(orders.values()))
    if any(set(order) != set(first) for order in orders.values()):
        raise ValueError(f"C1 compares the same backbones on every dataset; got {orders}")
    if len(first) < 2:
        raise ValueError(f"C1 compares backbones: it needs at least two, got {first}")
    return first


def _need(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: no column(s) {missing}; the frame has {list(frame.columns)}")


def pair_differences(studies: AgreementStudies, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Every backbone pair (a, b), a before b in the backbones' order, on every dataset: the paired accuracy
    difference a - b in points (``diff``, ``low``, ``high``: hierarchical 95% bootstrap over seeds and
    test images, ``stats.paired_difference`` with the study's ``image_ids``) and its ``p_value``.

    D datasets and B backbones make D * B * (B - 1) / 2 comparisons, one row each; their superiority and
    equivalence (TOST at ±``stats.MARGIN`` points) p-values form one Holm family (``stats.family_words``),
    so that reading every row keeps the family-wise error at 5%. ``p_holm`` is the adjusted superiority p;
    ``outcome`` is a's side: "equivalent", "better", "worse" or "inconclusive".
    """
    backbones = _shared_backbones(studies)
    keys, diffs = [], []
    for run in studies.runs:
        dataset, study = run.dataset, run.result
        ids = study.image_ids()
        for a, b in combinations(backbones, 2):
            keys.append((dataset, a, b))
            diffs.append(
                paired_difference(
                    study.per_seed(a), study.per_seed(b), image_ids=ids, n_boot=n_boot, seed=seed
                )
            )
    p_holm, _, words = family_words(
        [d.diff for d in diffs], [d.p_value for d in diffs], [d.p_equivalence() for d in diffs]
    )
    return pd.DataFrame(
        [(*key, d.diff, d.low, d.high, d.p_value, p, w) for key, d, p, w in zip(keys, diffs, p_holm, words)],
        columns=["dataset", "a", "b", "diff", "low", "high", "p_value", "p_holm", "outcome"],
    )


REVERSAL_COLUMNS = (
    "a",
    "b",
    "a_wins_on",
    "a_lead",
    "a_lead_low",
    "a_lead_high",
    "b_wins_on",
    "b_lead",
    "b_lead_low",
    "b_lead_high",
)


def rank_reversals(differences: pd.DataFrame) -> pd.DataFrame:
    """The rank reversals in ``pair_differences``: one row per backbone pair (a, b) and pair of datasets
    where a beats b on one (``a_wins_on``) and b beats a on the other (``b_wins_on``), both comparisons
    surviving Holm. ``a_lead`` (a - b) and ``b_lead`` (b - a) are the winners' leads in points, positive,
    with their 95% intervals."""
    _need(differences, ["dataset", "a", "b", "diff", "low", "high", "outcome"], "rank_reversals")
    rows = []
    for (a, b), g in differences.groupby(["a", "b"], sort=False):
        for _, win in g[g["outcome"] == "better"].iterrows():
            for _, loss in g[g["outcome"] == "worse"].iterrows():
                rows.append(
                    (a, b, win["dataset"], win["diff"], win["low"], win["high"])
                    + (loss["dataset"], -loss["diff"], -loss["high"], -loss["low"])
                )
    return pd.DataFrame(rows, columns=list(REVERSAL_COLUMNS))


def reversal_table(reversals: pd.DataFrame) -> pd.DataFrame:
    """``rank_reversals`` as the book shows it: per backbone pair, where each one wins and by how many
    points (95% interval). Without reversals, one row says so, where a bare header would leave the reader
    to guess whether the table failed to render."""
    _need(reversals, REVERSAL_COLUMNS, "reversal_table")
    if reversals.empty:
        return pd.DataFrame(
            {"first wins on (points ahead)": ["-"], "second wins on (points ahead)": ["-"]},
            index=pd.Index(["none: no pair's rank reverses after Holm"], name="backbones (first vs second)"),
        )
    return pd.DataFrame(
        {
            "first wins on (points ahead)": _leads(reversals, "a"),
            "second wins on (points ahead)": _leads(reversals, "b"),
        },
        index=pd.Index(
            [f"{_short(a)} vs {_short(b)}" for a, b in zip(reversals["a"], reversals["b"])],
            name="backbones (first vs second)",
        ),
    )


def _leads(reversals: pd.DataFrame, side: str) -> list[str]:
    """``"mnist: 1.2 [0.4, 2.0]"`` for each reversal: where ``side`` wins, and its lead."""
    columns = [f"{side}_lead", f"{side}_lead_low", f"{side}_lead_high"]
    return [
        f"{dataset}: {interval(*lead)}"
        for dataset, lead in zip(reversals[f"{side}_wins_on"], reversals[columns].to_numpy())
    ]


def kappa_beyond_accuracy(
    studies: AgreementStudies, *, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Agreement beyond what accuracy implies (``correctness_kappa``), per dataset and between datasets.

    Per dataset (first frame): ``kappa_c``, the mean over the B * (B - 1) / 2 backbone pairs of kappa_c
    computed from the seed-averaged rates (both right or both wrong, each backbone's accuracy), with a 95%
    percentile interval (``low``, ``high``); ``kappa``, the label-level Cohen's kappa, mean over pairs and
    seeds; ``pairs``. Method: ``stats.bootstrap_means`` gives replicates of every rate, resampling seeds
    and test images (by ``image_ids``); one bootstrap seed per dataset makes every rate's replicate i use
    the same resample, so kappa_c is computed replicate by replicate from rates of the same images.

    Between datasets (second frame): for each of the D * (D - 1) / 2 pairs (d1, d2), ``diff`` =
    kappa_c(d1) - kappa_c(d2) with the interval of the replicates' differences (the datasets' images and
    bootstrap seeds are independent, so are their replicates), a two-sided ``stats.bootstrap_p`` and a TOST
    ``p_equivalence`` at ±KAPPA_MARGIN, worded as one Holm family over the dataset pairs
    (``stats.family_words``; ``p_holm`` the adjusted superiority p): ``outcome`` for d1 is "equivalent",
    "higher", "lower" or "inconclusive".
    """
    backbones = _shared_backbones(studies)
    rows, replicates = [], {}
    for i, run in enumerate(studies.runs):
        dataset, study = run.dataset, run.result
        boot = {"image_ids": study.image_ids(), "n_boot": n_boot, "seed": seed + i}
        correct = {b: study.per_seed(b) for b in backbones}
        acc = {b: (_seed_mean(c), bootstrap_means(c, **boot)) for b, c in correct.items()}
        estimates, reps = [], []
        for a, b in combinations(backbones, 2):
            same = [x == y for x, y in zip(correct[a], correct[b])]
            estimates.append(_kappa_c(_seed_mean(same), acc[a][0], acc[b][0]))
            reps.append(_kappa_c(bootstrap_means(same, **boot), acc[a][1], acc[b][1]))
        replicates[dataset] = np.mean(reps, axis=0)
        low, high = percentile_interval(replicates[dataset])
        distinct = study.pairs[study.pairs["a"] != study.pairs["b"]]
        rows.append(
            (dataset, float(np.mean(estimates)), low, high, float(distinct["kappa"].mean()), len(estimates))
        )
    per_dataset = pd.DataFrame(rows, columns=["dataset", "kappa_c", "low", "high", "kappa", "pairs"])
    kc = per_dataset.set_index("dataset")["kappa_c"]
    rows = []
    for d1, d2 in combinations(studies.datasets, 2):
        diff = replicates[d1] - replicates[d2]
        rows.append(
            (
                d1,
                d2,
                float(kc[d1] - kc[d2]),
                *percentile_interval(diff),
                bootstrap_p(diff),
                equivalence_p(diff, KAPPA_MARGIN),
            )
        )
    between = pd.DataFrame(rows, columns=["d1", "d2", "diff", "low", "high", "p_value", "p_equivalence"])
    between["p_holm"], _, words = family_words(between["diff"], between["p_value"], between["p_equivalence"])
    between["outcome"] = [{"better": "higher", "worse": "lower"}.get(w, w) for w in words]
    return per_dataset, between


def kappa_table(per_dataset: pd.DataFrame, between: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``kappa_beyond_accuracy`` as the book shows it: kappa_c per dataset (with label-level kappa beside
    it), and the difference of every pair of datasets with its Holm-adjusted p-value."""
    _need(per_dataset, ["dataset", "kappa_c", "low", "high", "kappa", "pairs"], "kappa_table")
    _need(between, ["d1", "d2", "diff", "low", "high", "p_holm", "outcome"], "kappa_table")
    by_dataset = pd.DataFrame(
        {
            "κ_c, beyond accuracy": [
                interval(*r, digits=2) for r in per_dataset[["kappa_c", "low", "high"]].to_numpy()
            ],
            "Cohen's kappa, labels": per_dataset["kappa"].round(2).to_numpy(),
            "backbone pairs": per_dataset["pairs"].to_numpy(),
        },
        index=pd.Index(per_dataset["dataset"], name="dataset"),
    )
    differences = pd.DataFrame(
        {
            "κ_c difference": [
                interval(*r, digits=2, sign=True) for r in between[["diff", "low", "high"]].to_numpy()
            ],
            "p (Holm)": [f"{p:.2g}" for p in between["p_holm"]],
            "first dataset's κ_c": between["outcome"].to_numpy(),
        },
        index=pd.Index([f"{a} - {b}" for a, b in zip(between["d1"], between["d2"])], name="datasets"),
    )
    return by_dataset, differences


VERDICTS = ("supported", "not supported", "inconclusive")


@dataclass(frozen=True)
class C1Verdict:
    """Claim C1 in one ``word`` (one of VERDICTS), the ``deciding`` numbers, and one ``sentence``."""

    word: str
    deciding: str
    sentence: str


def c1_verdict(differences: pd.DataFrame, per_dataset: pd.DataFrame, between: pd.DataFrame) -> C1Verdict:
    """Claim C1, "performance and agreement vary across datasets", tested beyond dataset difficulty.

    From ``pair_differences`` and ``kappa_beyond_accuracy``. Two parts, each yes, no or open:

    - performance: yes when at least one backbone pair's rank reverses between two datasets with both
      comparisons surviving Holm over all the backbone-pair comparisons (``rank_reversals``): a change of
      difficulty moves every backbone the same way and cannot reorder them. No when every comparison is
      resolved (Holm-significant, or equivalent within ±``stats.MARGIN`` points) and none reverses.
    - agreement beyond accuracy: yes when kappa_c differs between at least one pair of datasets, Holm-adjusted
      over the dataset pairs (so its 95% interval excludes zero): accuracy alone does not set kappa_c. No
      when every pair's interval lies within ±KAPPA_MARGIN.

    "supported" when both parts are yes; "not supported" when either is no; otherwise "inconclusive", as
    with a single dataset. ``deciding`` gives the number of reversals and the comparisons read, and the
    kappa_c of the two datasets that differ most (among those that differ significantly, if any).
    """
    _need(differences, ["dataset", "a", "b", "outcome"], "c1_verdict")
    _need(per_dataset, ["dataset", "kappa_c", "low", "high"], "c1_verdict")
    _need(between, ["d1", "d2", "diff", "low", "high", "p_holm", "outcome"], "c1_verdict")
    if differences.empty:
        raise ValueError("c1_verdict: no backbone-pair comparisons; run pair_differences first")
    datasets = list(dict.fromkeys(differences["dataset"]))
    if len(datasets) < 2:
        return C1Verdict(
            "inconclusive",
            f"one dataset ({datasets[0]}); C1 compares datasets",
            f"C1 inconclusive: this run has one dataset ({datasets[0]}), and C1 compares datasets.",
        )
    reversals, m = rank_reversals(differences), len(differences)
    undecided = int((differences["outcome"] == "inconclusive").sum())
    performance = "yes" if len(reversals) else "open" if undecided else "no"
    significant = between[between["outcome"].isin(["higher", "lower"])]
    agreement = "yes" if len(significant) else "no" if (between["outcome"] == "equivalent").all() else "open"
    word = (
        "supported"
        if performance == agreement == "yes"
        else "not supported"
        if "no" in (performance, agreement)
        else "inconclusive"
    )
    shown = (significant if len(significant) else between).loc[lambda f: f["diff"].abs().idxmax()]
    kappa = per_dataset.set_index("dataset")[["kappa_c", "low", "high"]]
    gap = (
        f"κ_c {interval(*kappa.loc[shown['d1']], digits=2)} on {shown['d1']} vs "
        f"{interval(*kappa.loc[shown['d2']], digits=2)} on {shown['d2']}"
    )
    n = len(reversals)
    count = f"{n} rank reversal{'' if n == 1 else 's'}"
    if performance == "yes":
        r = reversals.loc[np.minimum(reversals["a_lead_low"], reversals["b_lead_low"]).idxmax()]
        part1 = (
            f"{count} {'survives' if n == 1 else 'survive'} Holm over {m} backbone-pair comparisons (e.g. "
            f"{_short(r['a'])} beats {_short(r['b'])} on {r['a_wins_on']} by "
            f"{interval(*r[['a_lead', 'a_lead_low', 'a_lead_high']])} points and trails it on "
            f"{r['b_wins_on']} by {interval(*r[['b_lead', 'b_lead_low', 'b_lead_high']])})"
        )
    elif performance == "no":
        part1 = (
            f"all {m} backbone-pair comparisons are resolved (Holm, or within ±{MARGIN:g} points) and no "
            "pair changes rank"
        )
    else:
        part1 = f"no rank reversal survives Holm over {m} backbone-pair comparisons ({undecided} undecided)"
    part2 = {
        "yes": f"agreement beyond what accuracy implies differs between datasets: {gap} (difference "
        f"{interval(*shown[['diff', 'low', 'high']], digits=2, sign=True)}, Holm p = {shown['p_holm']:.2g})",
        "no": f"agreement beyond accuracy is the same on every dataset within ±{KAPPA_MARGIN:g} ({gap})",
        "open": f"no difference in agreement beyond accuracy between datasets survives Holm ({gap})",
    }[agreement]
    return C1Verdict(
        word,
        f"{count} (Holm, {m} comparisons); {gap}",
        f"C1 {word}: {part1}; {part2}.",
    )


def mean_std(df: pd.DataFrame, by: Sequence[str], value: str, digits: int = 3) -> pd.DataFrame:
    """Mean, std, count ``n`` and a "mean ± std" label of ``value`` per group (std over seeds, ddof=1;
    0 for one seed)."""
    g = df.groupby(list(by), sort=False)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["mean ± std"] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(out["mean"], out["std"])]
    return out


def _short(backbone: str) -> str:
    return short_name(backbone)


def _family(backbone: str) -> str:
    cfg = BACKBONE_CFGS.get(backbone)
    return cfg.family if cfg is not None else backbone


def family_pairs(studies: Sequence[AgreementStudy]) -> pd.DataFrame:
    """Kappa and double fault of every distinct backbone pair met in ``studies`` (each pair once per dataset
    and seed), marked "same family" or "across families" by the backbones' ``BackboneCfg.family``; mean over
    seeds and pairs, per dataset."""
    pairs = pd.concat([s.distinct_pairs() for s in studies], ignore_index=True)
    pairs = pairs.drop_duplicates(["dataset", "seed", "a", "b"])
    same = pairs["a"].map(_family) == pairs["b"].map(_family)
    pairs = pairs.assign(pair=np.where(same, "same family", "across families"))
    out = pairs.groupby(["dataset", "pair"], sort=False)[["kappa", "double_fault"]].mean()
    out["pairs"] = pairs.groupby(["dataset", "pair"], sort=False)[["a", "b"]].apply(
        lambda g: len(g.drop_duplicates())
    )
    return out.reset_index()


def zoo_summary(studies: AgreementStudies, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per dataset and zoo of ``studies``, the mean kappa and double fault over the zoo's distinct backbone
    pairs and seeds, its best single backbone (chosen on validation), its oracle and the oracle's gain over
    the best single with a paired 95% interval over test images and seeds."""
    rows = []
    for dataset in studies.datasets:  # rows by dataset, then zoo, as the book reads them
        for zoo in studies.zoos:
            study = studies.get(dataset, zoo).result
            distinct = study.distinct_pairs()
            gain = paired_difference(
                study.per_seed("oracle"),
                study.per_seed("best_single"),
                image_ids=study.image_ids(),
                n_boot=n_boot,
            )
            rows.append(
                {
                    "dataset": dataset,
                    "zoo": zoo,
                    "families": len({_family(b) for b in study.accuracy["backbone"]}),
                    "kappa": float(distinct["kappa"].mean()),
                    "double_fault": float(distinct["double_fault"].mean()),
                    "best_single": 100 * float(study.bounds["best_single"].mean()),
                    "oracle": 100 * float(study.bounds["oracle"].mean()),
                    "oracle_gain": gain.diff,
                    "oracle_gain_low": gain.low,
                    "oracle_gain_high": gain.high,
                }
            )
    return pd.DataFrame(rows)


def candidate_summary(
    candidates: AgreementStudy, pool: FeatureSet, experts: Sequence[str], dataset: str
) -> pd.DataFrame:
    """Every candidate backbone on ``dataset``: family, mean accuracy (on the study's split), GFLOPs, mean kappa and mean
    double fault with the other candidates, and whether it is one of the book's ``experts``."""
    kappa, fault = candidates.matrix("kappa"), candidates.matrix("double_fault")
    others = ~np.eye(len(kappa), dtype=bool)  # every pair but a backbone with itself
    order = list(kappa.index)
    frame = pd.DataFrame(
        {
            "family": [BACKBONE_CFGS[b].family for b in order],
            "accuracy": candidates.accuracy.groupby("backbone")["accuracy"].mean()[order].to_numpy(),
            "GFLOPs": [pool.backbone_gflops[b] for b in order],
            "mean kappa with the others": kappa.where(others).mean(axis=1).to_numpy(),
            "mean double fault with the others": fault.where(others).mean(axis=1).to_numpy(),
            "book's experts": ["yes" if b in experts else "" for b in order],
        },
        index=pd.Index([short_name(b) for b in order], name=f"backbone ({dataset})"),
    )
    return frame.round(3)


def variation_extremes(summary: pd.DataFrame) -> dict[str, float]:
    """The ranges the page's text cites from ``agreement.variation_summary``: accuracy and agreement
    (lowest and highest over datasets) and the largest oracle gain."""
    return {
        "acc_min": float(summary["accuracy"].min()),
        "acc_max": float(summary["accuracy"].max()),
        "agree_min": float(summary["agreement"].min()),
        "agree_max": float(summary["agreement"].max()),
        "gain_max": float(summary["oracle_gain"].max()),
    }
