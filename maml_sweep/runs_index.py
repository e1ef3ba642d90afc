"""The run index: every run under some paths as one record (directory, status, start time, overrides,
config, summary), read only through :mod:`maml_sweep.rundir`; filters, sorting and config diffs.

Used by ``maml-sweep-runs`` (:mod:`maml_sweep.runs_cli`) and the MLflow export
(:mod:`maml_sweep.mlflow_export`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import rundir, rundir_read

DEFAULT_PATH = "outputs"
LS_COLUMNS = ("directory", "status", "started", "overrides", "val_mse", "test_mse_k5")
MISSING = object()  # a key a run does not have (e.g. a config key of another version)


@dataclass
class RunRecord:
    """One run directory as the index sees it: ``path`` (resolved), ``status`` (a :mod:`rundir`
    status word), ``started`` (epoch seconds or None), ``overrides`` (:class:`rundir_read.Override`),
    ``config`` (flattened: dotted key -> value), ``summary`` (summary.json, {} when unreadable) and
    ``issues`` (what could not be read)."""

    path: Path
    status: str
    started: float | None
    overrides: list
    config: dict
    summary: dict
    issues: list[str] = field(default_factory=list)

    @property
    def overrides_text(self) -> str:
        return " ".join(o.text for o in self.overrides)

    def sweep_dir(self) -> Path | None:
        """The multirun this run is a job of (its parent holds Hydra's ``multirun.yaml`` or its name
        is a job number), or None for a single run."""
        parent = self.path.parent
        return parent if self.path.name.isdigit() or (parent / "multirun.yaml").is_file() else None

    def value(self, key: str):
        """The value ``key`` has for this run: an ``ls`` column, an override (as written), a summary
        key or a config key (dotted); :data:`MISSING` when it has none."""
        if key in ("directory", "status", "started", "overrides"):
            return self.column(key)
        for o in self.overrides:
            if o.key == key:
                return o.value
        if key in self.summary:
            return self.summary[key]
        return self.config.get(key, MISSING)

    def column(self, name: str):
        """The ``ls`` column ``name`` (:data:`LS_COLUMNS`)."""
        if name == "directory":
            return display_path(self.path)
        if name == "status":
            return self.status
        if name == "started":
            return format_time(self.started)
        if name == "overrides":
            return self.overrides_text
        return number(self.summary.get(name))


def read_run(path: Path) -> RunRecord:
    """The record of the run directory ``path``; never raises for damaged files (see ``issues``)."""
    path = Path(path)
    state = rundir_read.read_state(path)
    issues = [state.issue] if state.issue else []
    try:
        overrides = rundir_read.read_overrides(path)
    except rundir.DamagedFile as exc:
        overrides = []
        issues.append(str(exc))
    try:
        config = flatten(rundir_read.read_config(path))
    except rundir.DamagedFile as exc:
        config = {}
        issues.append(str(exc))
    return RunRecord(path, state.status, rundir_read.started_at(path), overrides, config, state.summary, issues)


def find(paths=(DEFAULT_PATH,)) -> list[RunRecord]:
    """Records of every run under ``paths`` (run dirs, sweep dirs, parents or globs), in natural order.
    Raises :class:`rundir_read.LoadError` for a path that does not exist."""
    runs, _ = rundir_read.find_runs(list(paths) or [DEFAULT_PATH])
    return [read_run(p) for p in runs]


def flatten(tree, prefix: str = "") -> dict:
    """A nested config as dotted key -> leaf value (lists stay whole values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def parse_where(text: str) -> tuple[str, object]:
    """``key=value`` of ``--where`` as (key, value parsed like YAML). Raises ValueError."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ValueError(f"--where {text!r}: expected key=value, e.g. --where task.bins=3 or --where status=completed")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def matches(record: RunRecord, key: str, wanted) -> bool:
    """True when the run's ``key`` equals ``wanted`` (as YAML would read both: ``3`` matches 3)."""
    have = record.value(key)
    if have is MISSING:
        return False
    if isinstance(have, str):
        try:
            have = yaml.safe_load(have)
        except yaml.YAMLError:
            pass
    return have == wanted or str(have) == str(wanted)


def sort_key(key: str):
    """A sort key on ``key`` for records: numbers by value (NaN and missing last), text by text."""
    def of(record: RunRecord):
        value = record.value(key)
        if isinstance(value, bool) or value is MISSING or value is None:
            return (2, 0, "")
        if isinstance(value, (int, float)):
            return (1, 0, "") if math.isnan(value) else (0, value, "")
        return (0, 0, str(value))
    return of


def config_diff(a: RunRecord, b: RunRecord) -> list[tuple[str, object, object]]:
    """(key, value in a, value in b) for every config key whose values differ (:data:`MISSING` where
    one run lacks it), in key order."""
    keys = sorted(set(a.config) | set(b.config))
    return [(k, a.config.get(k, MISSING), b.config.get(k, MISSING)) for k in keys
            if a.config.get(k, MISSING) != b.config.get(k, MISSING)]


def headline_keys(*records: RunRecord) -> list[str]:
    """Summary keys worth putting side by side: status and progress, validation, every test statistic
    the runs have (in report-step order), time."""
    keys = ["status", "steps", "outer_steps", "val_mse", "val_meta_objective", "train_meta_objective"]
    tests = sorted({k for r in records for k in r.summary if k.startswith("test_")}, key=test_order)
    return keys + tests + ["diverged_step", "wall_s", "ms_per_step", "error"]


_TEST_STATS = ("test_mse_k", "test_median_k", "test_trimmed_k", "test_blowup_k")


def test_order(key: str):
    """test_mse_k<k> by k, then median, trimmed, blowup; other test keys after them."""
    for i, prefix in enumerate(_TEST_STATS):
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            return (i, int(key[len(prefix):]), key)
    return (len(_TEST_STATS), 0, key)


def number(value):
    """A summary value as a float (None, non-numbers and bools: NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def format_time(epoch: float | None) -> str:
    """Local time ``YYYY-MM-DD HH:MM:SS`` of ``epoch`` seconds; empty for None."""
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies under it."""
    try:
        return os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)
