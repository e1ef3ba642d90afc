"""Run directories -> tidy pandas frames.

Reads only what runs leave on disk (the run-directory contract). Runs that are starting,
running, partial, diverged or corrupt never crash the loader: a run whose config cannot be read
is skipped, every other run is kept, and each oddity is recorded with a stated reason.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import yaml

from .. import rundir

try:
    _YAML_LOADER = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml
    _YAML_LOADER = yaml.SafeLoader

# Text columns: pandas 3's string dtype ("str"); plain object columns on pandas 2.
STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
CONFIG, OVERRIDES = rundir.HYDRA_CONFIG, rundir.HYDRA_OVERRIDES
# Summary keys that are not per-run numbers.
_SUMMARY_TEXT = ("status", "error", "config_hash")
_SUMMARY_SKIP = ("versions",)
# Summary keys that are integer counts, not metrics (as are n_*, e.g. n_test_tasks).
_COUNTS = ("steps", "outer_steps", "diverged_step")
# Statuses whose final metrics mean what they say.
COMPLETED = "completed"
FAILED_STATUSES = ("diverged", "failed")


class LoadError(ValueError):
    """Bad input to the loader (a path that does not exist, no runs found); one clear line."""


@dataclass
class RunSet:
    """What :func:`load_runs` returns.

    - ``runs``: one row per run (run, sweep, path, status, swept keys, config values, summary metrics);
    - ``curves``: long form (run, step, metric, value) from ``metrics.csv``;
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


# ---------------------------------------------------------------- discovery

def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Run directories (those with ``.hydra/config.yaml``) under run dirs, sweep dirs, parents or globs.

    Returns (run dirs in natural order, [(dir, reason)] for dirs with ``.hydra/`` but no config).
    Raises :class:`LoadError` for a path or glob that matches nothing.
    """
    found: dict[Path, None] = {}
    no_config: dict[Path, str] = {}
    for arg in paths:
        arg = os.path.expanduser(str(arg))
        if os.path.exists(arg):
            matches = [arg]
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise LoadError(f"PATH {arg!r} matches no files (give run or sweep directories, or globs)")
        else:
            raise LoadError(f"PATH {arg!r} does not exist (give run or sweep directories, or globs)")
        for m in matches:
            if not os.path.isdir(m):
                continue
            for root, dirs, files in os.walk(m):
                if ".hydra" in dirs:
                    run = Path(root).resolve()
                    if os.path.isfile(os.path.join(root, CONFIG)):
                        found[run] = None
                    else:
                        no_config[run] = "no .hydra/config.yaml (run starting or not a Hydra job)"
                    dirs[:] = []  # runs do not nest
                else:
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
    runs = sorted(found, key=_natural_key)
    skipped = [(str(p), r) for p, r in sorted(no_config.items(), key=lambda i: _natural_key(i[0]))
               if p not in found]
    return runs, skipped


# ---------------------------------------------------------------- single files

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


def parse_override(text: str) -> tuple[str, str] | None:
    """``+task.bins=3`` -> (``task.bins``, ``3``); None for deletions and hydra.* overrides."""
    text = str(text).strip()
    if "=" not in text or text.startswith("~"):
        return None
    key, value = text.split("=", 1)
    key = key.lstrip("+").strip()
    if key.startswith("hydra.") or key == "hydra" or not key:
        return None
    if "@" in key:  # group@package=choice
        key = key.split("@", 1)[0]
    return key, value.strip()


def override_column(key: str, flat: dict) -> str:
    """Column an override key shows up as: the key itself, or ``<group>.name`` for a group choice."""
    if key in flat:
        return key
    if f"{key}.name" in flat:
        return f"{key}.name"
    return key


def read_metrics_csv(path: Path) -> tuple[list[str], np.ndarray, str | None]:
    """(columns, float array of rows, issue or None). Stops at the first malformed line:
    a truncated last line (a killed run) or garbage never raises."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return [], np.empty((0, 0)), f"metrics.csv unreadable ({e.strerror})"
    lines = text.split("\n")
    header = [h.strip() for h in lines[0].split(",")]
    if "step" not in header:
        return [], np.empty((0, 0)), "metrics.csv has no header row with 'step'"
    ncol = len(header)
    rows = []
    issue = None
    body = lines[1:]
    if body and body[-1] == "":
        body = body[:-1]  # the final newline
    for i, line in enumerate(body):
        parts = line.split(",")
        try:
            if len(parts) != ncol:
                raise ValueError
            rows.append([float(p) for p in parts])
        except ValueError:
            last = i == len(body) - 1
            issue = ("metrics.csv: truncated last line dropped" if last else
                     f"metrics.csv: malformed line {i + 2}; kept the {len(rows)} row(s) before it")
            break
    arr = np.asarray(rows, dtype=float).reshape(len(rows), ncol)
    return header, arr, issue


