"""Hyperparameter search on Optuna (``optuna>=4``, ask-and-tell) behind ``-m sweep=optuna``.

- :mod:`.space`: ``hydra.sweeper.params`` and the command line (``tag(log, interval(a, b))``,
  ``choice(...)``, ``range(...)``) as Optuna distributions, and a trial's parameters as overrides;
- :mod:`.study`: storage (SQLite by default, any Optuna URL, or a journal file), sampler, pruner,
  the study itself, and a quiet Optuna (no plugin chatter, no colour codes);
- :mod:`.sweeper`: the Hydra sweeper (registered through ``hydra_plugins.maml_sweep_search``): asks
  for trials, launches each through the configured launcher, tells the results;
- :mod:`.trial`: the job's side: reports ``val_mse`` at each evaluation and says when to prune.

Nothing here imports Optuna at import time: Hydra scans the plugin on every ``maml-sweep`` command.
"""
