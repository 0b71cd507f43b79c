"""The studies: an experiment's ``config``, the method ``registry`` and the built-in ``methods``, the
per-seed engine (``seed_run``), the ``runner`` and its command line (``cli``); the ``agreement``,
``gate_analysis``, ``ablations``, ``label_study`` and ``frontier`` studies; ``metrics``, ``stats`` (paired
confidence intervals) and the paper's ``claims``; ``study``, one run's results over every dataset and zoo
with the questions asked of them."""
