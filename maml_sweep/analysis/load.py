"""Run directories -> tidy pandas frames, in three stages: discovery (:func:`rundir_read.find_runs`),
reading (:func:`read_run`, one run directory through :mod:`maml_sweep.rundir`'s readers) and
columns (:func:`runs_frame`, :func:`curves_frame`, :func:`adaptation_frame`).

Runs that are starting, running, partial, diverged or corrupt never crash the loader: a run whose
config cannot be read is skipped, every other run is kept, and each oddity is recorded with a
stated reason. Long curves are thinned as they are read (:func:`metrics_csv.thin_rows`, at most
:data:`metrics_csv.MAX_CURVE_POINTS` rows per run), so memory and time stay bounded whatever a run logged.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import console, metrics_csv, rundir, rundir_read
from ..rundir import COMPLETED
from ..rundir_read import LoadError  # noqa: F401  (LoadError: part of this module's API)

# Text columns: pandas 3's string dtype ("str"); plain object columns on pandas 2.
STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
# Summary keys that are not per-run numbers.
_SUMMARY_TEXT = ("status", "error", "config_hash")
_SUMMARY_SKIP = ("versions",)
# Summary keys that are integer counts, not metrics (as are n_*, e.g. n_test_tasks).
_COUNTS = ("steps", "outer_steps", "diverged_step")
IDENTITY = ["run", "sweep", "path", "status"]


@dataclass
class RunSet:
    """What :func:`load_runs` returns.

    - ``runs``: one row per run (run, sweep, path, status, swept keys, config values, summary metrics);
    - ``curves``: long form (run, step, metric, value) from ``metrics.csv`` (thinned past
      :data:`metrics_csv.MAX_CURVE_POINTS` rows per run);
    - ``adaptation``: long form (run, init, k, mse_mean, ... n_tasks) from ``adaptation.csv``;
    - ``skipped``: (path, reason) for every directory that looked like a run but was not loaded;
    - ``issues``: (run, path, issue) for kept runs with something off (truncated metrics, no summary...);
    - ``swept``: the swept keys (columns of ``runs``), ``seed`` included when swept.
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    adaptation: pd.DataFrame
    skipped: pd.DataFrame
    issues: pd.DataFrame
    swept: list[str] = field(default_factory=list)
    metric_columns: list[str] = field(default_factory=list)

    @property
    def group_keys(self) -> list[str]:
        """Swept keys other than ``seed``: the keys that define a configuration."""
        return [k for k in self.swept if k != "seed"]

    @property
    def metrics(self) -> list[str]:
        """Numeric per-run metrics: the summaries' (val/train objective, test MSEs, cost) and
        ``last_val_meta_objective`` (the last logged value, for runs without a summary)."""
        return list(self.metric_columns)

    def counts(self) -> dict:
        """Runs per status, plus skipped directories, for stating what was loaded."""
        out = self.runs["status"].value_counts().to_dict() if len(self.runs) else {}
        out = {str(k): int(v) for k, v in out.items()}
        if len(self.skipped):
            out["skipped"] = len(self.skipped)
        return out


