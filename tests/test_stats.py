import numpy as np
import pytest

from fusion_lib.studies import stats
from fusion_lib.studies.stats import (
    MARGIN,
    VERDICT_WORDS,
    Difference,
    bootstrap_mean_ci,
    bootstrap_means,
    dataset_stream,
    holm,
    paired_difference,
    pooled_difference,
)


def test_identical_methods_have_zero_difference():
    a = np.random.default_rng(0).random(500) < 0.8
    d = paired_difference([a], [a.copy()])
    assert d.diff == 0 and d.low == 0 and d.high == 0 and d.p_mcnemar == 1.0 and d.p_value == 1.0
    assert not d.significant and d.word() == "equivalent"


def test_clear_gain_is_detected_and_interval_covers_truth():
    rng = np.random.default_rng(1)
    b = rng.random(2000) < 0.7
    a = b | (rng.random(2000) < 0.2)  # A fixes about 6 points of B's errors and breaks none
    d = paired_difference([a], [b], n_boot=1000)
    truth = 100 * (a.mean() - b.mean())
    assert d.low < truth < d.high and d.low > 0
    assert d.p_mcnemar < 1e-6 and d.p_value == pytest.approx(1 / 1000)  # floored at 1 / n_boot
    assert d.text().startswith("+") and "[" in d.text()
    assert "beats" in d.verdict("A", "B")
    reverse = paired_difference([b], [a], n_boot=1000).verdict("B", "A")
    assert reverse.startswith("B trails A: -") and "by -" not in reverse


def test_pairing_narrows_the_interval():
    """Two methods that err on the same hard images: the paired CI is far narrower than the
    spread of either accuracy alone."""
    rng = np.random.default_rng(2)
    hard = rng.random(1000) < 0.3
    a, b = ~hard, ~hard
    b = b & (rng.random(1000) > 0.02)
    d = paired_difference([a], [b])
    _, lo, hi = bootstrap_mean_ci(100.0 * a)
    assert (d.high - d.low) < (hi - lo) / 3


def test_seeds_are_averaged_and_may_have_different_test_sets():
    a = [np.ones(100, bool), np.ones(50, bool)]
    b = [np.zeros(100, bool), np.ones(50, bool)]
    d = paired_difference(a, b)
    assert d.diff == pytest.approx(50.0)
    assert d.n_seeds == 2 and d.n_images == 150 and d.p_mcnemar is None


def test_unpaired_input_is_rejected():
    with pytest.raises(ValueError, match="paired"):
        paired_difference([np.ones(10, bool)], [np.ones(9, bool)])
    with pytest.raises(ValueError, match="at least one seed"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="n_boot"):
        paired_difference([np.ones(10, bool)], [np.ones(10, bool)], n_boot=5)


def _width(values, **kw) -> float:
    _, low, high = bootstrap_mean_ci(values, n_boot=1000, **kw)
    return high - low


def _spread(values, **kw) -> float:
    """Standard deviation of the replicates: a steadier measure of an interval's width than its ends."""
    return float(np.std(bootstrap_means(values, n_boot=4000, **kw)))


def test_seeds_sharing_test_images_resample_them_jointly():
    """Four seeds that scored the same images identically carry no more information than one: resampled
    jointly they spread as much as one seed. Taken as distinct images they narrow, though by S / sqrt(2S - 1)
    rather than sqrt(S): seeds are drawn with replacement, so a replicate repeats some of them."""
    v = np.random.default_rng(3).normal(size=500)
    one = _spread(v)
    assert _spread([v] * 4, image_ids=[np.arange(500)] * 4) == pytest.approx(one, rel=0.04)
    assert one / _spread([v] * 4) == pytest.approx(4 / np.sqrt(7), rel=0.05)


