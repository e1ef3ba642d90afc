"""A config's working parts: ``build(cfg)`` -> model, task distribution, algorithm, outer optimizer,
inner loop. One place, used by the trainer and by :func:`maml_sweep.rundir.restore` (the analysis
rebuilds a finished run from its directory without importing the trainer)."""
from __future__ import annotations

from typing import NamedTuple

from .algorithms import ALGORITHMS, Algorithm
from .maml import InnerLoop
from .model import MLP
from .optim import OPTIMIZERS
from .tasks import TaskFamily, make_tasks


class Components(NamedTuple):
    model: MLP
    tasks: TaskFamily  # a task distribution from tasks.TASK_FAMILIES
    algorithm: Algorithm  # an algorithm from algorithms.ALGORITHMS, built from cfg.algorithm
    optimizer: object  # an outer optimizer from optim.OPTIMIZERS
    inner: InnerLoop


def build(cfg) -> Components:
    """(model, task distribution, algorithm, outer optimizer, inner loop) from a config."""
    dtype = cfg.train.get("dtype", "float64")  # runs recorded before train.dtype existed: float64
    tasks = make_tasks(cfg.task, dtype)
    model = MLP(tuple(cfg.model.hidden), cfg.model.activation, dtype, tasks.input_dim)
    opt_kwargs = {k: v for k, v in cfg.optimizer.items() if k != "name"}
    optimizer = OPTIMIZERS[cfg.optimizer.name](**opt_kwargs)
    a = cfg.algorithm
    inner = InnerLoop(lr=a.inner_lr, steps=a.inner_steps, first_order=a.first_order, loss_scale=a.loss_scale)
    return Components(model, tasks, ALGORITHMS[a.name](a), optimizer, inner)
