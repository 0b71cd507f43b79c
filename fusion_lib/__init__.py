"""fusion_lib: adaptive fusion of frozen pre-trained backbones (a companion to Resheff, Lieder and Hope, ICPRAM 2019).

Modules: ``assets`` (offline weights, word vectors, datasets), ``backbones``, ``data``, ``features``
(cached extraction), ``experts``, ``gates``, ``moe``, ``baselines``, ``label_embedding``, ``metrics``,
``agreement``, ``gate_analysis``, ``ablations``, ``frontier`` (accuracy against compute),
``label_study``, ``experiment`` (runner and CLI),
``profiles`` and ``book`` (notebook execution and the book build), ``bench`` (benchmarks).
"""
__version__ = "0.1.0"
