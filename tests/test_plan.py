"""The confirmatory plan and what decides its claims: the plan file loads, is hashed and names only known
models and fresh seeds; the relative error reduction and its pooled, reseeded verdict; the fitted gate
read at alpha 0 and 1."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from test_experiment import planted, small_config

from fusion_lib.book.profiles import PROFILES
from fusion_lib.studies.plan import PLAN_FILE, load_plan
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.runs import StudyRun
from fusion_lib.studies.stats import paired_difference
from fusion_lib.studies.study import Study


def test_the_plan_loads_hashed_with_fresh_seeds_and_known_models():
    plan = load_plan()
    assert plan.sha256 == hashlib.sha256(PLAN_FILE.read_bytes()).hexdigest()
    assert [t.claim for t in plan.tests] == ["C2a", "C2b", "C3"]
    assert plan.margin == pytest.approx(10.0) and plan.replicates >= 10_000
    assert len(plan.seeds) >= 10
    # after the confirmatory run, the book's exploratory notebooks read its first five seeds (and load its
    # fits); no other profile uses any of them
    book = PROFILES["book"]
    assert book.seeds == plan.seeds[: len(book.seeds)]
    assert not {s for p in PROFILES.values() if p is not book for s in p.seeds} & set(plan.seeds)


def test_a_plan_naming_an_unknown_method_is_refused(tmp_path):
    bad = PLAN_FILE.read_text().replace("reference: best_fixed}", "reference: best_fixd}")
    (tmp_path / "plan.yml").write_text(bad)
    with pytest.raises(ValueError, match="unknown method.*best_fixd"):
        load_plan(tmp_path / "plan.yml")


def test_relative_error_reduction_is_a_share_of_the_references_errors():
    rng = np.random.default_rng(0)
    b = [rng.random(2000) < 0.8 for _ in range(3)]  # about 20% errors
    a = [x | (rng.random(2000) < 0.25) for x in b]  # fixes about a quarter of them
    d = paired_difference(a, b, n_boot=2000, relative=True)
    acc_a, acc_b = np.mean([x.mean() for x in a]), np.mean([x.mean() for x in b])
    assert d.diff == pytest.approx(100 * (acc_a - acc_b) / (1 - acc_b))
    assert 15 < d.low < d.diff < d.high < 35
    points = paired_difference(a, b, n_boot=2000)  # the same draws: the same sign and significance
    assert points.low > 0 and d.p_value == points.p_value


@pytest.fixture(scope="module")
def two_datasets() -> Study:
    runs = []
    for name, seed in (("planted-a", 0), ("planted-b", 1)):
        fs, _ = planted(seed)
        fs.dataset = name
        config = small_config(
            methods="best_single,prob_avg,moe_thumbnail,moe_thumbnail_alpha0,moe_thumbnail_alpha1"
        )
        runs.append(StudyRun(name, "experts", run_experiment(config, feature_set=fs, progress=False), fs))
    return Study(runs)


def test_the_gate_read_at_alpha_0_is_its_anchor_and_at_1_the_raw_gate(two_datasets):
    for result in (run.result for run in two_datasets.runs):
        m = result.metrics
        for seed in result.seeds:
            anchor = result.outputs[("moe_thumbnail_alpha0", seed)].probs["test"]
            names = ("prob_avg", "prob_avg_cal", "moe_uniform", "moe_static", "stacking", "concat")
            index = int(
                m[
                    (m.method == "moe_thumbnail_alpha0") & (m.seed == seed) & (m.metric == "anchor_index")
                ].value.iat[0]
            )
            if names[index] == "prob_avg":
                np.testing.assert_allclose(
                    anchor, result.outputs[("prob_avg", seed)].probs["test"], rtol=1e-6
                )
            changes = m[
                (m.method == "moe_thumbnail") & (m.seed == seed) & (m.metric == "gate_changes_anchor")
            ]
            chosen = result.outputs[("moe_thumbnail", seed)].probs["test"].argmax(1)
            assert changes.value.iat[0] == pytest.approx(np.mean(chosen != anchor.argmax(1)))


def test_a_planned_verdict_pools_datasets_and_flags_a_word_reseeding_changes(two_datasets):
    pair = ("moe_thumbnail", "prob_avg")
    d = two_datasets.pooled(*pair, relative=True)
    per_dataset = [run.result.compare(*pair, relative=True).diff for run in two_datasets.runs]
    assert d.diff == pytest.approx(np.mean(per_dataset))
    assert d.low > 10  # the planted gate fixes far more than a tenth of averaging's errors
    clear = two_datasets.planned_verdicts([pair], margin=10.0)[pair]
    assert clear.word == "supported" and not clear.borderline and clear.agreeing == 20
    # a margin at the median of the reseeded upper bounds: half the reseeds call the difference
    # equivalent, half supported, whatever the planned draws say, so the word is borderline
    highs = [two_datasets.pooled(*pair, relative=True, offset=k).high for k in range(1, 21)]
    edge = two_datasets.planned_verdicts([pair], margin=float(np.median(highs)))[pair]
    assert edge.borderline and edge.agreeing == 10
    assert "10 of 20 reseeds agree, borderline" in edge.text()


def test_only_the_unchanged_book_profile_runs_the_plans_seeds():
    from fusion_lib.book.chapters import confirmatory as conf
    from fusion_lib.book.profiles import get_profile

    plan = load_plan()
    book = conf.design(get_profile("book"), plan)
    assert book.confirmatory and book.seeds == plan.seeds and book.experts == plan.experts
    # the notebook's settings table shows the run's ten seeds on every dataset, not the profile's five
    shown = book.profile(get_profile("book"))
    assert all(shown.seeds_for(d) == plan.seeds for d in plan.datasets)
    assert shown.backbones == plan.experts
    for profile in (get_profile("ci"), get_profile("book", seeds=2)):
        check = conf.design(profile, plan)
        assert not check.confirmatory and not set(check.seeds) & set(plan.seeds)
        assert "NOT the confirmatory test" in check.describe()
    sweep = conf.sweep_design(get_profile("book"), plan)
    assert len(sweep.zoos) == plan.sweep.zoos and {len(z) for z in sweep.zoos} == {plan.sweep.zoo_size}
    assert sweep.seeds == plan.sweep.seeds and sweep.datasets == plan.sweep.datasets
    # the two zoos are compared where the sweep runs, where every candidate is extracted anyway
    assert get_profile("book").zoo_dataset_names() == plan.sweep.datasets


def test_the_exploratory_notebooks_share_the_fit_cache_keys_of_notebook_06():
    """At the book profile, notebooks 02, 03 and 05 read seeds notebook 06 runs, on the same features
    (the same experts, in the same order), training settings and expert kind: the fit cache keys of its
    models are theirs, so they load instead of fitting again (what keeps the cold build within budget)."""
    from fusion_lib.book.chapters import confirmatory as conf
    from fusion_lib.book.profiles import get_profile

    book, plan = get_profile("book"), load_plan()
    run_design = conf.design(book, plan)
    assert run_design.experts == book.backbones
    for name in plan.datasets:
        theirs = conf.run_config(book, plan, run_design, name, ["cat", "dog"])
        ours = book.experiment_config(name)
        assert (ours.data, ours.train, ours.expert) == (theirs.data, theirs.train, theirs.expert)
        assert ours.fit_cache and theirs.fit_cache
        assert set(ours.seeds) <= set(theirs.seeds)
