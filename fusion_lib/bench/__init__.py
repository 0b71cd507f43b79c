"""Benchmarks that print ratios measured in one run: feature ``extraction`` (and low precision), ``fusion``
training throughput, and the ``gpu`` check. Run them with ``python -m fusion_lib.bench``."""
