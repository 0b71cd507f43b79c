"""The benchmarks run end to end and print the ratios they promise (slow: `make test-slow`)."""
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_feature_benchmark_prints_ratios():
    out = subprocess.run([sys.executable, "-m", "fusion_lib.bench", "features", "--backbones", "squeezenet1_1",
                          "--images", "64", "--sweep", "64,96"], capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("squeezenet1_1"))
    raw, pipe, ratio = (float(x) for x in row.split()[1:4])
    assert raw > 0 and pipe > 0 and ratio == pytest.approx(pipe / raw, abs=0.01)
    assert re.search(r"\d+x$", row)  # warm-over-cold speed-up
    assert "96px" in out


@pytest.mark.slow
def test_fusion_benchmark_prints_throughput_and_wall_time():
    out = subprocess.run([sys.executable, "-m", "fusion_lib.bench", "fusion", "--dataset", "digits", "--train", "300",
                          "--val", "100", "--test", "200", "--seeds", "1", "--methods", "best_single,moe_thumbnail",
                          "--backbones", "squeezenet1_1,tf_efficientnet_lite0", "--epochs", "3"],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"MoE, thumbnail gate, 2 experts: [\d,]+ samples/s", out)
    assert re.search(r"wall time: 2 methods x 1 seeds on digits: [\d.]+s", out)
    assert "moe_thumbnail" in out
