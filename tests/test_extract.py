"""`python -m fusion_lib extract`: one process, and two torchrun ranks (gloo) sharing the chunk store."""

import json
import os
import subprocess
import sys

import numpy as np

# 520 train images are two chunks of CHUNK_ROWS=512, so each of two ranks computes one of them
ARGS = [
    "--dataset",
    "digits",
    "--backbones",
    "squeezenet1_1",
    "--train",
    "520",
    "--val",
    "20",
    "--test",
    "40",
    "--input-size",
    "64",
    "--thumbnail-size",
    "16",
]


def _entries(root):
    """{cache key: features} of every published entry (and no partial or temporary files left)."""
    assert not list(root.rglob("*.partial")) and not list(root.rglob("*.tmp"))
    return {
        side.stem: np.load(side.with_suffix(".npy"))
        for side in root.rglob("*.json")
        if json.loads(side.read_text())["spec"]["kind"] == "features"
    }


def test_two_torchrun_ranks_write_the_entries_of_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # torchrun gives each rank one thread; so does this run, since a different thread count changes the
    # order of some convolutions' sums (measured: up to 5e-5 on SqueezeNet features of up to ~150)
    subprocess.run(
        [sys.executable, "-m", "fusion_lib", "extract", *ARGS, "--cache-dir", str(one)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            "-m",
            "fusion_lib",
            "extract",
            *ARGS,
            "--cache-dir",
            str(two),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 1/2: computed 1 chunk(s)" in run.stdout  # rank 1 really took its share
    a, b = _entries(one), _entries(two)
    assert len(a) == 3 and set(a) == set(b)  # train/val/test, under the same cache keys
    for key in a:
        assert a[key].shape == b[key].shape and np.allclose(a[key], b[key], rtol=0, atol=1e-5)


def test_extract_rejects_bad_sizes():
    run = subprocess.run(
        [sys.executable, "-m", "fusion_lib", "extract", "--dataset", "digits", "--train", "0"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "split size train=0" in run.stderr
