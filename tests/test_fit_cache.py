"""The fit cache (``fusion_lib.studies.fit_cache``): a second run loads every fit, trains nothing and gives
the same numbers as a run without the cache; anything that changes a fit changes its key; an unreadable
entry warns and is fit again; two threads asking for one fit at once fit it once; with the cache off
nothing is written."""

from __future__ import annotations

import copy
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_experiment import NAMES, planted, small_config

from fusion_lib.book.profiles import get_profile
from fusion_lib.data.cache import CorruptCacheWarning
from fusion_lib.fusion import baselines, training
from fusion_lib.fusion.label_space import class_vectors
from fusion_lib.studies import fit_cache
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_study import run_label_study
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.seed_run import SeedRun

# Methods that between them fit every cached kind: probes, out-of-fold probes, two-stage gates (static,
# noisy, and moe_thumbnail's through blend_label), jointly trained mixtures (with and without label
# experts) and the label-space model.
METHODS = (
    "single:a,stacking,moe_static,moe_thumbnail_noisy,moe_thumbnail_joint,moe_thumbnail_label,blend_label"
)


@pytest.fixture
def fits(tmp_path, monkeypatch) -> Path:
    """An empty cache folder as ``$FUSION_CACHE``; returns where the fit entries go."""
    monkeypatch.setenv("FUSION_CACHE", str(tmp_path))
    return tmp_path / "fits"


def _experiment(**settings) -> ExperimentResult:
    fs, vectors = planted()
    config = small_config(methods=METHODS, seeds=[0], epochs=5, **settings)
    return run_experiment(config, feature_set=fs, word_vectors=vectors, progress=False)


def _no_training(monkeypatch) -> None:
    """Every model of fusion_lib trains through training._fit: make it fail."""

    def fail(*args, **kwargs):
        raise AssertionError("a model was trained")

    monkeypatch.setattr(training, "_fit", fail)


def _assert_same(a: ExperimentResult, b: ExperimentResult) -> None:
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
    assert a.outputs.keys() == b.outputs.keys()
    for key, out in a.outputs.items():
        other = b.outputs[key]
        for split in ("val", "test"):
            np.testing.assert_array_equal(out.probs[split], other.probs[split], err_msg=f"{key} {split}")
        if out.gate_weights is not None:
            np.testing.assert_array_equal(out.gate_weights, other.gate_weights, err_msg=str(key))


def _probes(fs, seed: int, config: ExperimentConfig) -> dict[str, dict[str, np.ndarray]]:
    return SeedRun(fs, seed, config, None).probes


