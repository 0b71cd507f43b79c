"""Notebook 02's agreement studies (``Profile.agreement_studies``, ``Profile.agreement_zoos``), the questions
it reads of them and its page tables, on the ci profile's cached digits features."""

import pandas as pd
import pytest

from fusion_lib.book.chapters import agreement_tables as T
from fusion_lib.book.profiles import get_profile
from fusion_lib.data.backbones import short_name
from fusion_lib.studies import agreement
from fusion_lib.studies.agreement import zoo_summary


@pytest.fixture(scope="module")
def setup():
    P = get_profile("ci", epochs=3)
    pools = P.pools()
    return P, pools, P.agreement_studies(pools)


def test_tables_have_a_row_per_backbone_and_a_column_per_dataset(setup):
    P, pools, studies = setup
    dims = T.dims_table(pools)
    assert list(dims.index) == [short_name(b) for b in P.backbones] and list(dims.columns) == list(P.datasets)
    assert studies.datasets == list(P.datasets) and studies.zoos == ["experts"]
    accuracy, bounds_frame = studies.frames("accuracy", "bounds")
    shown = T.accuracy_table(accuracy, P.backbones, P.datasets)
    assert list(shown.index) == [short_name(b) for b in P.backbones]
    assert all(" ± " in v for v in shown.to_numpy().ravel())
    bounds = T.bounds_table(bounds_frame, P.datasets)
    assert list(bounds.columns) == list(T.BOUNDS.values()) and list(bounds.index) == list(P.datasets)


def test_zoo_studies_reuse_the_experts_study_and_run_the_others(setup):
    P, _, studies = setup
    zoos = P.agreement_zoos(studies)
    assert zoos.zoos == list(P.zoos)
    for zoo, members in P.zoos.items():
        for name in P.datasets:
            study = zoos.get(name, zoo).result
            assert study.backbones == list(members)
            assert (study is studies.get(name).result) == (tuple(members) == tuple(P.backbones))
    shown = T.zoo_table(zoo_summary(zoos, n_boot=200))
    assert shown.index.names == ["dataset", "zoo"] and "oracle gain (points)" in shown.columns
    assert all(v.startswith(("+", "-")) for v in shown["oracle gain (points)"])


def test_candidates_table_marks_the_experts(setup):
    P, _, studies = setup
    name = P.datasets[0]
    run = studies.get(name)
    table = agreement.candidate_summary(run.result, run.pool, P.backbones[:1], name)
    assert list(table["book's experts"]) == ["yes", ""]
    assert table.index.name == f"backbone ({name})" and (table["accuracy"] > 0.2).all()  # chance: 0.1


def test_variation_extremes_name_the_ranges():
    summary = pd.DataFrame({"accuracy": [0.7, 0.9], "agreement": [0.6, 0.8], "oracle_gain": [1.0, 3.0]})
    assert agreement.variation_extremes(summary) == {
        "acc_min": 0.7,
        "acc_max": 0.9,
        "agree_min": 0.6,
        "agree_max": 0.8,
        "gain_max": 3.0,
    }
