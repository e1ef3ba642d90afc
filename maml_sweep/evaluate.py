"""The evaluation protocol: validation tasks, the test bank, and what is kept of the test results.

Computing the per-task MSE matrices (each algorithm's ``adaptation_mse``, :mod:`maml_sweep.algorithms`, on
:func:`test_bank`) is
separate from summarising them (:func:`record`): plain mean squared error on each test task's
held-out query points after k = 0..max_steps inner steps, whatever the training loss scale, one
(T, max_steps + 1) matrix per initialisation. :func:`record` keeps the matrices
(``test_mse.npz``), writes their statistics over tasks (``adaptation.csv``, see
:mod:`maml_sweep.stats`) and returns the summary keys at ``eval.report_steps``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import metrics_csv, rundir, stats
from .maml import InnerLoop
from .streams import keyed_stream
from .tasks import Task

log = logging.getLogger(__name__)
PROGRESS_CHUNK = 2000  # tasks per progress step of a long evaluation (the default banks are one chunk)


def validation_tasks(tasks, task_cfg, eval_cfg) -> list[Task]:
    """``eval.val_tasks`` tasks from the validation stream, drawn as :func:`test_bank` draws (the
    test shots and held-out points): the same for every training seed, algorithm and rng mode of
    one task config (the shared validation behind ``val_mse``)."""
    return _draw(tasks, task_cfg, eval_cfg, "val", eval_cfg.val_tasks)


def test_bank(tasks, task_cfg, eval_cfg) -> list[Task]:
    """``eval.num_tasks`` test tasks: ``eval.support_size`` shots (default: the task's) and
    ``eval.query_size`` held-out points each, from the test stream."""
    return _draw(tasks, task_cfg, eval_cfg, "test", eval_cfg.num_tasks)


def _draw(tasks, task_cfg, eval_cfg, stream: str, n: int) -> list[Task]:
    """``n`` tasks of the test protocol's sizes from the keyed ``stream``."""
    family = tasks.with_sizes(eval_cfg.support_size or tasks.support_size, eval_cfg.query_size)
    rng = keyed_stream(task_cfg, eval_cfg.seed, stream)
    return [family.sample(rng) for _ in range(n)]


def eval_inner(inner: InnerLoop, eval_cfg) -> InnerLoop:
    """The training inner loop with ``eval.inner_lr`` and ``eval.max_steps`` steps."""
    return dataclasses.replace(inner, lr=eval_cfg.inner_lr or inner.lr, steps=eval_cfg.max_steps)


def val_inner(inner: InnerLoop, eval_cfg) -> InnerLoop:
    """The inner loop ``val_mse`` scores: the test's (``eval.inner_lr``) for ``eval.val_step`` steps
    (default: the training ``inner_steps``)."""
    steps = inner.steps if eval_cfg.val_step is None else eval_cfg.val_step
    return dataclasses.replace(inner, lr=eval_cfg.inner_lr or inner.lr, steps=steps)


def summarise(init: str, mse: np.ndarray) -> list[dict]:
    """Rows of adaptation.csv for one init's per-task MSE (T, K): statistics over tasks per k."""
    return _rows(init, stats.summarise(mse), mse.shape[0])


def _rows(init: str, s: dict, n_tasks: int) -> list[dict]:
    """adaptation.csv rows from :func:`stats.summarise`'s statistics ``s`` (arrays of shape (K,))."""
    return [{"init": init, "k": k, "mse_mean": s["mean"][k], "mse_ci95_low": s["ci95_low"][k],
             "mse_ci95_high": s["ci95_high"][k], "mse_median": s["median"][k], "mse_trimmed": s["trimmed"][k],
             "blowup_frac": s["blowup"][k], "n_tasks": n_tasks} for k in range(len(s["mean"]))]


def summary_keys(s: dict, report_steps, inner_steps: int) -> dict:
    """summary.json's test keys from the trained init's statistics ``s`` (:func:`stats.summarise`
    of its (T, max_steps + 1) per-task MSE): for each k in ``report_steps``, ``test_mse_k<k>``
    (mean over tasks), ``test_median_k<k>``, ``test_trimmed_k<k>`` (10% trimmed mean),
    ``test_blowup_k<k>`` (fraction of tasks); and ``test_mse_at_inner_steps`` (the mean at the
    training inner_steps, or at max_steps if fewer)."""
    out = {}
    for k in report_steps:
        out.update({f"test_mse_k{k}": float(s["mean"][k]), f"test_median_k{k}": float(s["median"][k]),
                    f"test_trimmed_k{k}": float(s["trimmed"][k]), f"test_blowup_k{k}": float(s["blowup"][k])})
    out["test_mse_at_inner_steps"] = float(s["mean"][min(inner_steps, len(s["mean"]) - 1)])
    return out


def record(out_dir: Path, mse: dict[str, np.ndarray], label: str, report_steps, inner_steps: int) -> dict:
    """Keep per-task MSE matrices ``mse`` (init name -> (T, K)) in ``test_mse.npz``, their
    statistics in ``adaptation.csv``; returns the summary keys of init ``label``."""
    out_dir = Path(out_dir)
    rundir.save_arrays(out_dir / rundir.TEST_MSE, mse)
    summaries = {init: stats.summarise(m) for init, m in mse.items()}
    metrics_csv.write_adaptation_csv(out_dir / rundir.ADAPTATION,
                                [row for init, m in mse.items() for row in _rows(init, summaries[init], m.shape[0])])
    return {**summary_keys(summaries[label], report_steps, inner_steps), "n_test_tasks": int(mse[label].shape[0])}


def in_chunks(curves: Callable[[Sequence[Task]], np.ndarray], bank: Sequence[Task], init: str) -> np.ndarray:
    """``curves(bank)`` (T, k) computed :data:`PROGRESS_CHUNK` tasks at a time, logging tasks done,
    rate and ETA after each chunk when there is more than one. Each task's curve is computed on its
    own, so the result equals ``curves(bank)``; a bank of one chunk is exactly that call."""
    if len(bank) <= PROGRESS_CHUNK:
        return curves(bank)
    parts, t0 = [], time.perf_counter()
    for start in range(0, len(bank), PROGRESS_CHUNK):
        parts.append(curves(bank[start:start + PROGRESS_CHUNK]))
        done = start + len(parts[-1])
        rate = done / max(time.perf_counter() - t0, 1e-9)
        log.info("evaluating %s on the test bank: %d/%d tasks  %.0f tasks/s  ETA %.0f s",
                 init, done, len(bank), rate, (len(bank) - done) / rate)
    return np.concatenate(parts)
