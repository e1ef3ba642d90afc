"""``sweep_summary.csv``: one row per run of a multirun, built from the run directories, and the
sweep's progress (runs finished of planned, rate, ETA).

Written by the :class:`SweepSummary` Hydra callback after every job (inside the worker, so it works
with every launcher) and at the end of the multirun; a lock serialises concurrent writers.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from . import rundir

log = logging.getLogger(__name__)
PLAN = ".sweep_plan.json"

SWEEP_SUMMARY = "sweep_summary.csv"
HEADLINE = ("status", "steps", "outer_steps", "val_meta_objective", "train_meta_objective", "wall_s",
            "ms_per_step", "diverged_step", "error")


def summary_rows(sweep_dir: Path) -> list[dict]:
    """One dict per job: job number, overrides (joined, and one column per key: a deleted key's
    cell is empty), status (a :mod:`rundir` status word) and headline metrics."""
    rows = []
    for run in rundir.sweep_jobs(sweep_dir):
        state = rundir.read_state(run)
        try:
            overrides = rundir.read_overrides(run)
            row = {"job": int(run.name), "overrides": " ".join(o.text for o in overrides)}
        except rundir.DamagedFile as e:
            overrides, row = [], {"job": int(run.name), "overrides": f"({e})"}
        row.update({o.key: o.value for o in overrides})
        row.update({k: state.summary.get(k) for k in HEADLINE}, status=state.status)
        rows.append(row)
    return rows


def write_sweep_summary(sweep_dir: Path) -> list[dict]:
    """(Re)write ``sweep_summary.csv`` in ``sweep_dir`` atomically; returns its rows."""
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir / ".sweep_summary.lock"):
        rows = summary_rows(sweep_dir)
        columns = ["job", "overrides"]
        for row in rows:
            columns += [k for k in row if k not in columns and k not in HEADLINE]
        columns += list(HEADLINE)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path = sweep_dir / SWEEP_SUMMARY
        with rundir.atomic_path(path) as tmp:
            tmp.write_text(text.getvalue())
    return rows


def planned_jobs(config) -> int | None:
    """Jobs this multirun launches: Optuna's ``n_trials``, or the basic sweeper's grid size
    (its own expansion of ``hydra.sweeper.params`` and the command line); None if unknown."""
    sweeper = config.hydra.sweeper
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    args = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()] + list(config.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(args)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))
    except HydraException:
        return None


def progress(rows: list[dict], plan: dict, now: float) -> dict:
    """Runs ended (by status), planned, rate since the sweep started (runs/min) and ETA (s)."""
    ended = [r["status"] for r in rows if r["status"] in rundir.ENDED]
    minutes = max(now - plan["started"], 1e-9) / 60
    rate = len(ended) / minutes
    planned = plan.get("planned")
    eta = (planned - len(ended)) / rate * 60 if planned and rate > 0 else None
    return {"ended": len(ended), "planned": planned, "per_min": rate, "eta_s": eta,
            "counts": {s: ended.count(s) for s in rundir.ENDED if s in ended}}


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class SweepSummary(Callback):
    """Keeps ``sweep_summary.csv`` current in a multirun's sweep directory and logs the sweep's
    progress after every job."""

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_json(sweep_dir / PLAN, {"planned": planned_jobs(config), "started": time.time()})

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_sweep_summary(sweep_dir)
        if (sweep_dir / PLAN).exists():
            p = progress(rows, json.loads((sweep_dir / PLAN).read_text()), time.time())
            eta = "?" if p["eta_s"] is None else f"{p['eta_s']:.0f}s"
            counts = ", ".join(f"{n} {status}" for status, n in p["counts"].items())
            log.info("sweep: %d/%s runs ended (%s) | %.1f runs/min | ETA %s", p["ended"], p["planned"] or "?",
                     counts, p["per_min"], eta)

    def on_multirun_end(self, config, **kwargs) -> None:
        write_sweep_summary(Path(config.hydra.sweep.dir))