def _count(monkeypatch, module, name: str) -> list[int]:
    """Wrap ``module.name`` so that each call appends to the returned list."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _changed(fs, change: str):
    out = copy.deepcopy(fs)
    if change == "one feature value":
        out.features["val"]["b"][3, 2] += 1e-3
    elif change == "one thumbnail pixel":
        out.thumbnails["test"][0, 1, 2, 3] += 1e-3
    elif change == "one label":
        out.labels["train"][0] = (out.labels["train"][0] + 1) % len(NAMES)
    elif change == "a class name":
        out.class_names = ["cat", "dog", "shark"]
    return out


def test_second_run_loads_every_fit_with_the_numbers_of_a_run_without_cache(fits, monkeypatch):
    plain = _experiment()
    assert not fits.exists()  # the cache is off by default
    first = _experiment(fit_cache=True)
    kinds = {p.name.split("-")[0] for p in fits.glob("*.pkl")}
    assert kinds == {"probe", "oof_probe", "two_stage", "moe", "label_model", "concat", "stacking"}
    _no_training(monkeypatch)
    second = _experiment(fit_cache=True)
    _assert_same(first, plain)
    _assert_same(second, plain)


def test_label_study_loads_its_fits_and_the_control_model(fits, monkeypatch):
    fs, vectors = planted()
    vecs = class_vectors(NAMES, vectors)
    config = small_config(seeds=[0], epochs=5, fit_cache=True)
    first = run_label_study(fs, vecs, config, progress=False)
    _no_training(monkeypatch)
    second = run_label_study(fs, vecs, config, progress=False)
    for part in ("accuracy", "gates", "blend", "curves"):
        pd.testing.assert_frame_equal(getattr(first, part), getattr(second, part), check_exact=True)
    assert first.correct.keys() == second.correct.keys()
    for key, hits in first.correct.items():
        np.testing.assert_array_equal(hits, second.correct[key])


# how many of the two backbones' probes a change refits: a probe reads its own backbone's features and
# the labels, never the thumbnails
@pytest.mark.parametrize(
    "change, refit",
    [("one feature value", 1), ("one thumbnail pixel", 0), ("one label", 2), ("a class name", 2)],
)
def test_any_change_to_what_a_probe_reads_is_a_new_key(fits, monkeypatch, change, refit):
    fs, _ = planted()
    calls = _count(monkeypatch, baselines, "fit_single_probes")
    config = small_config(epochs=2, fit_cache=True)
    first = _probes(fs, 0, config)
    assert _probes(copy.deepcopy(fs), 0, config).keys() == first.keys()
    assert len(calls) == 2  # one per backbone; an equal copy is the same key
    _probes(_changed(fs, change), 0, config)
    assert len(calls) == 2 + refit
    assert len(list(fits.glob("probe-*.pkl"))) == 2 + refit


def test_a_thumbnail_change_refits_the_gates_that_read_thumbnails(fits, monkeypatch):
    fs, _ = planted()
    config = small_config(methods="moe_thumbnail_oof", seeds=[0], epochs=2, fit_cache=True)
    run_experiment(config, feature_set=fs, progress=False)
    gates = len(list(fits.glob("two_stage-*.pkl")))  # the gate and the static gate of its anchor
    calls = _count(monkeypatch, baselines, "fit_single_probes")
    run_experiment(config, feature_set=_changed(fs, "one thumbnail pixel"), progress=False)
    assert not calls  # the probes are loaded
    assert len(list(fits.glob("two_stage-*.pkl"))) == 2 * gates  # the gates are fit again


def test_zoos_that_share_a_backbone_share_its_probes(fits, monkeypatch):
    fs, _ = planted()
    config = small_config(epochs=2, fit_cache=True)
    both = SeedRun(fs, 0, config, None)
    assert both.probes.keys() == both.oof_probes.keys() == {"a", "b"}
    _no_training(monkeypatch)
    alone = SeedRun(fs.subset_backbones(["b"]), 0, config, None)
    for b_split, p in alone.probes["b"].items():
        np.testing.assert_array_equal(p, both.probes["b"][b_split])
    np.testing.assert_array_equal(alone.oof_probes["b"], both.oof_probes["b"])


def test_seed_train_settings_expert_and_code_are_in_the_key(fits, monkeypatch):
    fs, _ = planted()
    calls = _count(monkeypatch, baselines, "fit_single_probes")
    config = small_config(epochs=2, fit_cache=True)
    _probes(fs, 0, config)
    _probes(fs, 0, config)
    assert len(calls) == 2
    _probes(fs, 1, config)  # the seed
    _probes(fs, 0, small_config(epochs=2, patience=3, fit_cache=True))  # a TrainConfig field
    _probes(fs, 0, small_config(epochs=2, expert="mlp", fit_cache=True))  # the expert kind
    monkeypatch.setattr(fit_cache, "code_digest", lambda: "other code")
    _probes(fs, 0, config)
    assert len(calls) == 10  # five keys, two backbones each
    assert len(list(fits.glob("probe-*.pkl"))) == 10


def test_model_settings_and_class_vectors_are_in_the_key(fits):
    fs, vectors = planted()
    vecs = class_vectors(NAMES, vectors)
    config = small_config(epochs=2, fit_cache=True)
    run = SeedRun(fs, 0, config, vecs)
    run.moe("static")
    run.label_space(vecs)
    SeedRun(fs, 0, config, vecs).moe("static")  # loaded: no new entry
    SeedRun(fs, 0, small_config(epochs=2, fit_cache=True, moe={"aux_weight": 0.2}), vecs).moe("static")
    SeedRun(fs, 0, config, vecs).moe("static", label_experts=True)
    run.label_space(vecs[::-1].copy())
    assert len(list(fits.glob("moe-*.pkl"))) == 3
    assert len(list(fits.glob("label_model-*.pkl"))) == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another entry's file"])
def test_an_unreadable_entry_warns_and_is_fit_again(fits, monkeypatch, damage):
    fs, vectors = planted()
    vecs = class_vectors(NAMES, vectors)
    config = small_config(epochs=2, fit_cache=True)
    fresh = _probes(fs, 0, config)
    SeedRun(fs, 0, config, vecs).label_space(vecs)
    entry = sorted(fits.glob("probe-*.pkl"))[0]
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"\x00garbage" * 100)
    else:
        entry.write_bytes(next(fits.glob("label_model-*.pkl")).read_bytes())
    calls = _count(monkeypatch, baselines, "fit_single_probes")
    with pytest.warns(CorruptCacheWarning, match=entry.name):
        refit = _probes(fs, 0, config)
    assert len(calls) == 1
    for b, by_split in fresh.items():
        for split, p in by_split.items():
            np.testing.assert_array_equal(p, refit[b][split])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the entry was overwritten: it loads without a warning
        _probes(fs, 0, config)
    assert len(calls) == 1


def test_two_threads_asking_for_one_fit_fit_it_once(fits):
    store = fit_cache.FitCache({"run": "test"})
    calls, results = [], []

    def fit() -> np.ndarray:
        calls.append(1)
        time.sleep(0.5)  # long enough for the other thread to find the entry being fit
        return np.arange(5)

    threads = [threading.Thread(target=lambda: results.append(store.get("demo", {}, fit))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 2 and all(np.array_equal(r, np.arange(5)) for r in results)


def test_an_entry_never_holds_a_feature_set(fits):
    fs, _ = planted()
    with pytest.raises(TypeError, match="must not hold a FeatureSet"):
        fit_cache.FitCache({"run": "test"}).get("bad", {}, lambda: {"model": 1, "data": fs})
    assert not list(fits.glob("*.pkl"))


def test_the_setting_is_checked_and_on_in_the_notebook_profiles():
    assert ExperimentConfig().fit_cache is False
    with pytest.raises(ValueError, match="fit_cache must be true or false, got 'yes'"):
        ExperimentConfig(fit_cache="yes")
    assert get_profile("ci").experiment_config("digits").fit_cache is True
    assert get_profile("ci").experiment_config("digits", fit_cache=False).fit_cache is False


def test_the_agreement_study_and_the_experiment_fit_each_probe_once(fits, monkeypatch):
    from fusion_lib.studies.agreement import run_agreement_study

    fs, _ = planted()
    config = small_config(methods="single:a,single:b,best_single", seeds=[0, 1], epochs=5, fit_cache=True)
    study = run_agreement_study(fs, config)
    _no_training(monkeypatch)  # the experiment's probes are the agreement study's, from the cache
    result = run_experiment(config, feature_set=fs, progress=False)
    for seed in config.seeds:
        np.testing.assert_array_equal(result.correct("single:a")[seed], study.correct[("a", seed)])
