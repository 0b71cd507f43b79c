"""Notebook 05's tables and study runs, on the ci profile's cached digits features."""

import numpy as np
import pandas as pd
import pytest

from fusion_lib.book import multimodal_tables as mt
from fusion_lib.book.multimodal_figures import FAMILIES, FUSION_METHODS
from fusion_lib.book.profiles import get_profile
from fusion_lib.fusion.label_space import load_vectors
from fusion_lib.studies.label_study import C3_COMPARISONS


@pytest.fixture(scope="module")
def setup():
    P = get_profile("ci", epochs=3, zero_shot_splits=4)
    feature_sets = {name: P.feature_set(name) for name in P.datasets}
    vectors = load_vectors()
    configs, class_vecs = mt.label_inputs(P, feature_sets, vectors)
    studies = mt.run_label_studies(feature_sets, class_vecs, configs)
    return P, feature_sets, vectors, configs, class_vecs, studies


def test_class_names_words_and_aliases(setup):
    P, feature_sets, vectors, configs, class_vecs, _ = setup
    name = P.datasets[0]
    assert class_vecs[name].shape == (feature_sets[name].n_classes, 50)
    groups = mt.class_name_groups({**feature_sets, "copy": feature_sets[name]})
    assert list(groups.values()) == [[name, "copy"]]  # identical class names: one group
    ((caption, words),) = mt.word_tables(
        groups, class_vecs, vectors, configs | {"copy": configs[name]}
    ).items()
    assert caption.startswith(f"{name}, copy: aliases used") and len(words) == feature_sets[name].n_classes
    effects, notes = mt.alias_effects(groups, vectors, configs | {"copy": configs[name]})
    assert len(effects) > 0 or notes == ["no aliases apply"]
    sims = mt.class_similarities(groups, class_vecs)
    assert list(sims) == [f"{name}, copy"] and np.allclose(np.diag(sims[f"{name}, copy"]), 1.0)
    assert list(mt.splits_table(feature_sets).columns) == [
        "classes",
        "train / val / test per seed",
        "test split",
    ]


def test_accuracy_tables_have_a_row_per_model(setup):
    P, *_, studies = setup
    ci = mt.expert_ci(studies, P.backbones)
    shown = mt.expert_table(ci, P.backbones, P.datasets)
    assert list(shown.index) == mt.expert_order(P.backbones)
    assert list(shown.columns.get_level_values(1)) == list(FAMILIES) * len(P.datasets)
    assert shown.notna().all().all(), "every expert of every family has its interval"
    fused = mt.fused_table(mt.fused_ci(studies, P.datasets), P.datasets)
    assert list(fused.index) == list(FUSION_METHODS) and fused.notna().all().all()
    heads = mt.head_differences(studies, P.backbones, P.datasets)
    assert len(heads) == 2 * len(P.backbones) + 2 and heads.notna().all().all()


def test_blends_gates_and_c3(setup):
    P, *_, studies = setup
    blends, gates = mt.study_frames(studies, "blend", "gates")
    weights = mt.blend_weights(blends, P.datasets)
    assert set(weights.columns.get_level_values(0)) == {"blend_label", "blend_random"}
    assert ((weights >= 0) & (weights <= 1)).all().all()
    lines = mt.gate_shares(gates)
    assert len(lines) == 2 * len(P.datasets) and "label experts together take" in lines[-1]
    c3 = mt.c3_comparisons(studies, P.datasets)
    assert (c3["p_holm"] >= c3["p_value"]).all() and c3["word"].isin(
        ["better", "worse", "equivalent", "inconclusive"]
    ).all()
    assert list(mt.c3_table(c3, P.datasets).index) == list(C3_COMPARISONS)
    assert set(mt.c3_values(c3, studies)) == {"mm-c3-word", "mm-c3-gain", "mm-c3-words", "mm-c3-n-read"}


def test_zero_shot_tables(setup):
    P, feature_sets, _, _, class_vecs, studies = setup
    zero = mt.run_zero_shots(P, feature_sets, class_vecs)
    assert list(zero) == list(P.datasets) and len(zero[P.datasets[0]].splits) == 4
    zs, shown = mt.zero_shot_table(zero)
    assert shown.index.names == ["dataset", "measure"] and len(shown) == len(zs)
    values = mt.zero_shot_values(zs, zero)
    assert 0 <= values["mm-zs-zsl_top1-estimate"] <= 100 and mt.zero_shot_values(zs, {}) == {}
    assert mt.zero_shot_notes(zero)[0].startswith(f"{P.datasets[0]}: 4 held-out triples")
    assert isinstance(mt.zero_shot_per_model(zero), pd.DataFrame)
    seed = P.seeds[0]
    drawn = {n: fs.draw(seed) for n, fs in feature_sets.items()}
    (note,) = mt.label_space_notes(studies, drawn, class_vecs, seed)
    assert "mean cosine to the true class" in note and "learned softmax scale" in note
