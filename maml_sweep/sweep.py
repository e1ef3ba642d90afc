"""``sweep_summary.csv``: one row per run of a multirun, built from the run directories.

Written by the :class:`SweepSummary` Hydra callback after every job (inside the worker, so it works
with every launcher) and at the end of the multirun; a lock serialises concurrent writers.
"""
from __future__ import annotations

import csv
import fcntl
import io
from contextlib import contextmanager
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from . import rundir

SWEEP_SUMMARY = "sweep_summary.csv"
HEADLINE = ("status", "steps", "outer_steps", "val_meta_objective", "train_meta_objective", "wall_s",
            "ms_per_step", "diverged_step", "error")


def run_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's run directories (numbered subdirectories holding a Hydra config), in job order."""
    found = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def summary_rows(sweep_dir: Path) -> list[dict]:
    """One dict per run: job number, overrides (joined, and one column per key), headline metrics."""
    rows = []
    for run in run_dirs(sweep_dir):
        overrides_file = run / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        summary = rundir.read_summary(run) or {"status": "pending"}
        row = {"job": int(run.name), "overrides": " ".join(overrides)}
        row.update(dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o))
        row.update({k: summary.get(k) for k in HEADLINE})
        rows.append(row)
    return rows


def write_sweep_summary(sweep_dir: Path) -> Path:
    """(Re)write ``sweep_summary.csv`` in ``sweep_dir`` atomically; returns its path."""
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
    return path


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class SweepSummary(Callback):
    """Keeps ``sweep_summary.csv`` current in a multirun's sweep directory."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_sweep_summary(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config, **kwargs) -> None:
        write_sweep_summary(Path(config.hydra.sweep.dir))
