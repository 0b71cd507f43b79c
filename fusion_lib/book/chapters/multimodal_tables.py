"""Notebook 05's tables and study runs: the class names and their word vectors, the label-space study's
accuracies and differences, the blend and gate weights, C3, and the zero-shot study, as the page
shows them (one column per dataset, intervals as text, names shortened)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from fusion_lib.book.chapters.multimodal_figures import FAMILIES, FUSION_METHODS, NO_ZERO_SHOT
from fusion_lib.book.pages import interval, markdown
from fusion_lib.book.profiles import Profile
from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.fusion.label_space import class_vectors
from fusion_lib.studies.by_dataset import ByDataset
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_study import (
    C3_COMPARISONS,
    MIN_SPACE_CLASSES,
    MIN_ZERO_SHOT_CLASSES,
    N_HELD_OUT,
    ZERO_SHOT_MEASURES,
    LabelStudy,
    ZeroShotStudy,
    accuracy_ci,
    aliases_for,
    best_head,
    c3_verdict,
    class_name_table,
    compare,
    cosine_matrix,
    label_embeddings,
    run_label_study,
    run_zero_shot,
)
from fusion_lib.studies.stats import family_words


def label_inputs(
    profile: Profile, feature_sets: ByDataset[FeatureSet], vectors: Any
) -> tuple[ByDataset[ExperimentConfig], ByDataset[np.ndarray]]:
    """Per dataset, the experiment config with the book's aliases for its class names, and its class
    vectors from ``vectors`` through those aliases."""
    configs = feature_sets.map(
        lambda name, fs: profile.experiment_config(name, aliases=aliases_for(fs.class_names))
    )
    vecs = feature_sets.map(lambda name, fs: class_vectors(fs.class_names, vectors, configs[name].aliases))
    return configs, vecs


def run_label_studies(
    feature_sets: ByDataset[FeatureSet],
    class_vecs: ByDataset[np.ndarray],
    configs: ByDataset[ExperimentConfig],
) -> ByDataset[LabelStudy]:
    """The label-space study of every dataset (``label_study.run_label_study``)."""
    return feature_sets.map(
        lambda name, fs: run_label_study(fs, class_vecs[name], configs[name], progress=False)
    )


def study_frames(studies: ByDataset[LabelStudy], *parts: str) -> list[pd.DataFrame]:
    """Each named frame of the studies (e.g. "blend", "gates", "curves"), every dataset's rows in one."""
    return [pd.concat([getattr(s, part) for s in studies.values()], ignore_index=True) for part in parts]


def splits_table(feature_sets: ByDataset[FeatureSet]) -> pd.DataFrame:
    """Classes, images per split and whether the test split is fixed, per dataset."""
    rows = [
        {
            "dataset": name,
            "classes": fs.n_classes,
            "train / val / test per seed": " / ".join(f"{len(fs.labels[s]):,}" for s in SPLITS),
            "test split": "official, fixed" if fs.fixed_test else "drawn per seed",
        }
        for name, fs in feature_sets.items()
    ]
    return pd.DataFrame(rows).set_index("dataset")