def test_images_are_matched_by_id_not_by_position():
    rng = np.random.default_rng(4)
    v, perm = rng.normal(size=300), rng.permutation(300)
    ids = np.arange(300)
    aligned = bootstrap_means([v, v], image_ids=[ids, ids], n_boot=500)
    shuffled = bootstrap_means([v, v[perm]], image_ids=[ids, ids[perm]], n_boot=500)
    np.testing.assert_allclose(shuffled, aligned, atol=1e-5)


def test_partial_overlap_lies_between_shared_and_disjoint():
    """Two seeds sharing a fraction r of their images, scored so that both seeds have the same mean
    (their spread would add seed-level variance): the replicates' variance is (3 + r) / 4 of the fully
    shared one, since a replicate draws one seed twice half the time."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=1000)
    # images 1000-1499 and 1500-1999 repeat the scores of 0-499 and 500-999, so every window of 1000
    # consecutive ids holds the same scores
    f = np.concatenate([base, rng.permutation(base[:500]), rng.permutation(base[500:])])

    def spread(shift: int) -> float:
        ids = [np.arange(1000), np.arange(shift, shift + 1000)]
        return _spread([f[i] for i in ids], image_ids=ids)

    shared, half, disjoint = spread(0), spread(500), spread(1000)
    assert half / shared == pytest.approx(np.sqrt(3.5 / 4), rel=0.05)
    assert disjoint / shared == pytest.approx(np.sqrt(3 / 4), rel=0.05)


def test_seed_to_seed_variation_widens_the_interval():
    """Seeds whose accuracies differ by far more than image noise: the interval reflects the seeds'
    spread, not only the images (an images-only bootstrap is blind to per-seed offsets)."""
    rng = np.random.default_rng(6)
    noise = [rng.normal(size=1000) for _ in range(5)]
    offsets = [-4.0, -2.0, 0.0, 2.0, 4.0]
    images_only = _width(noise)  # the seeds' means agree to within image noise
    with_seeds = _width([o + e for o, e in zip(offsets, noise)])
    assert with_seeds > 10 * images_only
    assert with_seeds == pytest.approx(2 * 1.96 * np.std(offsets) / np.sqrt(5), rel=0.3)


def test_one_seed_resamples_only_images():
    v = np.random.default_rng(7).normal(size=1000)
    assert _width(v) == pytest.approx(2 * 1.96 * v.std() / np.sqrt(1000), rel=0.15)


def test_interval_covers_a_known_difference_at_about_the_stated_rate():
    """200 simulated experiments, 5 seeds on one shared test set of 400 images: B is right with an
    image-specific probability, A fixes a seed-specific share of B's errors and breaks 3% of its hits."""
    rng = np.random.default_rng(8)
    truth = 100 * (0.1 * 0.2 - 0.03 * 0.8)  # E[fix rate] E[B's error] - break rate E[B's accuracy]
    ids = [np.arange(400)] * 5
    hits = 0
    for _ in range(200):
        p = rng.uniform(0.6, 1.0, 400)
        b = [rng.random(400) < p for _ in range(5)]
        a = [np.where(x, rng.random(400) > 0.03, rng.random(400) < rng.uniform(0.0, 0.2)) for x in b]
        d = paired_difference(a, b, image_ids=ids, n_boot=500)
        hits += d.low < truth < d.high
    assert 0.85 <= hits / 200 <= 0.99


def test_same_seed_resamples_identically_so_replicates_pair():
    rng = np.random.default_rng(9)
    v = [rng.normal(size=200), rng.normal(size=150)]
    r = bootstrap_means(v, n_boot=500, seed=1)
    stats._DRAWS.clear()  # the plan is redrawn from the seed, not merely remembered
    np.testing.assert_array_equal(bootstrap_means(v, n_boot=500, seed=1), r)
    assert not np.array_equal(bootstrap_means(v, n_boot=500, seed=2), r)
    # another statistic of the same images gets the same draws: its replicates are the same transform
    np.testing.assert_allclose(bootstrap_means([2 * x + 1 for x in v], n_boot=500, seed=1), 2 * r + 1)


