"""Notebook 03's study (``Profile.study``, ``Profile.zoo_study`` and the ``Study`` questions it reads) and its
page tables, on the ci profile's cached digits features (one seed)."""

from dataclasses import replace

import pandas as pd
import pytest

from fusion_lib.book.chapters import moe_tables as mt
from fusion_lib.book.profiles import get_profile
from fusion_lib.studies.claims import ZOO_METHODS
from fusion_lib.studies.registry import method_names
from fusion_lib.studies.study import Study


@pytest.fixture(scope="module")
def setup():
    P = get_profile("ci", epochs=2, seeds=1)
    visual = method_names(P.backbones, needs_class_vectors=False)
    return P, P.study(methods=visual, top_k=list(range(1, len(P.backbones))))


def test_results_run_every_visual_method_with_top_k(setup):
    P, study = setup
    result = study.result(P.datasets[0])
    assert result.methods == method_names(P.backbones, needs_class_vectors=False)
    assert set(result.top_k["k"]) == {1}  # every level below the number of experts
    ((caption, shown),) = study.result_tables().items()
    assert "1 seeds x" in caption and isinstance(shown, pd.DataFrame) and "single:lite0" in shown.index


def test_c2_zoo_and_routing_tables(setup):
    P, study = setup
    comparisons = study.compare_pairs()
    values = study.c2_summary(comparisons)
    assert set(values) == {"fusion-word", "fusion-number", "adapt-word", "adapt-number", "n-read"}
    assert values["n-read"] == str(len(comparisons))
    assert mt.comparisons_table(comparisons).index.names == ["dataset", "method", "baseline"]
    zoos = P.zoo_study(study, methods=list(ZOO_METHODS))
    assert zoos.zoos == list(P.zoos) and zoos.datasets == study.datasets
    for zoo, members in P.zoos.items():
        r = zoos.zoo(zoo).result(P.datasets[0])
        assert (r is study.result(P.datasets[0])) == (tuple(members) == tuple(P.backbones))
    assert set(zoos.metrics["zoo"]) == set(P.zoos)
    routing = study.routing(mt.ROUTED_GATES)
    assert set(routing["method"]) - {"prob_avg", "oracle"} == set(mt.ROUTED_GATES)  # with their references
    assert mt.disagreement_share(routing)["moe-disagree-share"].endswith("%")
    assert [v.columns.name for v in mt.routing_views(routing)] == [
        "routes to a right expert, %",
        "accuracy on these images, %",
        "gap closed",
    ]


def test_gates_costs_and_the_best_fusion(setup):
    P, study = setup
    auc = study.routing_aucs(P.seeds[0], P.train_config())
    assert set(auc["expert"]) == {"lite0", "squeezenet"} and auc["auc"].between(0, 1).all()
    assert set(mt.gap_table(study).index) <= set(mt.GAP_METHODS)
    assert list(mt.usage_table(study).columns) == list(mt.USAGE.values())
    cost, share = mt.gate_cost(study.get(P.datasets[0]))
    assert cost.index[-1] == "thumbnail gate (largest)" and share.endswith("%")
    assert mt.best_fashion(study) == "(Fashion-MNIST is not in this profile)"
    fashion = Study([replace(study.get(P.datasets[0]), dataset="fashion_mnist")])
    assert mt.best_fashion(fashion).endswith("95% CI over seeds and images)")
