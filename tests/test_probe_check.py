"""The linear-probe check of weights without an ImageNet head, on real CIFAR cats and dogs."""

import numpy as np
import pytest

from fusion_lib.studies.probe_check import probe_accuracy, probe_check

pytestmark = pytest.mark.assets  # reads the fetched weights and cats and dogs


def test_pretrained_features_beat_their_random_twin():
    table = probe_check(["squeezenet1_1"]).set_index("backbone")
    row = table.loc["squeezenet1_1"]
    assert 0.6 < row["pretrained"] <= 1 and 0.4 < row["random init"] < row["pretrained"]
    assert row["margin (points)"] == pytest.approx(100 * (row["pretrained"] - row["random init"]))
    assert row["margin (points)"] > 8  # 14.7 measured; random convolutions already reach ~51%


def test_probe_accuracy_reads_planted_signal():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    assert probe_accuracy(y[:, None] * 3 + rng.normal(size=(100, 4)), y) > 0.9
    assert probe_accuracy(rng.normal(size=(100, 4)), y) < 0.75
