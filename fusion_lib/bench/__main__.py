"""``python -m fusion_lib.bench features|precision|fusion|gpu [--help]``."""

from __future__ import annotations

import sys

COMMANDS = {
    "features": "extraction throughput: the pipeline against raw forward passes",
    "precision": "low-precision (bf16/fp16) extraction: speed-up and linear-probe accuracy",
    "fusion": "one seed of every method: seconds, shared fits and time over arithmetic",
    "gpu": "on a CUDA machine: ImageNet check, fp16 against CPU fp32, pipeline ratio, one MoE",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to one benchmark; without one (or with ``--help``) print the list."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        usage = f"usage: python -m fusion_lib.bench {{{','.join(COMMANDS)}}} [--help]\n" + "\n".join(
            f"  {k:10s} {v}" for k, v in COMMANDS.items()
        )
        asked = argv[:1] in (["-h"], ["--help"])
        print(usage, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    command, rest = argv[0], argv[1:]
    # each benchmark imports its own module when it runs, so that --help and the list answer at once
    if command == "features":
        from fusion_lib.bench.extraction import bench_features

        return bench_features(rest)
    if command == "precision":
        from fusion_lib.bench.extraction import bench_precision

        return bench_precision(rest)
    if command == "gpu":
        from fusion_lib.bench.gpu import main as gpu_main

        return gpu_main(rest)
    from fusion_lib.bench.fusion import main as fusion_main

    return fusion_main(rest)


if __name__ == "__main__":
    sys.exit(main())