def read_adaptation_csv(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """adaptation.csv as a frame (columns ``rundir.ADAPTATION_COLUMNS``; missing ones NaN), or (None, issue)."""
    try:
        lines = path.read_text(errors="replace").split("\n")
    except OSError as e:
        return None, f"adaptation.csv unreadable ({e.strerror})"
    header = [h.strip() for h in lines[0].split(",")]
    need = ("init", "k", "mse_mean")
    if any(n not in header for n in need):
        return None, "adaptation.csv lacks init/k/mse_mean columns"
    records, issue = [], None
    body = [ln for ln in lines[1:] if ln.strip()]
    for i, line in enumerate(body):
        parts = line.split(",")
        try:
            if len(parts) != len(header):
                raise ValueError
            rec = dict(zip(header, parts))
            records.append({"init": rec["init"], "k": int(float(rec["k"])),
                            **{c: float(rec.get(c, "nan") or "nan") for c in rundir.ADAPTATION_COLUMNS[2:]}})
        except ValueError:
            issue = f"adaptation.csv: malformed line {i + 2} dropped"
    return pd.DataFrame.from_records(records, columns=list(rundir.ADAPTATION_COLUMNS)), issue


def _load_yaml(path: Path):
    with open(path) as f:
        return yaml.load(f, Loader=_YAML_LOADER)


# ---------------------------------------------------------------- one run

@dataclass
class _Run:
    path: Path
    flat: dict
    override_keys: list[str]
    summary: dict
    status: str
    header: list[str]
    metrics: np.ndarray
    adaptation: pd.DataFrame | None
    issues: list[str]


def read_run(run_dir: Path) -> _Run:
    """Read one run directory. Raises ValueError (with the reason) only when its config is unreadable."""
    issues: list[str] = []
    try:
        config = _load_yaml(run_dir / CONFIG)
    except yaml.YAMLError:
        raise ValueError("config.yaml unreadable (invalid YAML; half-written?)") from None
    except OSError as e:
        raise ValueError(f"config.yaml unreadable ({e.strerror})") from None
    if not isinstance(config, dict):
        raise ValueError("config.yaml is not a mapping (half-written?)")
    config.pop("hydra", None)
    flat = {k: _cell(v) for k, v in flatten(config).items()}

    override_keys = []
    try:
        overrides = _load_yaml(run_dir / OVERRIDES) if (run_dir / OVERRIDES).exists() else []
        if not isinstance(overrides, list):
            raise yaml.YAMLError
    except (OSError, yaml.YAMLError):
        overrides = []
        issues.append("overrides.yaml unreadable; its keys are not treated as swept")
    for o in overrides or []:
        parsed = parse_override(o)
        if parsed is None:
            continue
        key, value = parsed
        col = override_column(key, flat)
        if col not in flat:  # not in the job config (e.g. a preset of Hydra settings): keep its text
            col = f"override.{key}"
            flat[col] = value
        override_keys.append(col)

    summary = {}
    summary_path = run_dir / rundir.SUMMARY
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
            if not isinstance(summary, dict):
                raise ValueError
            status = str(summary.get("status") or "unknown")
        except (OSError, ValueError):
            summary = {}
            status = "corrupt"
            issues.append("summary.json unreadable (half-written?)")
    else:
        status = "no_summary"
        issues.append("no summary.json (starting, or killed before writing one)")

    header, metrics = [], np.empty((0, 0))
    if (run_dir / rundir.METRICS).exists():
        header, metrics, issue = read_metrics_csv(run_dir / rundir.METRICS)
        if issue:
            issues.append(issue)
    if status == "completed" and summary.get("steps") is not None and summary.get("outer_steps") is not None \
            and summary["steps"] < summary["outer_steps"]:
        issues.append(f"completed with {summary['steps']} of {summary['outer_steps']} steps")

    adaptation = None
    if (run_dir / rundir.ADAPTATION).exists():
        adaptation, issue = read_adaptation_csv(run_dir / rundir.ADAPTATION)
        if issue:
            issues.append(issue)
    return _Run(run_dir, flat, override_keys, summary, status, header, metrics, adaptation, issues)


# ---------------------------------------------------------------- frames

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
    labels = [str(p.relative_to(common)) if p != common else p.name for p in paths]
    return labels


def _sweep_dir(run_dir: Path) -> Path:
    """The sweep a run belongs to: its parent, i.e. the multirun directory for a sweep's job, and
    ``outputs/runs/<date>`` for single runs (so single runs of one day pool their seeds)."""
    return run_dir.parent


def _sweep_labels(sweeps: list[Path]) -> dict[Path, str]:
    unique = sorted(set(sweeps), key=_natural_key)
    if len(unique) == 1:
        p = unique[0]
        return {p: f"{p.parent.name}/{p.name}" if p.parent.name else p.name}
    return dict(zip(unique, _label_paths(unique)))


def load_runs(paths: str | os.PathLike | Iterable[str | os.PathLike],
              progress: Callable[[str], None] | None = None) -> RunSet:
    """Load run directories, sweep directories, parents of several sweeps, or globs into a :class:`RunSet`.

    Raises :class:`LoadError` when a path does not exist or no run directory is found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    run_dirs, skipped = find_run_dirs(paths)
    if not run_dirs:
        where = ", ".join(repr(str(p)) for p in paths)
        raise LoadError(f"PATH {where}: no run directories found (a run has .hydra/config.yaml)")

    runs: list[_Run] = []
    for i, d in enumerate(run_dirs):
        try:
            runs.append(read_run(d))
        except ValueError as e:
            skipped.append((str(d), str(e)))
        if progress and (i + 1) % 200 == 0:
            progress(f"read {i + 1}/{len(run_dirs)} runs")
    if not runs:
        raise LoadError(f"PATH {', '.join(map(str, paths))}: no readable runs "
                        f"({len(skipped)} skipped: {skipped[0][1]})")

    ids = _label_paths([r.path for r in runs])
    sweep_of = [_sweep_dir(r.path) for r in runs]
    sweep_label = _sweep_labels(sweep_of)

    # Swept keys: override keys whose values differ across the loaded runs.
    override_keys: list[str] = []
    for r in runs:
        for k in r.override_keys:
            if k not in override_keys:
                override_keys.append(k)
    swept = [k for k in override_keys
             if len({repr(r.flat.get(k)) for r in runs}) > 1]
    group = [k for k in swept if k != "seed"]

    # Config columns (every leaf), then summary numbers (a summary key that repeats a config key, like seed, is the config's).
    config_keys: list[str] = []
    for r in runs:
        for k in r.flat:
            if k not in config_keys:
                config_keys.append(k)
    summary_keys: list[str] = []
    for r in runs:
        for k, v in r.summary.items():
            if k in _SUMMARY_SKIP or k in summary_keys or isinstance(v, (dict, list)) or k in config_keys:
                continue
            summary_keys.append(k)
    text_keys = [k for k in summary_keys if k in _SUMMARY_TEXT]
    number_keys = sorted((k for k in summary_keys if k not in _SUMMARY_TEXT), key=_summary_rank)

    columns: dict[str, object] = {
        "run": pd.array(ids, dtype=STR),
        "sweep": pd.array([sweep_label[s] for s in sweep_of], dtype=STR),
        "path": pd.array([str(r.path) for r in runs], dtype=STR),
        "status": pd.array([r.status for r in runs], dtype=STR),
    }
    ordered_config = group + (["seed"] if "seed" in config_keys else []) + \
        [k for k in config_keys if k not in group and k != "seed"]
    for k in number_keys:
        vals = [r.summary.get(k) for r in runs]
        vals = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in vals]
        if k in _COUNTS or k.startswith("n_"):
            ints = [None if v is None else int(v) for v in vals]
            columns[k] = _typed(ints, "Int64")
        else:
            columns[k] = np.asarray([np.nan if v is None else v for v in vals], dtype=float)
    # From the metrics log: how far each run got, and its last logged objectives.
    last_step, last_val = [], []
    for r in runs:
        if len(r.metrics):
            last_step.append(int(r.metrics[-1, r.header.index("step")]))
            j = r.header.index("val_meta_objective") if "val_meta_objective" in r.header else None
            last_val.append(float(r.metrics[-1, j]) if j is not None else np.nan)
        else:
            last_step.append(None)
            last_val.append(np.nan)
    columns["last_step"] = _typed(last_step, "Int64")
    columns["last_val_meta_objective"] = np.asarray(last_val, dtype=float)
    metric_cols = [k for k in number_keys if k not in _COUNTS and not k.startswith("n_")]
    metric_cols.append("last_val_meta_objective")
    for k in ordered_config:
        columns.setdefault(k, _typed([r.flat.get(k) for r in runs]))
    for k in text_keys:
        if k != "status":
            columns[k] = pd.array([None if r.summary.get(k) is None else str(r.summary.get(k)) for r in runs],
                                  dtype=STR)
    # Order: identity, swept, summary numbers, other config, text.
    order = ["run", "sweep", "path", "status"] + group + (["seed"] if "seed" in columns else []) + \
        number_keys + ["last_step", "last_val_meta_objective"] + \
        [k for k in ordered_config if k not in group and k != "seed"] + [k for k in text_keys if k != "status"]
    seen, final = set(), []
    for k in order:
        if k not in seen and k in columns:
            seen.add(k)
            final.append(k)
    runs_df = pd.DataFrame({k: columns[k] for k in final})

    # More than one sweep: `sweep` is a configuration key when configs recur across sweeps.
    if runs_df["sweep"].nunique() > 1:
        per_config = runs_df.groupby(group, dropna=False)["sweep"].nunique() if group else \
            pd.Series([runs_df["sweep"].nunique()])
        if (per_config > 1).any():
            swept = ["sweep"] + swept

    curves = _curves_frame(runs, ids)
    adaptation = _adaptation_frame(runs, ids)
    issues = pd.DataFrame.from_records(
        [(ids[i], str(r.path), msg) for i, r in enumerate(runs) for msg in r.issues],
        columns=["run", "path", "issue"])
    skipped_df = pd.DataFrame.from_records(skipped, columns=["path", "reason"])
    return RunSet(runs_df, curves, adaptation, skipped_df, issues, list(swept), metric_cols)


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
    parts = [f"{n} {s}" for s, n in rs.runs["status"].value_counts().items()]
    if len(rs.skipped):
        parts.append(f"{len(rs.skipped)} skipped")
    return ", ".join(parts)


def _curves_frame(runs: list[_Run], ids: list[str]) -> pd.DataFrame:
    """Long form (run, step, metric, value) from every run's metrics.csv, built in one go."""
    run_idx, steps, metric_names, values = [], [], [], []
    names: list[str] = []
    for i, r in enumerate(runs):
        if not len(r.metrics):
            continue
        s = r.header.index("step")
        for j, name in enumerate(r.header):
            if j == s:
                continue
            if name not in names:
                names.append(name)
            n = len(r.metrics)
            run_idx.append(np.full(n, i, dtype=np.int64))
            steps.append(r.metrics[:, s].astype(np.int64))
            metric_names.append(np.full(n, names.index(name), dtype=np.int64))
            values.append(r.metrics[:, j])
    cat = lambda codes, cats: pd.Categorical.from_codes(codes, categories=cats)  # noqa: E731
    if not run_idx:
        return pd.DataFrame({"run": cat(np.empty(0, int), ids), "step": np.empty(0, np.int64),
                             "metric": cat(np.empty(0, int), names or ["val_meta_objective"]),
                             "value": np.empty(0, float)})
    return pd.DataFrame({
        "run": cat(np.concatenate(run_idx), ids),
        "step": np.concatenate(steps),
        "metric": cat(np.concatenate(metric_names), names),
        "value": np.concatenate(values),
    })


def _adaptation_frame(runs: list[_Run], ids: list[str]) -> pd.DataFrame:
    frames = []
    for i, r in enumerate(runs):
        if r.adaptation is not None and len(r.adaptation):
            frames.append(r.adaptation.assign(run=ids[i]))
    cols = ["run", *rundir.ADAPTATION_COLUMNS]
    if not frames:
        return pd.DataFrame({"run": pd.array([], dtype=STR), "init": pd.array([], dtype=STR),
                             "k": np.empty(0, np.int64), **{c: np.empty(0) for c in rundir.ADAPTATION_COLUMNS[2:]}})
    out = pd.concat(frames, ignore_index=True)[cols]
    out["run"] = out["run"].astype(STR)
    out["init"] = out["init"].astype(STR)
    return out
