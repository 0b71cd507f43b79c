"""Zoos of experts: families, diversity, the paired C2 comparison across zoos, and the offline stand-ins."""

import numpy as np
import pytest
from configs import experiment

from fusion_lib.book.profiles import get_profile
from fusion_lib.data import backbones
from fusion_lib.data.checks import ParameterError
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.data.spec import check_input_size
from fusion_lib.studies.agreement import AgreementStudies, family_pairs, run_agreement_study, zoo_summary
from fusion_lib.studies.claims import ZOO_METHODS, ZOO_PAIRS, zoo_table, zoo_verdict
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.runs import StudyRun
from fusion_lib.studies.study import Study

LITE0, LITE1, XCEPTION = "tf_efficientnet_lite0", "tf_efficientnet_lite1", "keras_xception"


def _planted(n=240, classes=4, signal=4.0, seed=0) -> FeatureSet:
    """Two EfficientNets that see the class on the same half of the images, and an Xception that sees it
    on the other half: the same family errs alike, the other family elsewhere."""
    rng = np.random.default_rng(seed)
    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        y = rng.integers(0, classes, n)
        onehot = np.eye(classes)[y] * signal
        first = (rng.random(n) < 0.5)[:, None]
        feats[split] = {
            b: (np.where(mask, onehot, 0) + rng.normal(size=(n, classes))).astype(np.float32)
            for b, mask in ((LITE0, first), (LITE1, first), (XCEPTION, ~first))
        }
        labels[split] = y
    thumbs = {s: np.zeros((n, 3, 8, 8), np.float32) for s in labels}
    return FeatureSet(
        "planted",
        [LITE0, LITE1, XCEPTION],
        [f"k{i}" for i in range(classes)],
        feats,
        labels,
        thumbs,
        indices={s: np.arange(n) for s in labels},
    )


ZOOS = {"one family": [LITE0, LITE1], "two families": [LITE0, XCEPTION]}
CONFIG = experiment(seeds=[0, 1], epochs=30, lr=0.05, batch_size=None)


def test_pairs_of_one_family_agree_more_and_their_zoo_leaves_less_room():
    fs = _planted()
    pools = {z: fs.subset_backbones(m) for z, m in ZOOS.items()}
    studies = AgreementStudies(
        StudyRun("planted", z, run_agreement_study(pool, CONFIG), pool) for z, pool in pools.items()
    )
    pairs = family_pairs([run.result for run in studies.runs]).set_index("pair")
    assert pairs.loc["same family", "kappa"] > pairs.loc["across families", "kappa"] + 0.3
    assert pairs.loc["same family", "pairs"] == 1 and pairs.loc["across families", "pairs"] == 1
    summary = zoo_summary(studies, n_boot=200).set_index("zoo")
    assert list(summary["families"]) == [1, 2]
    assert summary.loc["two families", "oracle_gain_low"] > summary.loc["one family", "oracle_gain_high"]
    assert summary.loc["two families", "double_fault"] < summary.loc["one family", "double_fault"]


def test_c2_across_zoos_is_paired_on_the_same_images():
    fs = _planted()
    config = dict(methods=list(ZOO_METHODS), seeds=[0, 1], epochs=150)
    runs = [
        StudyRun("planted", z, run_experiment(experiment(**config), feature_set=pool), pool)
        for z, pool in ((z, fs.subset_backbones(m)) for z, m in ZOOS.items())
    ]
    study = Study(runs)
    cmp = study.compare_pairs(ZOO_PAIRS)
    assert set(cmp["zoo"]) == set(ZOOS) and len(cmp) == 2 * len(ZOO_PAIRS)
    effect = study.diversity_effect(high="two families", low="one family").set_index(["method", "baseline"])
    # the oracle's and the gate's gain over the best single: large with two families, none with one
    assert effect.loc[("oracle", "best_single"), "verdict"] == "larger"
    assert effect.loc[("moe_thumbnail", "best_single"), "verdict"] == "larger"
    verdict = zoo_verdict(cmp, effect.reset_index(), high="two families", low="one family")
    assert list(verdict.columns) == ["two families zoo", "one family zoo", "larger on two families"]
    by_pair = verdict.reset_index().set_index("comparison")
    assert by_pair.loc["oracle vs best_single", "larger on two families"] == "1 of 1"
    assert by_pair.loc["moe_thumbnail vs best_single", "two families zoo"] == "1 better (of 1)"
    table = zoo_table(cmp, effect.reset_index(), high="two families", low="one family")
    assert list(table.columns) == ["one family", "two families", "two families − one family"]
    shown = table.loc[("planted", "oracle vs best_single"), "two families − one family"]
    assert shown == effect.loc[("oracle", "best_single"), "difference (points, 95% CI)"] + " larger"
    other = _planted(seed=1).subset_backbones(ZOOS["one family"])
    elsewhere = run_experiment(
        experiment(**{**config, "methods": ["best_single", "oracle"]}), feature_set=other
    )
    mixed = Study([runs[1], StudyRun("planted", "one family", elsewhere, other)])
    with pytest.raises(ValueError, match="not tested on the same images"):
        mixed.diversity_effect(high="two families", low="one family", pairs=[("oracle", "best_single")])
    with pytest.raises(ValueError, match="reads one zoo"):
        study.pooled("moe_thumbnail", "best_single")


