"""The studies: an experiment's ``config``, the ``methods`` registry, the ``runner`` and its command line
(``cli``); the ``agreement``, ``gate_analysis``, ``ablations``, ``label_study`` and ``frontier`` studies;
``metrics``, ``stats`` (paired confidence intervals) and the paper's ``claims``."""