def load_runs(paths: str | os.PathLike | Iterable[str | os.PathLike],
              progress: Callable[[str], None] | None = None,
              max_points: int | None = metrics_csv.MAX_CURVE_POINTS) -> RunSet:
    """Load run directories, sweep directories, parents of several sweeps, or globs into a :class:`RunSet`.

    ``max_points``: curve rows kept per run (None: all). Raises :class:`LoadError` when a path does
    not exist or no run directory is found.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    where = ", ".join(str(p) for p in paths)
    run_dirs, skipped = rundir_read.find_runs(paths)
    if not run_dirs:
        raise LoadError(f"PATH {', '.join(repr(str(p)) for p in paths)}: no run directories found "
                        f"(a run has .hydra/config.yaml)")
    runs = read_runs(run_dirs, skipped, max_points, progress)
    if not runs:
        raise LoadError(f"PATH {where}: no readable runs ({len(skipped)} skipped: {skipped[0][1]})")
    ids = _label_paths([r.path for r in runs])
    runs_df, swept, metric_cols = runs_frame(runs, ids)
    issues = pd.DataFrame.from_records(
        [(ids[i], str(r.path), msg) for i, r in enumerate(runs) for msg in r.issues],
        columns=["run", "path", "issue"])
    return RunSet(runs_df, curves_frame(runs, ids), adaptation_frame(runs, ids),
                  pd.DataFrame.from_records(skipped, columns=["path", "reason"]), issues, swept, metric_cols)


# ---------------------------------------------------------------- reading

def flatten(config: dict, prefix: str = "") -> dict:
    """Nested dict -> {dotted key: leaf}; lists stay lists."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _cell(value):
    """A config leaf as a frame cell: lists become their compact text, e.g. ``[50, 50]``."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_cell(v)) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def override_column(key: str, flat: dict) -> str:
    """Column an override key shows up as: the key itself, ``<group>.name`` for a group choice, or
    ``override.<key>`` for a key outside the job config (e.g. a preset of Hydra settings)."""
    if key in flat:
        return key
    if f"{key}.name" in flat:
        return f"{key}.name"
    return f"override.{key}"


@dataclass
class Run:
    """One run directory as read: ``flat`` config cells (dotted key -> value), the columns its
    overrides name, its summary state, its metrics (thinned) and adaptation rows, and its issues."""

    path: Path
    flat: dict
    override_keys: list[str]
    state: rundir_read.RunState
    metrics: metrics_csv.Metrics
    adaptation: list[dict]
    issues: list[str]

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def summary(self) -> dict:
        return self.state.summary


def read_runs(run_dirs: list[Path], skipped: list[tuple[str, str]], max_points: int | None,
              progress: Callable[[str], None] | None = None) -> list[Run]:
    """Every readable run; an unreadable one goes to ``skipped`` as (path, reason). ``progress``
    hears the count, rate and ETA every 1,000 runs."""
    runs, t0 = [], time.perf_counter()
    for i, d in enumerate(run_dirs, 1):
        try:
            runs.append(read_run(d, max_points))
        except rundir.DamagedFile as e:
            skipped.append((str(d), str(e)))
        if progress and i % 1000 == 0:
            rate = i / max(time.perf_counter() - t0, 1e-9)
            progress(f"read {i}/{len(run_dirs)} runs ({rate:.0f} runs/s, ETA {(len(run_dirs) - i) / rate:.0f} s)")
    return runs


def read_run(run_dir: Path, max_points: int | None = metrics_csv.MAX_CURVE_POINTS) -> Run:
    """Read one run directory. Raises :class:`rundir.DamagedFile` only when its config is unreadable."""
    issues: list[str] = []
    flat = {k: _cell(v) for k, v in flatten(rundir_read.read_config(run_dir)).items()}
    override_keys = []
    try:
        overrides = rundir_read.read_overrides(run_dir)
    except rundir.DamagedFile as e:
        overrides = []
        issues.append(str(e))
    for o in overrides:  # a deleted key stays a column (empty for this run): it may be set in others
        col = o.key if o.op == "delete" else override_column(o.key, flat)
        if col not in flat and o.op != "delete":
            flat[col] = o.value
        if col not in override_keys:
            override_keys.append(col)
    state = rundir_read.read_state(run_dir)
    if state.issue:
        issues.append(state.issue)
    metrics = metrics_csv.read_metrics(run_dir, max_points)
    if metrics.issue:
        issues.append(metrics.issue)
    s = state.summary
    if state.status == COMPLETED and s.get("steps") is not None and s.get("outer_steps") is not None \
            and s["steps"] < s["outer_steps"]:
        issues.append(f"completed with {s['steps']} of {s['outer_steps']} steps")
    adaptation, issue = metrics_csv.read_adaptation(run_dir)
    if issue:
        issues.append(issue)
    return Run(Path(run_dir), flat, override_keys, state, metrics, adaptation, issues)


# ---------------------------------------------------------------- columns

def runs_frame(runs: list[Run], ids: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per run, swept keys, metric columns). Columns in order: identity (run, sweep, path,
    status), swept keys, seed, summary numbers, last_step and last_val_meta_objective (from the
    metrics log), the other config keys, then summary texts (error, config_hash)."""
    swept = swept_keys(runs)
    group = [k for k in swept if k != "seed"]
    config_keys = _union(r.flat for r in runs)
    text_keys, number_keys = _summary_keys(runs, config_keys)
    sweeps = [r.path.parent for r in runs]  # a sweep's job dirs share it; single runs pool by day
    sweep_label = _sweep_labels(sweeps)
    columns: dict[str, object] = {
        "run": pd.array(ids, dtype=STR),
        "sweep": pd.array([sweep_label[s] for s in sweeps], dtype=STR),
        "path": pd.array([str(r.path) for r in runs], dtype=STR),
        "status": pd.array([r.status for r in runs], dtype=STR),
    }
    columns.update(_summary_numbers(runs, number_keys))
    columns.update(_progress_columns(runs))
    others = [k for k in config_keys if k not in group and k != "seed"]
    for k in group + (["seed"] if "seed" in config_keys else []) + others:
        columns.setdefault(k, _typed([r.flat.get(k) for r in runs]))
    for k in text_keys:
        columns[k] = pd.array([None if r.summary.get(k) is None else str(r.summary[k]) for r in runs], dtype=STR)
    order = IDENTITY + group + ["seed"] + number_keys + ["last_step", "last_val_meta_objective"] + others + text_keys
    frame = pd.DataFrame({k: columns[k] for k in dict.fromkeys(order) if k in columns})
    metric_cols = [k for k in number_keys if not _is_count(k)] + ["last_val_meta_objective"]
    if _sweep_is_a_key(frame, group):
        swept = ["sweep"] + swept
    return frame, swept, metric_cols


