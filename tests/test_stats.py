import numpy as np
import pytest

from fusion_lib.studies.stats import bootstrap_mean_ci, paired_difference


def test_identical_methods_have_zero_difference():
    a = np.random.default_rng(0).random(500) < 0.8
    d = paired_difference([a], [a.copy()])
    assert d.diff == 0 and d.low == 0 and d.high == 0 and d.p_mcnemar == 1.0
    assert not d.significant


def test_clear_gain_is_detected_and_interval_covers_truth():
    rng = np.random.default_rng(1)
    b = rng.random(2000) < 0.7
    a = b | (rng.random(2000) < 0.2)  # A fixes about 6 points of B's errors and breaks none
    d = paired_difference([a], [b], n_boot=1000)
    truth = 100 * (a.mean() - b.mean())
    assert d.low < truth < d.high and d.low > 0
    assert d.p_mcnemar < 1e-6
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
