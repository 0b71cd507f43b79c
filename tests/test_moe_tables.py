"""Notebook 03's tables and study runs, on the ci profile's cached digits features (one seed)."""

from dataclasses import replace

import pandas as pd
import pytest

from fusion_lib.book.chapters import moe_tables as mt
from fusion_lib.book.profiles import get_profile
from fusion_lib.studies.registry import method_names
from fusion_lib.studies.study import Study


@pytest.fixture(scope="module")
def setup():
    P = get_profile("ci", epochs=2, seeds=1)
    return P, mt.run_study(P)


def test_results_run_every_visual_method_with_top_k(setup):
    P, study = setup
    result = study.result(P.datasets[0])
    assert result.methods == method_names(P.backbones, needs_class_vectors=False)
    assert set(result.top_k["k"]) == {1}  # every level below the number of experts
    shown = mt.result_tables(study)
    assert len(shown) == 2 and "1 seeds x" in shown[0].data and isinstance(shown[1], pd.DataFrame)


def test_c2_zoo_and_routing_tables(setup):
    P, study = setup
    comparisons = study.compare_pairs()
    values = mt.c2_values(study, comparisons)
    assert set(values) == {
        "moe-c2-fusion-word",
        "moe-c2-fusion-number",
        "moe-c2-adapt-word",
        "moe-c2-adapt-number",
        "moe-c2-n-read",
    }
    assert mt.comparisons_table(comparisons).index.names == ["dataset", "method", "baseline"]
    zoos = mt.zoo_study(P, study)
    assert zoos.zoos == list(P.zoos) and zoos.datasets == study.datasets
    for zoo, members in P.zoos.items():
        r = zoos.zoo(zoo).result(P.datasets[0])
        assert (r is study.result(P.datasets[0])) == (tuple(members) == tuple(P.backbones))
    assert set(zoos.metrics["zoo"]) == set(P.zoos)
    routing = mt.routing_table(study)
    assert set(routing["method"]) - {"prob_avg", "oracle"} == set(mt.ROUTED_GATES)  # with their references
    assert mt.disagreement_share(routing)["moe-disagree-share"].endswith("%")
    assert [v.columns.name for v in mt.routing_views(routing)] == [
        "routes to a right expert, %",
        "accuracy on these images, %",
        "gap closed",
    ]


def test_gates_costs_and_the_best_fusion(setup):
    P, study = setup
    auc = mt.routing_aucs(P, study, P.seeds[0])
    assert set(auc["expert"]) == {"lite0", "squeezenet"} and auc["auc"].between(0, 1).all()
    assert set(mt.gap_table(study).index) <= set(mt.GAP_METHODS)
    assert list(mt.usage_table(study).columns) == list(mt.USAGE.values())
    cost, share = mt.gate_cost(study.run(P.datasets[0]))
    assert cost.index[-1] == "thumbnail gate (largest)" and share.endswith("%")
    assert mt.best_fashion(study) == "(Fashion-MNIST is not in this profile)"
    fashion = Study([replace(study.run(P.datasets[0]), dataset="fashion_mnist")])
    assert mt.best_fashion(fashion).endswith("95% CI over seeds and images)")
