"""Task distributions: each samples a regression task (support and query sets) from a generator.

Every family draws ``num_points`` points per task; the last ``query_size`` of them score the
meta-objective and the others (``support_size = num_points - query_size``) adapt. ``query_size`` 0
scores on the support points themselves (the notebook's behaviour). Generators may be numpy
``RandomState`` or ``Generator``. Points are drawn in float64 (the same draws whatever the dtype)
and returned in the family's ``dtype`` (float64 or float32, the run's ``train.dtype``). The classes
have no defaults: :func:`make_tasks` builds them from a config (the defaults live in
``maml_sweep.config``'s schemas).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Task(NamedTuple):
    """One regression task: support inputs x and targets y, shape (N,), and optionally a
    separate query set, shape (M,). Without one, the query set is the support set (the notebook)."""

    x: np.ndarray
    y: np.ndarray
    x_query: np.ndarray | None = None
    y_query: np.ndarray | None = None

    @property
    def query(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the points that score the meta-objective."""
        if self.x_query is None:
            return self.x, self.y
        return self.x_query, self.y_query


def _split(x: np.ndarray, y: np.ndarray, query_size: int, dtype: str) -> Task:
    """The first points adapt, the last ``query_size`` score (0: the support points score)."""
    x, y = np.asarray(x, dtype=dtype), np.asarray(y, dtype=dtype)
    if query_size == 0:
        return Task(x, y)
    k = len(x) - query_size
    return Task(x[:k], y[:k], x[k:], y[k:])


class _Sizes:
    """``num_points`` drawn per task, the last ``query_size`` held out to score."""

    @property
    def support_size(self) -> int:
        """Points that adapt."""
        return self.num_points - self.query_size

    def with_sizes(self, support_size: int, query_size: int):
        """The same family with ``support_size`` points that adapt and ``query_size`` that score."""
        return dataclasses.replace(self, num_points=support_size + query_size, query_size=query_size)


@dataclass(frozen=True)
class StepTasks(_Sizes):
    """The notebook's random piecewise-constant ("perturbed step") functions.

    ``bins`` equal-width pieces on [xmin, xmax) with heights ~ U[ymin, ymax]; inputs x ~ U[xmin, xmax),
    targets height(x) + N(0, noise^2). Draw order (x, heights, noise) is the notebook's.
    """

    xmin: float
    xmax: float
    ymin: float
    ymax: float
    noise: float
    bins: int
    num_points: int
    query_size: int
    dtype: str

    def sample(self, rng) -> Task:
        x = rng.uniform(self.xmin, self.xmax, size=self.num_points)
        heights = rng.uniform(self.ymin, self.ymax, size=self.bins)
        idx = np.floor((x - self.xmin) / (self.xmax - self.xmin) * self.bins).astype(int)
        y = rng.normal(heights[idx], self.noise)
        return _split(x, y, self.query_size, self.dtype)


@dataclass(frozen=True)
class SineTasks(_Sizes):
    """The MAML paper's sinusoids: y = amplitude * sin(x - phase) (+ N(0, noise^2)), with
    amplitude ~ U[amp_min, amp_max], phase ~ U[phase_min, phase_max], x ~ U[xmin, xmax]."""

    amp_min: float
    amp_max: float
    phase_min: float
    phase_max: float
    xmin: float
    xmax: float
    noise: float
    num_points: int
    query_size: int
    dtype: str

    def sample(self, rng) -> Task:
        amplitude = rng.uniform(self.amp_min, self.amp_max)
        phase = rng.uniform(self.phase_min, self.phase_max)
        x = rng.uniform(self.xmin, self.xmax, size=self.num_points)
        y = amplitude * np.sin(x - phase)
        if self.noise > 0:
            y = y + rng.normal(0.0, self.noise, size=x.shape)
        return _split(x, y, self.query_size, self.dtype)


TASK_FAMILIES = {"steps": StepTasks, "sine": SineTasks}


def make_tasks(task_cfg, dtype: str) -> StepTasks | SineTasks:
    """The task distribution named by ``task_cfg.name`` with every other value of the config (a
    composed ``task`` node or a schema instance, e.g. ``StepsTaskConfig(name="steps", bins=3)``),
    returning points in ``dtype`` (``train.dtype``). A key the family does not take, or one it needs
    and does not get, is an error, never dropped."""
    values = dataclasses.asdict(task_cfg) if dataclasses.is_dataclass(task_cfg) else dict(task_cfg.items())
    name = values.pop("name")
    family = TASK_FAMILIES[name]
    fields = {f.name for f in dataclasses.fields(family)} - {"dtype"}
    if set(values) != fields:
        raise ValueError(f"task {name!r}: unknown keys {sorted(set(values) - fields)}, "
                         f"missing keys {sorted(fields - set(values))}")
    return family(**values, dtype=dtype)