def test_n_images_counts_distinct_test_images():
    a = [np.ones(100, bool), np.ones(100, bool)]
    b = [np.zeros(100, bool), np.zeros(100, bool)]
    assert paired_difference(a, b).n_images == 200
    assert paired_difference(a, b, image_ids=[np.arange(100), np.arange(50, 150)]).n_images == 150
    assert paired_difference(a, b, image_ids=[np.arange(100)] * 2).n_images == 100


def test_a_seed_left_without_images_in_a_replicate_is_redrawn():
    ids = [np.arange(60), np.array([60]), np.array([61])]  # a one-image seed misses ~37% of replicates
    r = bootstrap_means([np.zeros(60), np.ones(1), np.ones(1)], image_ids=ids, n_boot=500)
    assert np.isfinite(r).all()
    with pytest.raises(ValueError, match="cannot resample"):
        bootstrap_means([np.ones(1)] * 12, n_boot=200)  # 12 one-image seeds almost never all drawn


def _diff(low: float, high: float, p: float = 0.01) -> Difference:
    return Difference((low + high) / 2, low, high, n_images=100, n_seeds=1, p_value=p)


def test_word_has_four_outcomes_and_equivalence_comes_first():
    assert MARGIN == 0.5 and VERDICT_WORDS == ("better", "worse", "equivalent", "inconclusive")
    assert _diff(0.1, 0.4).word() == "equivalent"  # inside the margin, though it excludes zero
    assert _diff(0.1, 0.4).word(p_adjusted=0.001) == "equivalent"
    assert _diff(0.1, 0.5).word() == "better"  # not strictly inside
    assert _diff(0.1, 0.4).word(margin=0.2) == "better"
    assert _diff(-2.0, -0.3).word() == "worse"
    assert _diff(-0.6, 0.2).word() == "inconclusive"
    assert _diff(0.3, 2.0).word(p_adjusted=0.01) == "better"
    assert _diff(0.3, 2.0).word(p_adjusted=0.2) == "inconclusive"  # fails the family-wise correction
    assert _diff(-2.0, -0.3).word(p_adjusted=0.05) == "inconclusive"
    assert _diff(-2.0, -0.3).word(p_adjusted=0.049) == "worse"
    assert _diff(0.3, 2.0).significant and not _diff(-0.6, 0.2).significant


def test_verdict_sentences_name_the_outcome():
    assert _diff(0.3, 2.0).verdict("A", "B").startswith("A beats B by +1.15 [")
    assert _diff(-2.0, -0.3).verdict("A", "B").startswith("A trails B: -1.15 [")
    assert _diff(-0.2, 0.4).verdict("A", "B").startswith("A and B are equivalent within ±0.5 points: +0.10")
    assert "inconclusive" in _diff(-0.6, 0.2).verdict("A", "B")
    assert "inconclusive" in _diff(0.3, 2.0).verdict("A", "B", p_adjusted=0.2)


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept monotone at 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.2]), [0.2])
    assert len(holm([])) == 0


def test_pooled_difference_averages_datasets_and_their_replicates():
    rng = np.random.default_rng(10)
    first = paired_difference(rng.random(400) < 0.9, rng.random(400) < 0.8, n_boot=500)
    second = paired_difference([rng.random(300) < 0.7] * 2, [rng.random(300) < 0.7] * 2, n_boot=500)
    pooled = pooled_difference([first, second])
    assert pooled.diff == pytest.approx((first.diff + second.diff) / 2)
    np.testing.assert_allclose(pooled.replicates, (first.replicates + second.replicates) / 2)
    assert pooled.low < pooled.diff < pooled.high and 0 < pooled.p_value <= 1
    assert pooled.n_images == 1000 and pooled.n_seeds == 3 and pooled.p_mcnemar is None
    with pytest.raises(ValueError, match="replicates"):
        pooled_difference([first, _diff(0.1, 0.2)])
    short = paired_difference(rng.random(400) < 0.9, rng.random(400) < 0.8, n_boot=200)
    with pytest.raises(ValueError, match="one length"):
        pooled_difference([first, short])
    with pytest.raises(ValueError, match="at least one"):
        pooled_difference([])