def swept_keys(runs: list[Run]) -> list[str]:
    """Override keys (in first-seen order) whose values differ across the runs."""
    keys = _union(r.override_keys for r in runs)
    return [k for k in keys if len({repr(r.flat.get(k)) for r in runs}) > 1]


def _union(key_lists) -> list[str]:
    """Keys of several lists or dicts, once each, in first-seen order."""
    out: dict[str, None] = {}
    for keys in key_lists:
        out.update(dict.fromkeys(keys))
    return list(out)


def _is_count(key: str) -> bool:
    return key in _COUNTS or key.startswith("n_")


def _summary_keys(runs: list[Run], config_keys: list[str]) -> tuple[list[str], list[str]]:
    """(text keys other than status, number keys in reading order) of the summaries; a key that
    repeats a config key (like seed) is the config's."""
    keys = [k for k in _union(r.summary for r in runs) if k not in _SUMMARY_SKIP and k not in config_keys
            and not any(isinstance(r.summary.get(k), (dict, list)) for r in runs)]
    text = [k for k in keys if k in _SUMMARY_TEXT and k != "status"]
    numbers = sorted((k for k in keys if k not in _SUMMARY_TEXT), key=_summary_rank)
    return text, numbers


def _summary_numbers(runs: list[Run], keys: list[str]) -> dict:
    """Summary numbers as columns: counts as (nullable) integers, metrics as float (NaN when absent)."""
    out = {}
    for k in keys:
        vals = [r.summary.get(k) for r in runs]
        vals = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in vals]
        if _is_count(k):
            out[k] = _typed([None if v is None else int(v) for v in vals], "Int64")
        else:
            out[k] = np.asarray([np.nan if v is None else v for v in vals], dtype=float)
    return out


def _progress_columns(runs: list[Run]) -> dict:
    """How far each run got by its metrics log: ``last_step`` and ``last_val_meta_objective``."""
    last_step, last_val = [], []
    for r in runs:
        m = r.metrics
        if m.last is None:
            last_step.append(None)
            last_val.append(np.nan)
            continue
        last_step.append(int(m.last[m.columns.index("step")]))
        has_val = "val_meta_objective" in m.columns
        last_val.append(float(m.last[m.columns.index("val_meta_objective")]) if has_val else np.nan)
    return {"last_step": _typed(last_step, "Int64"), "last_val_meta_objective": np.asarray(last_val, dtype=float)}


def _sweep_is_a_key(frame: pd.DataFrame, group: list[str]) -> bool:
    """With more than one sweep, ``sweep`` is a configuration key when configurations recur across sweeps."""
    if frame["sweep"].nunique() < 2:
        return False
    if not group:
        return True
    return bool((frame.groupby(group, dropna=False)["sweep"].nunique() > 1).any())


