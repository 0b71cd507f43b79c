"""Every registered method keeps the registry's contract (as scikit-learn's ``check_estimator`` does):
probabilities of the right shape on validation and test, the same outputs on a second fit, nothing read
from the test labels (unless the registry says it reads them), and its class-vector need declared."""

from dataclasses import replace

import numpy as np
import pytest
from configs import experiment
from test_experiment import planted

from fusion_lib.fusion.label_space import class_vectors
from fusion_lib.studies.registry import (
    FAMILIES,
    FIT_ON,
    SINGLE_PREFIX,
    method_info,
    method_names,
    register_method,
    resolve_methods,
    selectable,
)
from fusion_lib.studies.seed_run import SeedRun

FS, VECTORS = planted(sizes=(120, 60, 60))
CLASS_VECS = class_vectors(FS.class_names, VECTORS)
CONFIG = experiment(seeds=[0], epochs=4, top_k=[1])
NAMES = [f"{SINGLE_PREFIX}{b}" for b in FS.backbones] + method_names()


def outputs(fs, name):
    return SeedRun(fs, 0, CONFIG, CLASS_VECS).output(name)


def shuffled_test_labels(fs):
    labels = dict(fs.labels, test=np.random.default_rng(9).permutation(fs.labels["test"]))
    return replace(fs, labels=labels)


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_method_keeps_the_contract(name):
    info = method_info(name)
    assert info.family in FAMILIES and info.fit_on in FIT_ON and info.name == name
    out = outputs(FS, name)
    for split in ("val", "test"):
        n = len(FS.labels[split])
        assert out.predictions(split).shape == (n,)
        if out.probs is not None:
            p = out.probs[split]
            assert p.shape == (n, FS.n_classes) and np.all(p >= 0)
            np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert out.gflops_per_image is None or out.gflops_per_image > 0
    again = outputs(FS, name)  # a fresh run: deterministic
    blind = outputs(shuffled_test_labels(FS), name)  # test labels permuted
    for split in ("val", "test"):
        np.testing.assert_array_equal(again.predictions(split), out.predictions(split))
        if info.fit_on != "labels":  # only the oracle bound may read the labels of the split it predicts
            np.testing.assert_array_equal(blind.predictions(split), out.predictions(split))
            if out.probs is not None:
                np.testing.assert_array_equal(blind.probs[split], out.probs[split])


@pytest.mark.parametrize("name", method_names(needs_class_vectors=True))
def test_methods_that_need_class_vectors_say_so(name):
    with pytest.raises(ValueError, match="class vectors"):
        SeedRun(FS, 0, CONFIG, None).output(name)


def test_methods_that_do_not_need_class_vectors_run_without_them():
    run = SeedRun(FS, 0, CONFIG, None)
    for name in method_names(needs_class_vectors=False):
        assert run.output(name).predictions("test").shape == FS.labels["test"].shape


def test_the_registry_is_the_one_place_names_are_checked():
    assert resolve_methods("all", ["a"]) == ["single:a", *method_names()]
    assert resolve_methods("single_a,prob_avg", ["a"]) == ["single:a", "prob_avg"]
    assert resolve_methods("single_x,prob_avg", None) == "single_x,prob_avg"  # backbones not known yet
    with pytest.raises(ValueError, match="unknown method 'nope'.*valid methods: single:a, best_single"):
        resolve_methods("prob_avg,nope", ["a"])
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['nope'\]"):
        resolve_methods(["nope"], None)
    assert selectable(["prob_avg", "stacking_val", "oracle", "single:a"]) == ["prob_avg", "single:a"]
    visual = method_names(["a"], needs_class_vectors=False)
    assert "label_space" not in visual and visual == [m for m in method_names(["a"]) if m in visual]
    with pytest.raises(ValueError, match="is taken"):
        register_method("prob_avg", family="fixed fusion")
    with pytest.raises(ValueError, match="unknown family"):
        register_method("new", family="magic")
