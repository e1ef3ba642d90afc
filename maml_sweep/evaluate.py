"""The evaluation protocol: validation tasks, the test bank and adaptation curves.

Adaptation curves are plain mean squared error on each test task's held-out query points after
k = 0..max_steps inner steps, whatever the training loss scale; mean and 95% CI over the bank.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .maml import InnerLoop
from .streams import keyed_stream
from .tasks import Task

Z95 = 1.959963984540054  # normal quantile for a two-sided 95% interval


def validation_tasks(tasks, task_cfg, eval_cfg) -> list[Task]:
    """``eval.val_tasks`` tasks from the validation stream (same for every training seed)."""
    rng = keyed_stream(task_cfg, eval_cfg.seed, "val")
    return [tasks.sample(rng) for _ in range(eval_cfg.val_tasks)]


def test_bank(tasks, task_cfg, eval_cfg) -> list[Task]:
    """``eval.num_tasks`` test tasks: ``eval.support_size`` shots (default: the task's) and
    ``eval.query_size`` held-out points each, from the test stream."""
    shots = eval_cfg.support_size or tasks.support_size
    family = tasks.with_sizes(shots, eval_cfg.query_size)
    rng = keyed_stream(task_cfg, eval_cfg.seed, "test")
    return [family.sample(rng) for _ in range(eval_cfg.num_tasks)]


def summarise(init: str, mse: np.ndarray) -> list[dict]:
    """Rows of adaptation.csv for one init: mean and 95% CI half-width over tasks, per k."""
    n = mse.shape[0]
    sem = mse.std(axis=0, ddof=1) / np.sqrt(n)
    return [{"init": init, "k": k, "mse_mean": float(m), "mse_ci95": float(Z95 * s), "n_tasks": n}
            for k, (m, s) in enumerate(zip(mse.mean(axis=0), sem))]


def eval_inner(inner: InnerLoop, eval_cfg) -> InnerLoop:
    """The training inner loop with ``eval.inner_lr`` and ``eval.max_steps`` steps."""
    return dataclasses.replace(inner, lr=eval_cfg.inner_lr or inner.lr, steps=eval_cfg.max_steps)
