"""Hydra finds plugins in the ``hydra_plugins`` namespace: this registers maml-sweep's search sweeper
(``hydra/sweeper=optuna``, conf/hydra/sweeper/optuna.yaml). The work is in :mod:`maml_sweep.search`."""
