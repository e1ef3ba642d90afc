"""The experiment's design, read from the runs: what each key is, and which kind of report fits.

Every key that differs between runs has one role:

- a **condition**: what the task is (every differing ``task.*`` key, the keys that decide the test
  bank, and any key named with ``--condition``). Runs of different conditions solve different
  problems: they are never ranked against each other, and paired comparisons stay inside one;
- a **method**: ``algorithm.name`` (and a swept ``experiment`` or, for several sweeps compared,
  ``sweep``);
- a **hyperparameter**: every other swept key;
- the **seed**.

A *configuration* is one combination of method and hyperparameter values inside a condition. The
best configuration is chosen per condition (:mod:`maml_sweep.analysis.selection`).

The report's layout follows the kind of sweep (:data:`KINDS`): one configuration (``single``), a
few configurations that are not a full grid (``overlay``), a factorial grid (``grid``), several
methods (``algorithms``) or sampled continuous values (``search``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..roles import is_condition
from .load import RunSet
from .search import is_continuous

METHOD_KEYS = ("algorithm.name", "override.experiment", "sweep")
KINDS = ("single", "overlay", "grid", "algorithms", "search")
GRID_FILL = 0.75  # a grid: at least this share of its hyperparameter combinations present per condition


class DesignError(ValueError):
    """A flag names a key these runs do not have; the message names the flag and what is allowed."""


@dataclass
class Design:
    """Roles of the keys that differ, and the report kind. Key lists keep the runs' column order."""

    conditions: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    hyper: list[str] = field(default_factory=list)
    continuous: list[str] = field(default_factory=list)  # hyperparameters a sampler drew (search)
    seeds: int = 1
    n_configs: int = 1
    kind: str = "single"

    @property
    def keys(self) -> list[str]:
        """Keys of a configuration across conditions: conditions, methods, hyperparameters."""
        return self.conditions + self.methods + self.hyper

    @property
    def chosen(self) -> list[str]:
        """Keys chosen per condition: methods and hyperparameters."""
        return self.methods + self.hyper

    def roles_text(self) -> list[str]:
        """One line per role, for the top of the report."""
        def names(keys):
            return ", ".join(f"`{k}`" for k in keys) if keys else "none"
        return [f"conditions (what the task is; compared only within): {names(self.conditions)}",
                f"methods: {names(self.methods)}",
                f"hyperparameters: {names(self.hyper)}"
                + (f" (sampled: {names(self.continuous)})" if self.continuous else ""),
                f"seeds: {self.seeds} per configuration" if self.seeds != 1 else "seeds: one per configuration"]


def _differs(runs: pd.DataFrame, key: str) -> bool:
    return key in runs.columns and runs[key].astype(str).nunique(dropna=False) > 1


def resolve(name: str, allowed: list[str], flag: str) -> str:
    """A key by its full name or an unambiguous suffix (``bins`` -> ``task.bins``,
    ``algorithm`` -> ``algorithm.name``)."""
    if name in allowed:
        return name
    hits = [k for k in allowed if k.endswith("." + name) or k == f"{name}.name"]
    if len(hits) == 1:
        return hits[0]
    what = ", ".join(allowed) if allowed else "none (only seeds differ)"
    raise DesignError(f"{flag} {name!r} is not a key that differs between these runs; allowed: {what}")


def experiment_design(rs: RunSet, condition: list[str] | None = None) -> Design:
    """Roles of the keys that differ between the runs of ``rs`` and the report kind.
    ``condition``: extra condition keys (full names or suffixes). Raises :class:`DesignError`."""
    runs = rs.runs
    swept = [k for k in rs.group_keys if _differs(runs, k)]
    derived = [c for c in runs.columns if is_condition(c) and c not in swept and _differs(runs, c)]
    allowed = swept + [c for c in derived if c not in swept]
    extra = [resolve(n, allowed, "--condition") for f in (condition or []) for n in f.split(",") if n]
    conditions = _distinguishing(runs, [k for k in allowed if is_condition(k) or k in extra],
                                 anchor=[k for k in swept if is_condition(k)] + extra)
    methods = [k for k in swept if k in METHOD_KEYS and k not in conditions]
    hyper = [k for k in swept if k not in conditions and k not in methods]
    d = Design(conditions, methods, hyper)
    d.seeds = int(runs.groupby(d.keys, dropna=False).size().max()) if d.keys else len(runs)
    d.n_configs = int(runs[d.keys].astype(str).drop_duplicates().shape[0]) if d.keys else 1
    per_condition = max(_configs_per_condition(runs, d), default=1)
    d.continuous = [k for k in hyper if is_continuous(runs[k], per_condition)]
    d.kind = _kind(runs, d, per_condition)
    return d


def _distinguishing(runs: pd.DataFrame, keys: list[str], anchor: list[str]) -> list[str]:
    """``keys`` without those a preset sets along with another: the swept (``anchor``) keys and
    ``task.name`` first, then each further key only when it splits runs those keys put together (an
    ``experiment`` that sets ``task=sine`` differs in a dozen ``task.*`` keys; ``task.name`` says it)."""
    chosen = [k for k in keys if k in anchor]
    if "task.name" in keys and "task.name" not in chosen:
        chosen.append("task.name")
    for k in keys:
        if k in chosen:
            continue
        if not chosen or (runs.groupby(chosen, dropna=False)[k].nunique(dropna=False) > 1).any():
            chosen.append(k)
    return [k for k in keys if k in chosen]


def _configs_per_condition(runs: pd.DataFrame, d: Design) -> list[int]:
    if not d.chosen:
        return [1]
    if not d.conditions:
        return [int(runs[d.chosen].astype(str).drop_duplicates().shape[0])]
    return [int(part[d.chosen].astype(str).drop_duplicates().shape[0])
            for _, part in runs.groupby(d.conditions, dropna=False)]


def _kind(runs: pd.DataFrame, d: Design, per_condition: int) -> str:
    if d.n_configs <= 1:
        return "single"
    if d.continuous:
        return "search"
    if "algorithm.name" in d.methods or "override.experiment" in d.methods:
        return "algorithms"
    levels = [runs[k].astype(str).nunique() for k in d.hyper]
    if len(d.hyper) >= 2 and per_condition >= GRID_FILL * math.prod(levels) and per_condition >= 4:
        return "grid"
    if len(d.hyper) == 1 and d.conditions:
        return "grid"
    return "overlay"
