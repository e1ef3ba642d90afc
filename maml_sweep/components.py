"""A config's working parts: ``build(cfg)`` -> model, task distribution, algorithm, outer optimizer,
inner loop. One place, used by the trainer and by :func:`restore` (a finished run rebuilt from its
directory, for the analysis and the tools, without importing the trainer); :func:`run_config` is
the one way a run's recorded config is read back for building."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .algorithms import ALGORITHMS, Algorithm
from .config import Config, check_values
from .maml import InnerLoop
from .model import MLP
from .optim import OPTIMIZERS
from .rundir import HYDRA_CONFIG, PARAMS, load_params
from .rundir_read import read_config
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


class RestoreError(ValueError):
    """A run that cannot be rebuilt by this version (no params, a config it cannot read or check);
    the message is one line naming the run and why."""


def run_config(run_dir: Path):
    """The run's recorded config (``.hydra/config.yaml``) as a DictConfig typed by the schema
    (``train``/``eval`` keys added since the run was recorded take their defaults), after
    :func:`maml_sweep.config.check_values`. Raises :class:`RestoreError` for a config this version
    cannot read or that fails the checks (the message lists the problems), :class:`DamagedFile`
    for an unreadable file."""
    run_dir = Path(run_dir)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), read_config(run_dir))
    except OmegaConfBaseException as exc:
        first = str(exc).strip().splitlines()[0]
        raise RestoreError(f"{run_dir / HYDRA_CONFIG}: this version cannot read it ({first})") from None
    problems = check_values(cfg)
    if problems:
        raise RestoreError(f"{run_dir}: this version cannot rebuild the run: {'; '.join(problems)}")
    return cfg


@dataclass
class Restored:
    """A finished run rebuilt from its directory: ``config`` (the run's config, :func:`run_config`),
    its ``model``, task distribution ``tasks``, ``algorithm`` and ``inner`` loop (as the trainer
    built them), and ``params`` (the final meta-parameters, one array per name)."""

    config: object
    model: object
    tasks: object
    algorithm: object
    inner: object
    params: dict


def restore(run_dir: Path) -> Restored:
    """Rebuild a finished run from ``.hydra/config.yaml`` and ``params.npz`` with :func:`build`
    (never from the checkpoint, which holds training state, not a finished run).

    Raises :class:`RestoreError` when the run has no ``params.npz`` (it did not complete) or a config
    this version cannot build (:func:`run_config`), :class:`DamagedFile` for an unreadable config or
    params. Anything else is a bug and propagates.
    """
    run_dir = Path(run_dir)
    params_file = run_dir / PARAMS
    if not os.path.lexists(params_file):
        raise RestoreError(f"{run_dir}: no {PARAMS} (the run has not completed)")
    cfg = run_config(run_dir)
    params = load_params(params_file)
    parts = build(cfg)
    return Restored(cfg, parts.model, parts.tasks, parts.algorithm, parts.inner, params)
