"""The label-space study over datasets (``LabelStudies``, ``ZeroShots``) and notebook 05's page helpers,
on the ci profile's cached digits features."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from fusion_lib.book.chapters import multimodal_figures as mf
from fusion_lib.book.chapters import multimodal_tables as mt
from fusion_lib.book.profiles import get_profile
from fusion_lib.fusion.label_space import load_vectors
from fusion_lib.studies.label_studies import LabelRun, LabelStudies, expert_rows
from fusion_lib.studies.label_study import C3_COMPARISONS, FAMILIES, FUSION_METHODS


@pytest.fixture(scope="module")
def setup():
    P = get_profile("ci", epochs=3, zero_shot_splits=4)
    vectors = load_vectors()
    label = P.label_studies(vectors)
    return P, vectors, label, label.run()


def test_class_names_words_and_aliases(setup):
    P, vectors, label, _ = setup
    (run,) = label.runs
    assert run.dataset == P.datasets[0] and run.class_vecs.shape == (run.pool.n_classes, 50)
    with pytest.raises(ValueError, match="has not run yet"):
        _ = run.result
    both = LabelStudies([run, replace(run, dataset="copy")])
    assert [[r.dataset for r in g] for g in both.groups().values()] == [[run.dataset, "copy"]]
    ((caption, words),) = both.word_tables(vectors).items()
    assert caption.startswith(f"{run.dataset}, copy: aliases used") and len(words) == run.pool.n_classes
    effects, notes = both.alias_effects(vectors)
    assert len(effects) > 0 or notes == ["no aliases apply"]
    sims = both.class_similarities()
    key = f"{run.dataset}, copy"
    assert list(sims) == [key] and np.allclose(np.diag(sims[key]), 1.0)
    with pytest.raises(ValueError, match="runs once"):
        LabelStudies([run, run])
    assert list(label.splits().columns) == [
        "classes",
        "train / val / test per seed",
        "test split",
    ]


def test_accuracy_tables_have_a_row_per_model(setup):
    P, *_, studies = setup
    ci = studies.expert_accuracy(P.backbones)
    assert set(ci["family"]) == set(FAMILIES) and ci.groupby("family").size().eq(len(P.backbones) + 1).all()
    shown = studies.expert_table(ci, P.backbones)
    assert list(shown.index) == expert_rows(P.backbones)
    assert list(shown.columns.get_level_values(1)) == list(FAMILIES) * len(P.datasets)
    assert shown.notna().all().all(), "every expert of every family has its interval"
    fused = studies.fusion_table(studies.fusion_accuracy())
    assert list(fused.index) == list(FUSION_METHODS) and fused.notna().all().all()
    heads = studies.head_differences(P.backbones)
    assert len(heads) == 2 * len(P.backbones) + 2 and heads.notna().all().all()


def test_blends_gates_and_c3(setup):
    P, *_, studies = setup
    weights = studies.blend_weights()
    assert set(weights.columns.get_level_values(0)) == {"blend_label", "blend_random"}
    assert ((weights >= 0) & (weights <= 1)).all().all()
    lines = studies.gate_shares()
    assert len(lines) == 2 * len(P.datasets) and "label experts together take" in lines[-1]
    c3 = studies.c3_comparisons()
    assert (c3["p_holm"] >= c3["p_value"]).all() and c3["word"].isin(
        ["better", "worse", "equivalent", "inconclusive"]
    ).all()
    assert list(studies.c3_table(c3).index) == list(C3_COMPARISONS)
    summary = studies.c3_summary(c3)
    assert set(summary) == {"word", "gain", "words", "n-read"} and summary["n-read"] == str(len(c3))


def test_zero_shot_tables(setup):
    P, _, label, studies = setup
    zero = label.zero_shots(P.seeds_for, P.zero_shot_splits)
    assert zero.skipped == ()
    assert zero.datasets == list(P.datasets) and len(zero.studies[0].splits) == 4
    zs, shown = zero.summary, mt.zero_shot_table(zero)
    assert shown.index.names == ["dataset", "measure"] and len(shown) == len(zs)
    text = mt.zero_shot_text(zero)
    first = zs[zs["dataset"] == P.datasets[0]].set_index("measure")
    assert text.data.startswith(
        f"On {P.datasets[0]}, the held-out class is ranked first among the three held-out classes for "
        f"{100 * first.loc['zsl_top1', 'estimate']:.1f}% of its images"
    )
    assert f"permutation p = {first.loc['zsl_top1', 'p_value']:.3f})" in text.data
    assert zero.notes()[0].startswith(f"{P.datasets[0]}: 4 held-out triples")
    assert isinstance(mt.zero_shot_per_model(zero), pd.DataFrame)
    seed = P.seeds[0]
    (view,), (note,) = mf.label_space_pictures(studies, seed, n_points=20)
    assert "mean cosine to the true class" in note and "learned softmax scale" in note
    assert view.dataset == P.datasets[0] and len(view.labels) == 20


def _texts(fig) -> str:
    return " ".join(t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.texts)


def test_two_class_datasets_skip_zero_shot_and_the_picture_saying_why(make_planted):
    """A two-class folder: no zero-shot split exists and two class vectors span no plane, so both are
    skipped with a sentence, and every table, figure and glued text the page needs still exists."""
    import matplotlib.pyplot as plt

    pool = make_planted({"a": 2.0, "b": 1.0}, n_classes=2, class_names=["cat", "dog"])
    sets = LabelStudies(
        [LabelRun("pets", pool, get_profile("ci").experiment_config("digits"), np.eye(2, 50))]
    )
    P = get_profile("ci")
    zero = sets.zero_shots(P.seeds_for, P.zero_shot_splits)
    assert zero.studies == () and zero.summary.empty
    assert (
        zero.notes()
        == list(zero.skipped)
        == [
            "pets: skipped (2 classes; zero-shot holds 3 classes out and fits its map on at least 2 others, "
            "so it needs 5)"
        ]
    )
    assert mt.zero_shot_table(zero).data == mf.NO_ZERO_SHOT
    assert mt.zero_shot_text(zero).data == mf.NO_ZERO_SHOT
    assert mt.zero_shot_per_model(zero).data == mf.NO_ZERO_SHOT
    pictured, space = sets.plane_runs()
    assert len(pictured) == 0 and mf.label_space_pictures(pictured, seed=0, n_points=10) == ([], [])
    assert space == [
        "pets: skipped (2 classes; the picture's plane is the class vectors' first two principal components, so it needs 3)"
    ]
    for fig, sentence in (
        (mf.zero_shot_figure(zero.summary, zero.datasets), mf.NO_ZERO_SHOT),
        (mf.label_space_figure([], seed=0), mf.NO_LABEL_SPACE),
    ):
        assert _texts(fig) == sentence
        plt.close(fig)