def _typed(values: list, empty_dtype: str = "float64"):
    """A column with its proper dtype: bool, int64, float64 (nullable when values are missing), else str."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    missing = len(present) < len(values)
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        return pd.array(values, dtype="boolean") if missing else pd.array(values, dtype=bool)
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Int64") if missing else np.asarray(values, dtype=np.int64)
    if present and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present):
        return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
    if not present:
        return pd.array([None] * len(values), dtype="Int64") if empty_dtype == "Int64" \
            else np.full(len(values), np.nan)
    return pd.array([None if v is None else str(v) for v in values], dtype=STR)


def _label_paths(paths: list[Path]) -> list[str]:
    """Short unique labels: each path relative to the paths' common parent."""
    if not paths:
        return []
    if len(paths) == 1:
        return [paths[0].name or str(paths[0])]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    return [str(p.relative_to(common)) if p != common else p.name for p in paths]


def _sweep_labels(sweeps: list[Path]) -> dict[Path, str]:
    unique = sorted(set(sweeps), key=rundir_read.natural_key)
    if len(unique) == 1:
        p = unique[0]
        return {p: f"{p.parent.name}/{p.name}" if p.parent.name else p.name}
    return dict(zip(unique, _label_paths(unique)))


def _summary_rank(key: str):
    """Summary numbers in reading order: objectives, test MSEs, noise floor, cost, progress."""
    head = ["val_mse", "val_meta_objective", "train_meta_objective"]
    if key in head:
        return (0, head.index(key), 0, key)
    m = re.fullmatch(r"test_mse_k(\d+)", key)
    if m:
        return (1, 0, int(m.group(1)), key)
    if key.startswith("test_"):
        return (1, 1, 0, key)
    tail = ["noise_floor", "ms_per_step", "wall_s", "steps", "outer_steps", "diverged_step"]
    if key in tail:
        return (3, tail.index(key), 0, key)
    return (2, 0, 0, key)


def counts_text(rs: RunSet) -> str:
    """``8 completed, 1 diverged, 2 skipped``: what was loaded, in words."""
    parts = [console.counts_text([str(s) for s in rs.runs["status"]])]
    if len(rs.skipped):
        parts.append(f"{len(rs.skipped)} skipped")
    return ", ".join(p for p in parts if p)


def curves_frame(runs: list[Run], ids: list[str]) -> pd.DataFrame:
    """Long form (run, step, metric, value) from every run's (thinned) metrics, built in one go;
    ``run`` and ``metric`` are categoricals."""
    run_idx, steps, metric_codes, values = [], [], [], []
    names: list[str] = []
    for i, r in enumerate(runs):
        m = r.metrics
        if not len(m.values):
            continue
        s = m.columns.index("step")
        for j, name in enumerate(m.columns):
            if j == s:
                continue
            if name not in names:
                names.append(name)
            n = len(m.values)
            run_idx.append(np.full(n, i, dtype=np.int64))
            steps.append(m.values[:, s].astype(np.int64))
            metric_codes.append(np.full(n, names.index(name), dtype=np.int64))
            values.append(m.values[:, j])
    cat = lambda codes, cats: pd.Categorical.from_codes(codes, categories=cats)  # noqa: E731
    if not run_idx:
        return pd.DataFrame({"run": cat(np.empty(0, int), ids), "step": np.empty(0, np.int64),
                             "metric": cat(np.empty(0, int), names or ["val_meta_objective"]),
                             "value": np.empty(0, float)})
    return pd.DataFrame({"run": cat(np.concatenate(run_idx), ids), "step": np.concatenate(steps),
                         "metric": cat(np.concatenate(metric_codes), names), "value": np.concatenate(values)})


def adaptation_frame(runs: list[Run], ids: list[str]) -> pd.DataFrame:
    """Long form (run, then ``rundir.ADAPTATION_COLUMNS``) from every run's adaptation.csv."""
    records = [{"run": ids[i], **rec} for i, r in enumerate(runs) for rec in r.adaptation]
    out = pd.DataFrame.from_records(records, columns=["run", *rundir.ADAPTATION_COLUMNS])
    out["run"] = out["run"].astype(STR)
    out["init"] = out["init"].astype(STR)
    out["k"] = out["k"].astype(np.int64)
    for c in rundir.ADAPTATION_COLUMNS[2:]:
        out[c] = out[c].astype(float)
    return out
