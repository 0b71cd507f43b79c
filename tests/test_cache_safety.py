"""The feature cache under real concurrency and real interruption: two processes, and a SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fusion_lib.data.cache import ArrayCache, cache_key

# A build that takes long enough for a second process to arrive while the first is still at it.
BUILDER = textwrap.dedent("""
    import logging, os, sys, time
    import numpy as np
    logging.basicConfig(level=logging.INFO)  # the wait is logged at INFO
    from fusion_lib.data.cache import ArrayCache

    root, log = sys.argv[1], sys.argv[2]

    def build(chunks):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(1.5)
        return np.arange(100_000, dtype=np.float32) * 0.5

    arr, _, cached = ArrayCache(root).get_or_build({"kind": "test", "n": 100_000}, build)
    print("cached" if cached else "built", float(arr.sum()))
""")


def _python(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw
    )


def test_two_processes_building_one_entry_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    procs = [_python("-c", BUILDER, str(tmp_path / "cache"), str(log))]
    time.sleep(0.5)  # the first holds the lock and is building when the second arrives
    procs.append(_python("-c", BUILDER, str(tmp_path / "cache"), str(log)))
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(log.read_text().split()) == 1  # one build; the other process waited and read it
    assert sorted(o.split()[0] for o, _ in outs) == ["built", "cached"]
    assert "waiting for another process" in outs[1][1]
    expected = float((np.arange(100_000, dtype=np.float32) * 0.5).sum())
    assert all(float(o.split()[1]) == expected for o, _ in outs)
    hit = ArrayCache(tmp_path / "cache").load(cache_key({"kind": "test", "n": 100_000}))
    assert hit is not None and np.array_equal(hit[0], np.arange(100_000, dtype=np.float32) * 0.5)


# Extracts real SqueezeNet features of 96 digits in chunks of 16 rows; logs each chunk it computes, and
# with a delay argument sleeps after each chunk so that the test can kill it part-way.
EXTRACTOR = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from fusion_lib.data import cache as array_cache
    from fusion_lib.data import extraction as features
    from fusion_lib.data.datasets import SplitSizes, load_dataset

    cache, log, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    features.CHUNK_ROWS = 16
    compute = features.FeatureExtractor.features

    def logged(self, data, split, rows):
        out = compute(self, data, split, rows)
        with open(log, "a") as fh:
            fh.write(json.dumps([int(rows[0]), int(rows[-1])]) + "\\n")
        return out

    features.FeatureExtractor.features = logged
    put = array_cache.ChunkStore.put

    def slow_put(self, i, arr):
        put(self, i, arr)
        time.sleep(delay)

    array_cache.ChunkStore.put = slow_put
    data = load_dataset("digits", SplitSizes(100, 50, 96), seed=0)
    feats, _ = features.extract_features("squeezenet1_1", data, "test", input_size=32, device="cpu",
                                         progress=False, cache_dir=cache, precision="fp32")
    np.save(sys.argv[4], feats)
""")


@pytest.mark.slow
def test_sigkill_mid_extraction_resumes_without_recomputing_finished_chunks(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "chunks.log"
    proc = _python("-c", EXTRACTOR, str(cache), str(log), "2.0", str(tmp_path / "never.npy"))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = [json.loads(line) for line in log.read_text().splitlines()]
    partial = list(cache.rglob("*.partial/chunk_*.npy"))
    assert 2 <= len(partial) < 6 and not (tmp_path / "never.npy").exists()

    log.unlink()
    rerun = _python("-c", EXTRACTOR, str(cache), str(log), "0", str(tmp_path / "resumed.npy"))
    out, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    redone = [json.loads(line) for line in log.read_text().splitlines()]
    assert not [c for c in redone if c in done[: len(partial)]]  # finished chunks are read, not recomputed
    assert len(redone) == 6 - len(partial)

    fresh = _python(
        "-c",
        EXTRACTOR,
        str(tmp_path / "fresh"),
        str(tmp_path / "fresh.log"),
        "0",
        str(tmp_path / "uninterrupted.npy"),
    )
    assert fresh.wait(timeout=240) == 0
    resumed, whole = np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "uninterrupted.npy")
    assert resumed.shape == (96, 512)
    np.testing.assert_array_equal(resumed, whole)
