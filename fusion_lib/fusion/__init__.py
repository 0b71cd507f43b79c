"""The fusion models: expert heads (``experts``), ``gates``, the end-to-end mixture of experts (``moe``),
the ``two_stage`` mixtures fit on calibrated expert outputs, the ``baselines`` (single backbones,
averaging, stacking), the shared ``label_space`` and the ``training`` loop they all use."""
