"""Paired comparisons on the shared test bank: configurations of one condition against its best.

The best configuration of a condition is chosen on validation (``val_mse``); the effect is measured
on the test bank. Runs of one task condition see the very same test tasks (``test_mse.npz`` holds
every task's MSE), and configurations share seeds, so differences are paired over seeds and tasks
(:mod:`maml_sweep.analysis.intervals`: two-way random-effects t-intervals that hold at 3-5 seeds).
Configurations on different test banks are never compared; configurations of one bank without
common seeds get an estimate and no interval.
"""
from __future__ import annotations

import ast
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import rundir, stats
from ..config import EvalConfig
from ..roles import is_condition
from ..rundir import COMPLETED
from . import intervals
from .aggregate import config_mask

COLUMNS = ["k", "pairing", "n_seeds", "n_tasks", "mean_diff", "mean_diff_low", "mean_diff_high",
           "median_diff", "median_diff_low", "median_diff_high", "iqm_diff", "iqm_diff_low", "iqm_diff_high",
           "p_improve", "p_improve_low", "p_improve_high", "blowup", "blowup_best"]


def per_task_mse(run_dir: Path) -> np.ndarray | None:
    """The run's own initialisation's per-task test MSE (T, max_steps + 1), or None without
    ``test_mse.npz``. The first array is the run's own init (``trained``/``pretrain``/``scratch``)."""
    path = Path(run_dir) / rundir.TEST_MSE
    if not os.path.lexists(path):  # a dangling link is there, and damaged
        return None
    if not path.is_file() or path.is_symlink():
        raise rundir.DamagedFile(f"{path}: not a regular file")
    arrays = rundir.load_params(path)
    return next(iter(arrays.values())) if arrays else None


def report_steps(runs: pd.DataFrame) -> list[int]:
    """``eval.report_steps`` of the runs (the first run's; the schema's default if not recorded)."""
    if "eval.report_steps" in runs.columns and len(runs):
        value = runs["eval.report_steps"].iloc[0]
        try:
            steps = value if isinstance(value, (list, tuple)) else ast.literal_eval(str(value))
            return [int(k) for k in steps]
        except (ValueError, SyntaxError, TypeError):
            pass
    return list(EvalConfig().report_steps)


def bank_key(run: pd.Series) -> tuple:
    """What decides a run's test tasks: every ``task.*`` value and the bank keys of ``eval``."""
    cols = sorted(c for c in run.index if is_condition(c))
    return tuple((c, str(run[c])) for c in cols)


def config_runs(runs: pd.DataFrame, keys: list[str], config,
                issues: list | None = None) -> dict[int, tuple[np.ndarray, tuple]]:
    """seed -> (per-task MSE, bank key) for the completed runs of one configuration that have one.
    A run whose ``test_mse.npz`` is damaged (or not a regular file) is left out; its one-line reason
    goes to ``issues`` as (run, path, reason) when given."""
    out = {}
    mask = config_mask(runs, keys, config) & (runs["status"].astype(str) == COMPLETED)
    for _, run in runs[mask].iterrows():
        try:
            mse = per_task_mse(Path(run["path"]))
        except (rundir.DamagedFile, rundir.RunDirError, OSError, ValueError, zipfile.BadZipFile) as e:
            if issues is not None:
                issues.append((run["run"], run["path"], f"left out of the test statistics: {e}"))
            continue
        if mse is not None and mse.ndim == 2:
            out[int(run["seed"]) if "seed" in run.index and pd.notna(run["seed"]) else 0] = (mse, bank_key(run))
    return out


def scores_at(runs_of: dict, k: int, seeds: list[int] | None = None) -> np.ndarray | None:
    """(S, T) per-task MSE at step k of the given seeds (all by default), or None when k is past a run's steps."""
    seeds = sorted(runs_of) if seeds is None else seeds
    if not seeds or any(k >= runs_of[s][0].shape[1] for s in seeds):
        return None
    return np.stack([runs_of[s][0][:, k] for s in seeds])


def compare(other: dict, best: dict, k: int) -> dict | None:
    """``other`` minus ``best`` at step k, each a dict seed -> (per-task MSE, bank key) as from
    :func:`config_runs`. None when they are on different test banks (never compared)."""
    if not other or not best:
        return None
    banks = {b for _, b in [*other.values(), *best.values()]}
    if len(banks) > 1:
        return None
    common = sorted(set(other) & set(best))
    a, b = scores_at(other, k, common or None), scores_at(best, k, common or None)
    if a is None or b is None:
        return None
    row = {"k": k, "n_seeds": len(common), "n_tasks": a.shape[1],
           "blowup": float(stats.blown_up(a).mean()), "blowup_best": float(stats.blown_up(b).mean())}
    if not common:  # one bank, other seeds: an estimate, no paired interval
        row["pairing"] = "unpaired (no common seeds): no interval"
        row["n_seeds"] = min(len(a), len(b))
        for stat in intervals.STATISTICS:
            ia, ib = intervals.interval(a, stat), intervals.interval(b, stat)
            row.update({f"{stat}_diff": ia.estimate - ib.estimate, f"{stat}_diff_low": math.nan,
                        f"{stat}_diff_high": math.nan})
        row.update(p_improve=math.nan, p_improve_low=math.nan, p_improve_high=math.nan)
        return row
    row["pairing"] = "seeds and tasks" if len(common) > 1 else "tasks (one seed)"
    for stat in intervals.STATISTICS:
        iv = intervals.paired_interval(a, b, stat)
        row.update({f"{stat}_diff": iv.estimate, f"{stat}_diff_low": iv.low, f"{stat}_diff_high": iv.high})
    p = intervals.probability_of_improvement(a, b)
    row.update(p_improve=p.estimate, p_improve_low=p.low, p_improve_high=p.high)
    return row


def paired_rows(runs: pd.DataFrame, keys: list[str], best, others: pd.DataFrame, steps: list[int],
                scores=None) -> pd.DataFrame:
    """Each configuration of ``others`` (rows with the ``keys`` columns) minus ``best`` at each k of
    ``steps``: one row per (configuration, k), the ``keys`` columns then :data:`COLUMNS`. ``scores``:
    config -> :func:`config_runs`'s dict (a report passes its cache; default: read the files)."""
    scores = scores or (lambda config: config_runs(runs, keys, config))
    best_runs = scores(best)
    rows = []
    for _, config in others.iterrows():
        other = scores(config)
        for k in steps:
            row = compare(other, best_runs, k)
            if row is not None:
                rows.append({**{c: config[c] for c in keys}, **row})
    return pd.DataFrame(rows, columns=[*keys, *COLUMNS])
