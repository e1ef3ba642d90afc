"""What every report section reads: the runs, the design, the choice per condition, per-task scores.

:class:`ReportContext` is built once (:func:`build_context`) and handed to each section in turn;
sections add blocks to its document and files to ``written``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..safe_text import csv_frame
from . import intervals, plots
from .aggregate import SELECT, aggregate, config_mask
from .design import Design
from .document import Doc
from .load import RunSet
from .paired import config_runs, report_steps, scores_at
from .selection import best_per_condition, ranked_within


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file via a temp file and rename, so a reader never sees half of it."""
    from .. import rundir

    with rundir.atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part where that is unambiguous (``algorithm.inner_lr`` -> ``inner_lr``;
    ``algorithm.name`` -> ``algorithm``)."""
    def tail(k: str) -> str:
        parts = k.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    tails = [tail(k) for k in keys]
    return {k: (t if tails.count(t) == 1 else k) for k, t in zip(keys, tails)}


@dataclass
class ReportContext:
    """What every report section reads and writes: the loaded runs, their design and ranking, the
    per-task scores (cached), the document being written and the files written so far."""

    rs: RunSet
    design: Design
    select: str
    out_dir: Path
    say: Callable[[str], None]
    doc: Doc = field(default_factory=Doc)
    written: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    agg: pd.DataFrame = field(default_factory=pd.DataFrame)
    order: pd.DataFrame = field(default_factory=pd.DataFrame)  # ranked within conditions (selection.ranked_within)
    best: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per condition (selection.best_per_condition)
    steps: list = field(default_factory=list)
    read_issues: list = field(default_factory=list)  # (run, path, issue) met while reading per-task scores
    resolve: float | None = None  # --resolve DELTA: the difference the precision advisor sizes the sweep for
    sources: list = field(default_factory=list)  # the paths the runs were loaded from, as the user named them
    command: str = ""  # the command that made the report ("" when not shown)
    _scores: dict = field(default_factory=dict)

    @property
    def runs(self) -> pd.DataFrame:
        return self.rs.runs

    @property
    def names(self) -> dict[str, str]:
        return short_names(self.design.keys)

    # ---- writing
    def csv(self, frame: pd.DataFrame, name: str) -> None:
        atomic_write(self.out_dir / name, csv_frame(frame).to_csv(index=False))
        self.written[name] = self.out_dir / name

    def figure(self, fig, name: str, caption: str, missing: str) -> None:
        """Save ``fig`` (PNG + PDF) and show it with ``caption``; or say ``missing`` when it is None."""
        if fig is None:
            self.doc.p(missing)
            return
        self.say(f"figure {name}")
        for path in plots.save_figure(fig, self.out_dir, name):
            self.written[path.name] = path
        self.doc.figure(name, caption)

    # ---- labels
    def text(self, row, keys: list[str]) -> str:
        """``inner_lr=0.1, inner_steps=5`` for the ``keys`` of a row (plain text, for figures)."""
        return ", ".join(f"{self.names.get(k, k)}={self.value(k, row[k])}" for k in keys)

    def value(self, key: str, v) -> str:
        """A key's value as text; a sampled (continuous) value to three significant digits."""
        if key in self.design.continuous and isinstance(v, (float, np.floating)):
            return f"{float(v):.3g}"
        return plots.label(v)

    def config_text(self, row) -> str:
        return self.text(row, self.design.chosen) or "the one configuration"

    def condition_text(self, row) -> str:
        return self.text(row, self.design.conditions) or "all runs"

    # ---- per-task scores
    def scores(self, config) -> dict:
        """seed -> (per-task MSE (T, K), bank key) of one configuration's completed runs (cached)."""
        key = tuple(str(config[k]) for k in self.design.keys)
        if key not in self._scores:
            self._scores[key] = config_runs(self.runs, self.design.keys, config, self.read_issues)
        return self._scores[key]

    def score_matrix(self, config, k: int) -> np.ndarray | None:
        """(S, T) per-task test MSE at step k, or None."""
        runs_of = self.scores(config)
        return scores_at(runs_of, k) if runs_of else None

    def test_statistics(self, config) -> dict:
        """Mean, median and IQM of per-task test MSE at each report step with 95% intervals over seeds
        and tasks (``test_<stat>_k<k>``, ``..._low``, ``..._high``) and the blow-up fraction."""
        out = {}
        for k in self.steps:
            x = self.score_matrix(config, k)
            if x is None:
                continue
            for stat in intervals.STATISTICS:
                iv = intervals.interval(x, stat)
                out.update({f"test_{stat}_k{k}": iv.estimate, f"test_{stat}_k{k}_low": iv.low,
                            f"test_{stat}_k{k}_high": iv.high})
            out[f"test_blowup_k{k}"] = float(np.mean(~np.isfinite(x) | (x > 100.0)))
            out[f"n_tasks_k{k}"] = x.shape[1]
        return out

    def runs_of(self, config) -> pd.DataFrame:
        return self.runs[config_mask(self.runs, self.design.keys, config)]


def build_context(rs: RunSet, design: Design, out_dir: Path, select: str = SELECT,
                  say: Callable[[str], None] | None = None) -> ReportContext:
    """Aggregate over seeds, rank within conditions and choose per condition on ``select``."""
    c = ReportContext(rs, design, select, Path(out_dir), say or (lambda msg: None))
    c.metrics = [m for m in rs.metrics if rs.runs[m].notna().any()]
    if select not in c.metrics and select in rs.runs.columns:
        c.metrics.insert(0, select)
    c.steps = report_steps(rs.runs)
    if c.metrics:
        c.agg = aggregate(rs.runs, design.keys, c.metrics)
        if select in c.metrics:
            c.order = ranked_within(c.agg, design, select)
            c.best = best_per_condition(c.agg, design, select)
    return c