def test_offline_port_stands_in_only_where_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setattr(backbones.build, "_hub_weights_available", lambda name: False)
    with pytest.warns(UserWarning, match="offline port 'keras_xception'"):
        assert backbones.hub_or_offline("legacy_xception") == "keras_xception"
    assert backbones.hub_or_offline("resnet50") == "resnet50"  # no offline twin: the hub or its error
    with pytest.warns(UserWarning):
        paper = get_profile("paper")
    assert {"keras_xception", "fid_inception_v3"} <= set(paper.backbones)
    assert "fid_inception_v3" in paper.zoos["diverse"]
    monkeypatch.setattr(backbones.build, "_hub_weights_available", lambda name: True)
    assert backbones.hub_or_offline("inception_v3") == "inception_v3"
    assert {"legacy_xception", "inception_v3"} <= set(get_profile("paper").backbones)


def test_a_local_weights_file_counts_as_available(monkeypatch, tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"x")
    monkeypatch.setenv("FUSION_WEIGHTS_INCEPTION_V3", str(path))
    assert backbones.build._hub_weights_available("inception_v3")


def test_zoos_are_validated():
    with pytest.raises(ValueError, match="equal numbers of experts"):
        get_profile("ci", zoos={"a": "tf_efficientnet_lite0", "b": "tf_efficientnet_lite0,squeezenet1_1"})
    with pytest.raises(ValueError, match="at least two zoos"):
        get_profile("ci", zoos={"a": "tf_efficientnet_lite0"})
    with pytest.raises(ValueError, match="unknown backbone"):
        get_profile("ci", zoos={"a": "nonet", "b": "squeezenet1_1"})
    book = get_profile("book")
    assert book.zoos["diverse"] == book.backbones and len(set(map(len, book.zoos.values()))) == 1
    families = {backbones.BACKBONE_CFGS[b].family for b in book.backbones}
    assert len(families) >= 3 and {"keras_xception", "fid_inception_v3"} <= set(book.backbones)


def test_zoos_are_compared_only_on_their_datasets_and_only_those_extract_the_zoos_backbones():
    book = get_profile("book")
    assert book.zoo_dataset_names() == ("cifar_cats_dogs", "digits")
    assert book.backbones_for("digits") == book.all_backbones()
    assert book.backbones_for("fashion_mnist") == book.backbones  # no Lite1/Lite2 on 22,000 images
    with pytest.raises(ValueError, match="not in profile"):
        book.backbones_for("cifar10")
    # explicit datasets are meant for the zoos too, unless zoo_datasets is given with them
    assert get_profile("book", datasets="mnist").zoo_dataset_names() == ("mnist",)
    assert get_profile("ci", zoo_datasets=["digits"]).zoo_dataset_names() == ("digits",)
    with pytest.raises(ValueError, match="not among the profile's datasets"):
        get_profile("ci", zoo_datasets="mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        get_profile("ci", zoo_datasets="nodata")


def test_minimum_input_size_comes_from_the_backbone_config():
    assert backbones.min_input_size("fid_inception_v3") == 75 == backbones.min_input_size("inception_v3")
    assert backbones.min_input_size("keras_xception") == 71 == backbones.min_input_size("legacy_xception")
    with pytest.raises(ParameterError, match="too small for fid_inception_v3: it needs at least 75"):
        check_input_size(64, ["squeezenet1_1", "fid_inception_v3"])
    with pytest.raises(ValueError, match="too small"):
        get_profile("ci", input_size=64)  # its diverse zoo holds the Inception-v3 port