def test_bad_image_ids_are_rejected_by_name():
    v = [np.ones(10), np.ones(10)]
    with pytest.raises(ValueError, match="seed 1 has 9 ids for 10 values"):
        bootstrap_means(v, image_ids=[np.arange(10), np.arange(9)])
    with pytest.raises(ValueError, match="1 arrays but the values have 2 seeds"):
        bootstrap_means(v, image_ids=[np.arange(10)])
    with pytest.raises(ValueError, match="repeat an id"):
        bootstrap_means(v, image_ids=[np.arange(10), np.zeros(10, int)])
    with pytest.raises(ValueError, match="integers"):
        bootstrap_means(v, image_ids=[np.arange(10.0)] * 2)
    with pytest.raises(ValueError, match="at least one seed with at least one test image"):
        bootstrap_means([np.ones(10), np.ones(0)])
    with pytest.raises(ValueError, match="seed 0 has 5 ids"):
        paired_difference([np.ones(10, bool)], [np.ones(10, bool)], image_ids=[np.arange(5)])


def _pool(fixed_test: bool):
    from fusion_lib.data.feature_set import FeatureSet

    rng = np.random.default_rng(0)
    sizes = {"train": 40, "val": 20, "test": 30}
    labels = {s: np.arange(n) % 2 for s, n in sizes.items()}
    # feature 0 is a unique row id, so rows can be tracked through a draw
    ids = iter(range(1000))
    feats = {s: {"b": np.array([[next(ids), y] for y in labels[s]], dtype=np.float32)} for s in sizes}
    thumbs = {s: rng.random((n, 3, 8, 8)).astype(np.float32) for s, n in sizes.items()}
    return FeatureSet("toy", ["b"], ["a", "b"], feats, labels, thumbs, fixed_test=fixed_test)


@pytest.mark.parametrize("fixed_test", [True, False])
def test_draw_redraws_splits_within_the_pool(fixed_test):
    pool = _pool(fixed_test)
    one, two = pool.draw(1), pool.draw(2)
    for fs in (one, two):
        ids = {s: set(fs.features[s]["b"][:, 0].astype(int)) for s in ("train", "val", "test")}
        assert {s: len(v) for s, v in ids.items()} == {"train": 40, "val": 20, "test": 30}
        assert (
            not (ids["train"] & ids["val"])
            and not (ids["train"] & ids["test"])
            and not (ids["val"] & ids["test"])
        )
        for s in ("train", "val", "test"):  # labels and thumbnails follow their rows
            np.testing.assert_array_equal(fs.features[s]["b"][:, 1], fs.labels[s])
            assert len(fs.thumbnails[s]) == len(fs.labels[s])
            assert np.bincount(fs.labels[s]).tolist() == np.bincount(pool.labels[s]).tolist()
    same_test = np.array_equal(one.features["test"]["b"], pool.features["test"]["b"])
    assert same_test == fixed_test
    assert not np.array_equal(one.features["train"]["b"], two.features["train"]["b"])
    np.testing.assert_array_equal(pool.draw(1).features["train"]["b"], one.features["train"]["b"])


