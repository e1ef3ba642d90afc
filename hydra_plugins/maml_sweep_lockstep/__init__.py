"""Hydra finds plugins in the ``hydra_plugins`` namespace: this registers maml-sweep's lockstep launcher
(``hydra/launcher=lockstep``, conf/hydra/launcher/lockstep.yaml). The work is in :mod:`maml_sweep.lockstep`."""