def class_name_groups(feature_sets: ByDataset[FeatureSet]) -> dict[tuple[str, ...], list[str]]:
    """Datasets grouped by identical class names (they share their class vectors)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, fs in feature_sets.items():
        groups.setdefault(tuple(fs.class_names), []).append(name)
    return groups


def word_tables(
    groups: Mapping[tuple[str, ...], Sequence[str]],
    class_vecs: ByDataset[np.ndarray],
    vectors: Any,
    configs: ByDataset[ExperimentConfig],
) -> dict[str, pd.DataFrame]:
    """Per group of datasets, a caption naming the aliases used and the table of each class's tokens,
    the words that got a vector and their nearest words (``label_study.class_name_table``)."""
    out = {}
    for names, members in groups.items():
        aliases = configs[members[0]].aliases
        caption = f"{', '.join(members)}: aliases used {aliases or 'none'}"
        out[caption] = class_name_table(list(names), class_vecs[members[0]], vectors, aliases).set_index(
            "class"
        )
    return out


def alias_effects(
    groups: Mapping[tuple[str, ...], Sequence[str]], vectors: Any, configs: ByDataset[ExperimentConfig]
) -> tuple[pd.DataFrame, list[str]]:
    """What each alias changes: for every aliased class, the words used, their nearest words and the most
    similar other class, without and with the aliases; and a note for a variant that cannot be built
    (a word with no vector at all, so the alias is required), or "no aliases apply"."""
    rows, notes = [], []
    for names, members in groups.items():
        aliases = configs[members[0]].aliases
        for variant, used in (("without aliases", {}), ("with aliases", aliases)):
            if not aliases:
                continue
            try:
                vecs = class_vectors(list(names), vectors, used)
            except KeyError as err:
                notes.append(f"{', '.join(members)} {variant}: {err}")
                continue
            sim = cosine_matrix(vecs, names)
            table = class_name_table(list(names), vecs, vectors, used)
            for i, name in enumerate(names):
                if not [k for k in aliases if k == name or k in table["tokens"][i].split()]:
                    continue
                other = sim.loc[name].drop(name)
                rows.append(
                    {
                        "datasets": ", ".join(members),
                        "class": name,
                        "variant": variant,
                        "words used": table["words used"][i],
                        "nearest words": table["nearest words"][i],
                        "most similar other class": f"{other.idxmax()} ({other.max():.2f})",
                    }
                )
    columns = ["datasets", "class", "variant", "words used", "nearest words", "most similar other class"]
    if not rows:
        notes.append("no aliases apply")
    return pd.DataFrame(rows, columns=columns).set_index(["datasets", "class", "variant"]), notes


def class_similarities(
    groups: Mapping[tuple[str, ...], Sequence[str]], class_vecs: ByDataset[np.ndarray]
) -> dict[str, pd.DataFrame]:
    """The cosine matrix of each group's class vectors, keyed by the group's datasets."""
    return {
        ", ".join(members): cosine_matrix(class_vecs[members[0]], names) for names, members in groups.items()
    }


def expert_order(backbones: Sequence[str]) -> list[str]:
    """The rows of the expert table and figure: the experts (short names), then their average."""
    return [short_name(b) for b in backbones] + ["average"]


def expert_ci(studies: ByDataset[LabelStudy], backbones: Sequence[str]) -> pd.DataFrame:
    """Test accuracy with its 95% CI of every single-backbone head (visual probe, label-space head,
    random-vector head) and of their averages, per dataset; ``backbone`` shortened."""

    def experts_of(study: LabelStudy) -> pd.DataFrame:
        info = study.accuracy[["dataset", "model", "family", "backbone"]].drop_duplicates()
        return info[info["family"].isin(FAMILIES) & info["backbone"].isin([*backbones, "average"])]

    ci = studies.frame(lambda _, study: accuracy_ci(study, experts_of(study)["model"].tolist()))
    out = ci.merge(studies.frame(lambda _, study: experts_of(study)), on=["dataset", "model"])
    return out.assign(backbone=out["backbone"].map(short_name))


def expert_table(ci: pd.DataFrame, backbones: Sequence[str], datasets: Sequence[str]) -> pd.DataFrame:
    """``expert_ci`` with experts as rows and (dataset, family) as columns."""
    return (
        ci.pivot(index="backbone", columns=["dataset", "family"], values="text")
        .reindex(
            index=expert_order(backbones), columns=pd.MultiIndex.from_product([list(datasets), FAMILIES])
        )
        .rename_axis(index="backbone", columns=["dataset", "test accuracy, % [95% CI]"])
    )


def head_differences(studies: ByDataset[LabelStudy], backbones: Sequence[str]) -> pd.DataFrame:
    """Each label-space head against the visual probe and the random-vector head of its backbone, and the
    label-space average against probability averaging and the random-vector average (points, 95% CI)."""
    pairs = [(f"label:{b}", f"{p}:{b}") for b in backbones for p in ("probe", "random")]
    pairs += [("label_space", "prob_avg"), ("label_space", "random_space")]
    diffs = studies.frame(lambda _, study: compare(study, pairs))
    return (
        diffs.assign(a=diffs["a"].map(short_name), b=diffs["b"].map(short_name))
        .pivot(index=["a", "b"], columns="dataset", values="text")
        .reindex(columns=studies.datasets)
        .rename_axis(index=["model", "against"], columns="difference, points [95% CI]")
    )


def fused_ci(studies: ByDataset[LabelStudy]) -> pd.DataFrame:
    """Test accuracy with its 95% CI of every fusion of ``FUSION_METHODS``, per dataset."""
    return studies.frame(lambda _, study: accuracy_ci(study, list(FUSION_METHODS)))


def fused_table(ci: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """``fused_ci`` with the fusions as rows and the datasets as columns."""
    wide = ci.pivot(index="model", columns="dataset", values="text")
    return wide.loc[list(FUSION_METHODS), list(datasets)].rename_axis(columns="test accuracy, % [95% CI]")


def blend_weights(blends: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """The blend weights chosen on validation, per dataset and seed, for the word vectors and for the
    random-vector control."""
    long = blends.melt(
        id_vars=["dataset", "seed"], value_vars=["weight", "weight_random"], var_name="blend", value_name="w"
    )
    long = long.replace({"blend": {"weight": "blend_label", "weight_random": "blend_random"}})
    wide = long.pivot_table(index="dataset", columns=["blend", "seed"], values="w", sort=False)
    return wide.loc[list(datasets)].round(1)


def gate_shares(gates: pd.DataFrame) -> list[str]:
    """A sentence per (dataset, mixture): the mean weight of its most-used expert and, for the mixture
    with label experts, the label experts' total share (means over seeds)."""
    lines = []
    per_seed = gates.assign(label=gates["expert"].str.startswith("label:"))
    for (name, model), g in per_seed.groupby(["dataset", "model"], sort=False):
        top = g.groupby("seed")["weight"].max()
        line = (
            f"{name} {model}: the most-used expert takes {top.mean():.2f} of the weight on average over seeds"
        )
        if model == "moe_thumbnail_label":
            line += f"; the label experts together take {g[g['label']].groupby('seed')['weight'].sum().mean():.3f}"
        lines.append(line)
    return lines


