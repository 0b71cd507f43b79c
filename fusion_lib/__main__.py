"""Command line: `python -m fusion_lib assets list|fetch [NAME...]`, `... run ...` and `... extract ...`."""

from __future__ import annotations

import argparse
import logging
import sys


# Each command imports its own module when it runs: `assets` must not pay for torch and the studies
# (about 5 s on this machine), and it runs first in every set-up.
def _assets(argv: list[str]) -> int:
    from fusion_lib.data import assets

    parser = argparse.ArgumentParser(prog="python -m fusion_lib assets", description="Offline assets.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the registry and what is cached")
    fetch = sub.add_parser("fetch", help="fetch, verify and convert assets (all by default)")
    fetch.add_argument("names", nargs="*", help=f"any of: {', '.join(assets.ASSETS)}")
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        rows = assets.asset_table()
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
        print("  ".join(k.ljust(w) for k, w in widths.items()))
        for r in rows:
            print("  ".join(r[k].ljust(w) for k, w in widths.items()))
        print(f"cache: {assets.cache_root()}")
        return 0
    try:
        paths = assets.fetch_all(args.names or None, force=args.force)
    except (KeyError, assets.AssetError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: verified, {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "assets": "offline weights, word vectors and datasets",
        "run": "run fusion methods over seeds and print accuracies with 95% CIs (see `run --help`)",
        "extract": "extract and cache features; under torchrun, sharded across ranks (see `extract --help`)",
    }
    if not argv or argv[0] not in commands:
        print(
            "usage: python -m fusion_lib {assets,run,extract} ...\n"
            + "\n".join(f"  {k:7s} {v}" for k, v in commands.items()),
            file=sys.stderr,
        )
        return 2
    # the library's own messages (e.g. waiting for another process's cache entry) on stderr, once
    lib = logging.getLogger("fusion_lib")
    if not lib.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        lib.addHandler(handler)
        lib.setLevel(logging.INFO)
    if argv[0] == "assets":
        return _assets(argv[1:])
    if argv[0] == "extract":
        from fusion_lib.data.distributed import main as extract_main

        return extract_main(argv[1:])
    from fusion_lib.studies.cli import main as run_main

    return run_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
