"""`make gpu-check` (`python -m fusion_lib.bench gpu`): one summary of whether a CUDA machine gives the
right answers, and how fast, in a few minutes. Without a CUDA device it says so and exits with status 1."""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from fusion_lib.bench.extraction import pipeline_rates, precision_check
from fusion_lib.data.backbones import imagenet_predictions, load_backbone
from fusion_lib.data.datasets import SplitSizes, load_dataset
from fusion_lib.data.extraction import FeatureExtractor, load_feature_set
from fusion_lib.data.spec import DEFAULT_INPUT_SIZE, FeatureSpec
from fusion_lib.fusion.moe import MoE, MoEConfig
from fusion_lib.fusion.training import TrainConfig

PROBE_TOLERANCE = 0.5  # points of linear-probe accuracy that fp16 may lose against CPU fp32


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m fusion_lib.bench gpu", description=__doc__)
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument(
        "--images", type=int, default=2000, help="Fashion-MNIST images for fp16 vs fp32 (half train)"
    )
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA device is present (torch.cuda.is_available() is False); nothing was checked. "
            "Run it on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
        return 1

    start = time.perf_counter()
    lines = [
        f"gpu-check on {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    ]
    ok = True

    bb = load_backbone(args.backbone)
    pred, true = imagenet_predictions(bb, device="cuda")
    correct = sum(int(a == b) for a, b in zip(pred, true))
    cpu_pred, _ = imagenet_predictions(load_backbone(args.backbone), device="cpu")
    same = pred == cpu_pred
    ok &= same
    lines.append(
        f"ImageNet samples on the GPU: {correct}/{len(true)} correct, predictions "
        f"{'identical to' if same else 'DIFFERENT from'} the CPU's"
    )

    half = args.images // 2
    r = precision_check(
        args.backbone, "fashion_mnist", (half, args.images - half), DEFAULT_INPUT_SIZE, "cuda", "fp16"
    )
    probe_ok = abs(r["acc diff"]) <= PROBE_TOLERANCE
    ok &= probe_ok
    lines.append(
        f"fp16 channels_last vs CPU fp32, {args.images} Fashion-MNIST images: max abs diff "
        f"{r['max abs diff']:.4f}; probe accuracy {r['fp16 acc']:.2f}% vs {r['fp32 acc']:.2f}% "
        f"({r['acc diff']:+.2f} points, {'within' if probe_ok else 'OUTSIDE'} {PROBE_TOLERANCE})"
    )

    ratio = _pipeline_ratio(args.backbone)
    lines.append(f"pipeline/raw forward on the GPU: {ratio:.2f} (target >= 0.9)")

    acc, seconds = _moe_on_cuda()
    lines.append(
        f"MoE (thumbnail gate, 2 experts) trained on CUDA: test accuracy {acc:.1f}% in {seconds:.1f}s"
    )
    lines.append(f"total {time.perf_counter() - start:.0f}s: {'PASS' if ok else 'FAIL'}")
    print("\n".join(lines))
    return 0 if ok else 1


def _pipeline_ratio(name: str) -> float:
    data = load_dataset("fashion_mnist", SplitSizes(100, 10, 1024))
    rows = np.arange(1024)
    ex = FeatureExtractor(load_backbone(name, input_size=DEFAULT_INPUT_SIZE), "cuda")
    rates = pipeline_rates(ex, data, "test", rows)
    return rates["pipeline"] / rates["raw"]


def _moe_on_cuda() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = FeatureSpec("digits", ("squeezenet1_1", "tf_efficientnet_lite0"), SplitSizes(1000, 297, 500))
        fs = load_feature_set(spec, device="cuda", progress=False, cache_dir=tmp)
    t = time.perf_counter()
    model = MoE(MoEConfig(gate="thumbnail"), TrainConfig(device="cuda", threads=None)).fit(fs, seed=0)
    seconds = time.perf_counter() - t
    return 100.0 * float((model.predict(fs, "test") == fs.labels["test"]).mean()), seconds