def test_score_table_is_the_accuracy_and_paired_difference_of_every_model():
    from fusion_lib.studies.stats import bootstrap_mean_ci, family_words, paired_difference, score_table

    rng = np.random.default_rng(0)
    correct = {m: [rng.random(80) < p for _ in range(3)] for m, p in (("a", 0.7), ("b", 0.8), ("c", 0.9))}
    t = score_table(correct, "a", n_boot=300).set_index("model")
    for m in correct:
        assert tuple(t.loc[m, ["accuracy", "low", "high"]]) == bootstrap_mean_ci(
            [100.0 * c for c in correct[m]], n_boot=300
        )
    diffs = [paired_difference(correct[m], correct["a"], n_boot=300) for m in ("b", "c")]
    assert list(t.loc[["b", "c"], "diff"]) == [d.diff for d in diffs]
    # superiority and equivalence p-values of both comparisons form one Holm family
    sup, _, words = family_words(
        [d.diff for d in diffs], [d.p_value for d in diffs], [d.p_equivalence() for d in diffs]
    )
    assert list(t.loc[["b", "c"], "p_holm"]) == list(sup)
    assert list(t.loc[["b", "c"], "word"]) == words
    assert t.loc["a", "difference"] == "" and np.isnan(t.loc["a", "diff"])
    with pytest.raises(ValueError, match="baseline 'z' is not among"):
        score_table(correct, "z")


def test_datasets_pooled_with_their_own_streams_resample_independently():
    # two datasets with the same per-image results: on one shared stream their replicates coincide and
    # pooling them narrows nothing; on each dataset's own stream the pooled interval is about 1/sqrt(2)
    # as wide, as it is for independent datasets
    rng = np.random.default_rng(3)
    a = [rng.random(400) < 0.85 for _ in range(5)]
    b = [rng.random(400) < 0.80 for _ in range(5)]
    shared = [paired_difference(a, b, n_boot=4000, seed=0) for _ in ("fashion_mnist", "mnist")]
    own = [paired_difference(a, b, n_boot=4000, seed=dataset_stream(d)) for d in ("fashion_mnist", "mnist")]
    assert dataset_stream("mnist") == dataset_stream("mnist") != dataset_stream("fashion_mnist")
    np.testing.assert_array_equal(shared[0].replicates, shared[1].replicates)
    width = shared[0].high - shared[0].low
    assert pooled_difference(shared).high - pooled_difference(shared).low == pytest.approx(width)
    pooled = pooled_difference(own)
    assert (pooled.high - pooled.low) / width == pytest.approx(2**-0.5, rel=0.15)


def test_equivalence_p_reads_a_95_interval_inside_the_margin():
    rng = np.random.default_rng(0)
    inside = rng.normal(0.0, 0.1, 10_000)  # 95% interval about ±0.2
    assert stats.equivalence_p(inside, 0.5) == 1 / 10_000  # floored: no replicate beyond ±0.5
    low, high = stats.percentile_interval(inside)
    for margin in (0.15, 0.19, 0.21, 0.3):
        within = -margin < low and high < margin
        assert (stats.equivalence_p(inside, margin) < 0.025) == within
    shifted = rng.normal(0.45, 0.1, 10_000)  # a third of it beyond +0.5
    assert 0.25 < stats.equivalence_p(shifted, 0.5) < 0.4


def test_family_words_decide_both_questions_after_one_holm_step():
    # three comparisons: clearly better, clearly equivalent, and one whose interval lies inside the margin
    # unadjusted (TOST p 0.02 < 0.025) but not after Holm over the six p-values
    diffs, p_sup, p_eq = [3.0, 0.0, -0.1], [1e-4, 0.9, 0.6], [1.0, 1e-4, 0.02]
    sup, eq, words = stats.family_words(diffs, p_sup, p_eq)
    assert words == ["better", "equivalent", "inconclusive"]
    np.testing.assert_allclose(eq, stats.holm([*p_sup, *p_eq])[3:])
    np.testing.assert_allclose(sup, stats.holm([*p_sup, *p_eq])[:3])
    assert stats.family_words([-2.0], [0.001], [0.9])[2] == ["worse"]
    assert stats.family_words([], [], [])[2] == []
    with pytest.raises(ValueError, match="one p of each kind"):
        stats.family_words([1.0], [0.1, 0.2], [0.3])
