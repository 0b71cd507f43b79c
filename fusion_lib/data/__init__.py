"""The data layer: offline ``assets``, ``datasets``, frozen ``backbones``, feature ``extraction`` (and its
``distributed`` command line), the ``feature_set`` the models train on, the on-disk ``cache`` with its
``atomic`` file writes, the parameter ``checks`` and the compute ``device``."""
