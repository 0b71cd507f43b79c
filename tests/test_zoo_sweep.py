"""The zoo sweep: zoos drawn, never chosen; each gain regressed on diversity with strength held fixed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_experiment import planted, small_config

from fusion_lib.studies.zoo_sweep import GAINS, draw_zoos, regress, run_sweep, slope_table


def test_zoos_are_drawn_reproducibly_without_repeats():
    names = [f"b{i}" for i in range(8)]
    zoos = draw_zoos(names, 24, 4, seed=2026)
    assert len(zoos) == len(set(zoos)) == 24 and all(len(z) == 4 for z in zoos)
    assert zoos == draw_zoos(names, 24, 4, seed=2026) != draw_zoos(names, 24, 4, seed=1)
    assert len(draw_zoos(names[:5], 24, 4, seed=0)) == 5  # all of them when there are fewer
    with pytest.raises(ValueError, match="no zoo of 4"):
        draw_zoos(names[:3], 24, 4, seed=0)


def _planted_sweep(slope: float, n: int = 40) -> pd.DataFrame:
    """Zoos whose gain is ``slope`` x double fault + 0.5 x mean accuracy + noise, on two datasets whose
    gains differ by a constant: the regression must find ``slope``, not the confounded raw trend."""
    rng = np.random.default_rng(0)
    accuracy = rng.uniform(70, 95, n)
    double_fault = 30 - 0.3 * accuracy + rng.normal(0, 1.0, n)  # stronger zoos err together less
    dataset = np.where(np.arange(n) % 2, "a", "b")
    gain = slope * double_fault + 0.5 * accuracy + np.where(dataset == "a", 2.0, 0.0) + rng.normal(0, 0.2, n)
    return pd.DataFrame(
        {
            "dataset": dataset,
            "zoo": [f"z{i}" for i in range(n)],
            "mean double fault": double_fault,
            "mean expert accuracy": accuracy,
            **{g: gain for g in GAINS},
        }
    )


def test_the_regression_recovers_a_planted_slope_with_strength_held_fixed():
    fit = regress(_planted_sweep(slope=-0.8), "fusion gain", n_boot=2000)
    assert fit["low"] < -0.8 < fit["high"] and fit["high"] < 0 and fit["r2"] > 0.9
    null = regress(_planted_sweep(slope=0.0), "fusion gain", n_boot=2000)
    assert null["low"] < 0 < null["high"]
    with pytest.raises(ValueError, match="cannot fit"):
        regress(_planted_sweep(slope=0.0, n=5), "fusion gain")


def test_a_sweep_on_planted_features_gives_one_row_per_zoo():
    fs, _ = planted()
    config = small_config(seeds=[0], epochs=3)
    sweep = run_sweep(fs, config, [("a", "b"), ("b", "a")], progress=False)
    assert list(sweep["zoo"]) == ["a + b", "b + a"]
    assert np.allclose(sweep["mean double fault"].iloc[0], sweep["mean double fault"].iloc[1])
    assert (sweep["oracle headroom"] >= 0).all()
    assert set(slope_table(_planted_sweep(-0.5)).index) == set(GAINS)
