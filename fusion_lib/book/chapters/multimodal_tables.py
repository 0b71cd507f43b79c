"""Notebook 05's tables and study runs: the class names and their word vectors, the label-space study's
accuracies and differences, the blend and gate weights, C3, and the zero-shot study, as the page
shows them (one column per dataset, intervals as text, names shortened)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from IPython.display import Markdown

from fusion_lib.book.chapters.multimodal_figures import (
    FAMILIES,
    FUSION_METHODS,
    NO_ZERO_SHOT,
    LabelSpaceView,
    label_space_view,
)
from fusion_lib.book.pages import interval, markdown
from fusion_lib.book.profiles import Profile
from fusion_lib.data.backbones import short_name
from fusion_lib.data.feature_set import SPLITS, FeatureSet
from fusion_lib.fusion.label_space import class_vectors
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_studies import LabelRun, LabelStudies
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
    class_name_table,
    compare,
    cosine_matrix,
    label_embeddings,
    run_zero_shot,
)


def label_inputs(profile: Profile, vectors: Any) -> LabelStudies:
    """Every dataset's cached features, its experiment config with the book's aliases for its class names,
    and its class vectors from ``vectors`` through those aliases: the label-space study, ready to run."""

    def inputs(name: str) -> tuple[str, FeatureSet, ExperimentConfig]:
        fs = profile.feature_set(name)
        return name, fs, profile.experiment_config(name, aliases=aliases_for(fs.class_names))

    return LabelStudies.prepare(map(inputs, profile.datasets), vectors)


def splits_table(label: LabelStudies) -> pd.DataFrame:
    """Classes, images per split and whether the test split is fixed, per dataset."""
    rows = [
        {
            "dataset": r.dataset,
            "classes": r.pool.n_classes,
            "train / val / test per seed": " / ".join(f"{len(r.pool.labels[s]):,}" for s in SPLITS),
            "test split": "official, fixed" if r.pool.fixed_test else "drawn per seed",
        }
        for r in label.runs
    ]
    return pd.DataFrame(rows).set_index("dataset")


def _members(runs: Sequence[LabelRun]) -> str:
    return ", ".join(r.dataset for r in runs)


def word_tables(label: LabelStudies, vectors: Any) -> dict[str, pd.DataFrame]:
    """Per group of datasets sharing their class names, a caption naming the aliases used and the table of
    each class's tokens, the words that got a vector and their nearest words
    (``label_study.class_name_table``)."""
    out = {}
    for names, runs in label.groups().items():
        aliases = runs[0].config.aliases
        caption = f"{_members(runs)}: aliases used {aliases or 'none'}"
        out[caption] = class_name_table(list(names), runs[0].class_vecs, vectors, aliases).set_index("class")
    return out


def alias_effects(label: LabelStudies, vectors: Any) -> tuple[pd.DataFrame, list[str]]:
    """What each alias changes: for every aliased class, the words used, their nearest words and the most
    similar other class, without and with the aliases; and a note for a variant that cannot be built
    (a word with no vector at all, so the alias is required), or "no aliases apply"."""
    rows, notes = [], []
    for names, runs in label.groups().items():
        aliases, members = runs[0].config.aliases, _members(runs)
        for variant, used in (("without aliases", {}), ("with aliases", aliases)):
            if not aliases:
                continue
            try:
                vecs = class_vectors(list(names), vectors, used)
            except KeyError as err:
                notes.append(f"{members} {variant}: {err}")
                continue
            sim = cosine_matrix(vecs, names)
            table = class_name_table(list(names), vecs, vectors, used)
            for i, name in enumerate(names):
                if not [k for k in aliases if k == name or k in table["tokens"][i].split()]:
                    continue
                other = sim.loc[name].drop(name)
                rows.append(
                    {
                        "datasets": members,
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


def class_similarities(label: LabelStudies) -> dict[str, pd.DataFrame]:
    """The cosine matrix of each group's class vectors, keyed by the group's datasets."""
    return {
        _members(runs): cosine_matrix(runs[0].class_vecs, names) for names, runs in label.groups().items()
    }


def expert_order(backbones: Sequence[str]) -> list[str]:
    """The rows of the expert table and figure: the experts (short names), then their average."""
    return [short_name(b) for b in backbones] + ["average"]


def expert_ci(studies: LabelStudies, backbones: Sequence[str]) -> pd.DataFrame:
    """Test accuracy with its 95% CI of every single-backbone head (visual probe, label-space head,
    random-vector head) and of their averages, per dataset; ``backbone`` shortened."""

    def experts_of(study: LabelStudy) -> pd.DataFrame:
        info = study.accuracy[["dataset", "model", "family", "backbone"]].drop_duplicates()
        return info[info["family"].isin(FAMILIES) & info["backbone"].isin([*backbones, "average"])]

    ci = studies.frame(lambda r: accuracy_ci(r.result, experts_of(r.result)["model"].tolist()))
    out = ci.merge(studies.frame(lambda r: experts_of(r.result)), on=["dataset", "model"])
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


def head_differences(studies: LabelStudies, backbones: Sequence[str]) -> pd.DataFrame:
    """Each label-space head against the visual probe and the random-vector head of its backbone, and the
    label-space average against probability averaging and the random-vector average (points, 95% CI)."""
    pairs = [(f"label:{b}", f"{p}:{b}") for b in backbones for p in ("probe", "random")]
    pairs += [("label_space", "prob_avg"), ("label_space", "random_space")]
    diffs = studies.frame(lambda r: compare(r.result, pairs))
    return (
        diffs.assign(a=diffs["a"].map(short_name), b=diffs["b"].map(short_name))
        .pivot(index=["a", "b"], columns="dataset", values="text")
        .reindex(columns=studies.datasets)
        .rename_axis(index=["model", "against"], columns="difference, points [95% CI]")
    )


def fused_ci(studies: LabelStudies) -> pd.DataFrame:
    """Test accuracy with its 95% CI of every fusion of ``FUSION_METHODS``, per dataset."""
    return studies.frame(lambda r: accuracy_ci(r.result, list(FUSION_METHODS)))


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


def c3_values(c3: pd.DataFrame, studies: LabelStudies) -> dict[str, str]:
    """What the page's text cites of C3: its word, its two deciding differences (``c3_verdict``) and the
    number of comparisons read (``c3``: ``LabelStudies.c3_comparisons``)."""
    word, gain, words = studies.c3_verdict()
    return {
        "mm-c3-word": word,
        "mm-c3-gain": gain.text(),
        "mm-c3-words": words.text(),
        "mm-c3-n-read": str(len(c3)),
    }


def c3_table(c3: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """``LabelStudies.c3_comparisons`` with the comparisons as rows and the datasets as columns."""
    return (
        c3.assign(shown=c3["text"] + " " + c3["word"])
        .pivot(index=["a", "b"], columns="dataset", values="shown")
        .reindex(index=list(C3_COMPARISONS), columns=list(datasets))
        .rename_axis(index=["model", "against"], columns="difference, points [95% CI], word (Holm)")
    )


def label_space_runs(studies: LabelStudies) -> tuple[LabelStudies, list[str]]:
    """The datasets the label-space picture can show, and a line for each other one (too few classes)
    saying why it is left out."""
    return studies.with_classes(
        MIN_SPACE_CLASSES, "the picture's plane is the class vectors' first two principal components"
    )


def run_zero_shots(profile: Profile, label: LabelStudies) -> tuple[list[ZeroShotStudy], list[str]]:
    """The zero-shot study of every dataset with enough classes to hold some out (and two to see), and a
    line for each other dataset saying why it has none. No study where no dataset has enough."""
    kept, skipped = label.with_classes(
        MIN_ZERO_SHOT_CLASSES,
        f"zero-shot holds {N_HELD_OUT} classes out and fits its map on at least 2 others",
    )
    zero = [
        run_zero_shot(
            r.pool,
            r.class_vecs,
            profile.seeds_for(r.dataset),
            max_splits=profile.zero_shot_splits,
            progress=False,
        )
        for r in kept.runs
    ]
    return zero, skipped


def zero_shot_table(zero: Sequence[ZeroShotStudy]) -> tuple[pd.DataFrame, pd.DataFrame | Markdown]:
    """Every zero-shot study's summary (the figure reads it) and its display table: each measure in %
    with its 95% CI, chance, the shuffled-vectors null and the permutation p-value. No study: an empty
    summary and, for the table, the sentence saying the study was skipped."""
    if not zero:
        return pd.DataFrame(), markdown(NO_ZERO_SHOT)
    zs = pd.concat([z.summary() for z in zero], ignore_index=True)
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


def zero_shot_values(zs: pd.DataFrame, zero: Sequence[ZeroShotStudy]) -> dict[str, Any]:
    """The page's sentences on the result (``mm-zs-text``), with the numbers of the first zero-shot
    dataset, or saying the study was skipped where there is none: one glued paragraph, so the page
    reads whole whichever it is."""
    if not zero:
        return {"mm-zs-text": markdown(NO_ZERO_SHOT)}
    name = zero[0].dataset
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


def zero_shot_notes(zero: Sequence[ZeroShotStudy]) -> list[str]:
    """A line per zero-shot study: its held-out triples, seeds and training images per seed."""
    return [
        f"{z.dataset}: {len(z.splits)} held-out triples over seeds {z.seeds}; {z.n_train:,} train images per seed"
        for z in zero
    ]


def zero_shot_per_model(zero: Sequence[ZeroShotStudy]) -> pd.DataFrame | Markdown:
    """Each zero-shot measure in % per dataset and model (every backbone's map, and their mean); no
    study: the sentence saying the study was skipped."""
    if not zero:
        return markdown(NO_ZERO_SHOT)
    per_model = pd.concat({z.dataset: 100 * z.per_model() for z in zero}, names=["dataset", "model"])
    return per_model.rename(index=short_name, level="model").rename(columns=ZERO_SHOT_MEASURES).round(1)


def label_space_pictures(
    studies: LabelStudies, seed: int, n_points: int
) -> tuple[list[LabelSpaceView], list[str]]:
    """Per dataset, from one draw of ``seed``'s split: the label space of its test images
    (``multimodal_figures.label_space_view``), and a line on its best label-space head (the mean cosine
    of a test image's embedding to its true class vector and to the other classes', and the learned
    softmax scale)."""
    views, notes = [], []
    for r in studies.runs:
        fs, model = r.pool.draw(seed), r.result.label_models[seed]
        views.append(label_space_view(model, fs, r.class_vecs, n_points, dataset=r.dataset))
        head = best_head(model, fs)
        emb = label_embeddings(model, fs, "test", head)
        cos_true = (emb * r.class_vecs[fs.labels["test"]]).sum(1)
        cos_all = emb @ r.class_vecs.T
        scale = model.heads_[head].log_scale.detach().exp().item()
        notes.append(
            f"{r.dataset} ({short_name(head)}): mean cosine to the true class {cos_true.mean():.3f}, "
            f"to the other classes {(cos_all.sum(1) - cos_true).mean() / (fs.n_classes - 1):.3f}; "
            f"learned softmax scale {scale:.1f}"
        )
    return views, notes