def c3_comparisons(studies: ByDataset[LabelStudy]) -> pd.DataFrame:
    """C3's comparisons on every dataset (``label_study.compare``), worded as one Holm family
    (``stats.family_words``: ``p_holm``, ``word``)."""
    c3 = studies.frame(lambda _, study: compare(study))
    c3["p_holm"], _, c3["word"] = family_words(c3["diff"], c3["p_value"], c3["p_equivalence"])
    return c3


def c3_values(c3: pd.DataFrame, studies: ByDataset[LabelStudy]) -> dict[str, str]:
    """What the page's text cites of C3: its word, its two deciding differences (``c3_verdict``) and the
    number of comparisons read."""
    word, gain, words = c3_verdict(studies)
    return {
        "mm-c3-word": word,
        "mm-c3-gain": gain.text(),
        "mm-c3-words": words.text(),
        "mm-c3-n-read": str(len(c3)),
    }


def c3_table(c3: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """``c3_comparisons`` with the comparisons as rows and the datasets as columns."""
    return (
        c3.assign(shown=c3["text"] + " " + c3["word"])
        .pivot(index=["a", "b"], columns="dataset", values="shown")
        .reindex(index=list(C3_COMPARISONS), columns=list(datasets))
        .rename_axis(index=["model", "against"], columns="difference, points [95% CI], word (Holm)")
    )


def _too_few_classes(feature_sets: ByDataset[FeatureSet], need: int, why: str) -> dict[str, str]:
    return {
        name: f"{fs.n_classes} classes; {why}, so it needs {need}"
        for name, fs in feature_sets.items()
        if fs.n_classes < need
    }


def zero_shot_skipped(feature_sets: ByDataset[FeatureSet]) -> dict[str, str]:
    """The datasets the zero-shot study leaves out (too few classes), each with the reason."""
    return _too_few_classes(
        feature_sets,
        MIN_ZERO_SHOT_CLASSES,
        f"zero-shot holds {N_HELD_OUT} classes out and fits its map on at least 2 others",
    )


def label_space_skipped(feature_sets: ByDataset[FeatureSet]) -> dict[str, str]:
    """The datasets the label-space picture leaves out (too few classes), each with the reason."""
    return _too_few_classes(
        feature_sets,
        MIN_SPACE_CLASSES,
        "the picture's plane is the class vectors' first two principal components",
    )


def skip_notes(skipped: Mapping[str, str]) -> list[str]:
    """A line per skipped dataset, saying why."""
    return [f"{name}: skipped ({why})" for name, why in skipped.items()]


def run_zero_shots(
    profile: Profile, feature_sets: ByDataset[FeatureSet], class_vecs: ByDataset[np.ndarray]
) -> ByDataset[ZeroShotStudy]:
    """The zero-shot study of every dataset with enough classes to hold some out (and two to see);
    ``zero_shot_skipped`` names the others. Empty where no dataset has enough."""
    skipped = zero_shot_skipped(feature_sets)
    return ByDataset(
        (
            name,
            run_zero_shot(
                fs,
                class_vecs[name],
                profile.seeds_for(name),
                max_splits=profile.zero_shot_splits,
                progress=False,
            ),
        )
        for name, fs in feature_sets.items()
        if name not in skipped
    )


def zero_shot_table(zero: ByDataset[ZeroShotStudy]) -> tuple[pd.DataFrame, pd.DataFrame | Markdown]:
    """Every zero-shot study's summary (the figure reads it) and its display table: each measure in %
    with its 95% CI, chance, the shuffled-vectors null and the permutation p-value. No study: an empty
    summary and, for the table, the sentence saying the study was skipped."""
    if not zero:
        return pd.DataFrame(), markdown(NO_ZERO_SHOT)
    zs = pd.concat([z.summary() for z in zero.values()], ignore_index=True)
    pct = zs[["estimate", "low", "high", "chance", "null_mean", "null_low", "null_high"]] * 100
    shown = pd.DataFrame(
        {
            "dataset": zs["dataset"],
            "measure": zs["measure"].map(ZERO_SHOT_MEASURES),
            "% [95% CI]": [interval(*r) for r in pct[["estimate", "low", "high"]].to_numpy()],
            "chance, %": pct["chance"].map("{:.1f}".format),
            "shuffled vectors, % (mean [95% range])": [
                interval(*r) for r in pct[["null_mean", "null_low", "null_high"]].to_numpy()
            ],
            "p (permutation)": zs["p_value"].map("{:.3f}".format),
        }
    )
    return zs, shown.set_index(["dataset", "measure"])


def zero_shot_values(zs: pd.DataFrame, zero: ByDataset[ZeroShotStudy]) -> dict[str, Any]:
    """The page's sentences on the result (``mm-zs-text``), with the numbers of the first zero-shot
    dataset, or saying the study was skipped where there is none: one glued paragraph, so the page
    reads whole whichever it is."""
    if not zero:
        return {"mm-zs-text": markdown(NO_ZERO_SHOT)}
    name = next(iter(zero))
    first = zs[zs["dataset"] == name].set_index("measure")

    def pct(measure: str, stat: str = "estimate") -> str:
        return f"{100 * float(first.loc[measure, stat]):.1f}"

    text = (
        f"On {name}, the held-out class is ranked first among the three held-out classes for "
        f"{pct('zsl_top1')}% of its images (95% CI {pct('zsl_top1', 'low')} to {pct('zsl_top1', 'high')}%), "
        f"against {pct('zsl_top1', 'null_mean')}% with shuffled class vectors (permutation p = "
        f"{float(first.loc['zsl_top1', 'p_value']):.3f}). Among all classes, the unseen images are "
        f"recognised {pct('gzsl_unseen')}% of the time, and the harmonic mean of seen and unseen accuracy "
        f"is {pct('harmonic')}% (95% CI {pct('harmonic', 'low')} to {pct('harmonic', 'high')}%)."
    )
    # markdown, not Markdown: a dataset given as an ImageFolder path names a folder, which Markdown
    # would try to read
    return {"mm-zs-text": markdown(text)}


def zero_shot_notes(zero: ByDataset[ZeroShotStudy], skipped: Mapping[str, str] | None = None) -> list[str]:
    """A line per zero-shot study (its held-out triples, seeds and training images per seed) and per
    dataset in ``skipped`` (``zero_shot_skipped``: why it has none)."""
    return [
        f"{n}: {len(z.splits)} held-out triples over seeds {z.seeds}; {z.n_train:,} train images per seed"
        for n, z in zero.items()
    ] + skip_notes(skipped or {})


def zero_shot_per_model(zero: ByDataset[ZeroShotStudy]) -> pd.DataFrame | Markdown:
    """Each zero-shot measure in % per dataset and model (every backbone's map, and their mean); no
    study: the sentence saying the study was skipped."""
    if not zero:
        return markdown(NO_ZERO_SHOT)
    per_model = pd.concat({n: 100 * z.per_model() for n, z in zero.items()}, names=["dataset", "model"])
    return per_model.rename(index=short_name, level="model").rename(columns=ZERO_SHOT_MEASURES).round(1)


def label_space_notes(
    studies: ByDataset[LabelStudy],
    drawn: ByDataset[FeatureSet],
    class_vecs: ByDataset[np.ndarray],
    seed: int,
) -> list[str]:
    """Per dataset, for the best label-space head of ``seed``: the mean cosine of a test image's
    embedding to its true class vector and to the other classes', and the learned softmax scale."""
    lines = []
    for name, fs in drawn.items():
        model = studies[name].label_models[seed]
        head = best_head(model, fs)
        emb = label_embeddings(model, fs, "test", head)
        cos_true = (emb * class_vecs[name][fs.labels["test"]]).sum(1)
        cos_all = emb @ class_vecs[name].T
        scale = model.heads_[head].log_scale.detach().exp().item()
        lines.append(
            f"{name} ({short_name(head)}): mean cosine to the true class {cos_true.mean():.3f}, "
            f"to the other classes {(cos_all.sum(1) - cos_true).mean() / (fs.n_classes - 1):.3f}; "
            f"learned softmax scale {scale:.1f}"
        )
    return lines
