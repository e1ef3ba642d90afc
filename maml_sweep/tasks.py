"""Task distributions: each samples a regression task (support and query sets) from a generator.

Every family draws ``support_size + query_size`` points per task; the first ``support_size`` adapt,
the others score the meta-objective. ``query_size`` 0 scores on the support points themselves (the
notebook's behaviour). Generators may be numpy ``RandomState`` or ``Generator``. Points are drawn in
float64 (the same draws whatever the dtype) and returned in the family's ``dtype`` (float64 or
float32, the run's ``train.dtype``).
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


def _split(x: np.ndarray, y: np.ndarray, support_size: int, dtype: str) -> Task:
    x, y = np.asarray(x, dtype=dtype), np.asarray(y, dtype=dtype)
    if support_size >= len(x):
        return Task(x, y)
    return Task(x[:support_size], y[:support_size], x[support_size:], y[support_size:])


@dataclass(frozen=True)
class StepTasks:
    """The notebook's random piecewise-constant ("perturbed step") functions.

    ``bins`` equal-width pieces on [xmin, xmax) with heights ~ U[ymin, ymax]; inputs x ~ U[xmin, xmax),
    targets height(x) + N(0, noise^2). Draw order (x, heights, noise) is the notebook's.
    """

    xmin: float = -3.0
    xmax: float = 3.0
    ymin: float = -3.0
    ymax: float = 3.0
    noise: float = 0.1
    bins: int = 6
    support_size: int = 100
    query_size: int = 0
    dtype: str = "float64"

    def sample(self, rng) -> Task:
        x = rng.uniform(self.xmin, self.xmax, size=self.support_size + self.query_size)
        heights = rng.uniform(self.ymin, self.ymax, size=self.bins)
        idx = np.floor((x - self.xmin) / (self.xmax - self.xmin) * self.bins).astype(int)
        y = rng.normal(heights[idx], self.noise)
        return _split(x, y, self.support_size, self.dtype)

    def with_sizes(self, support_size: int, query_size: int) -> "StepTasks":
        return dataclasses.replace(self, support_size=support_size, query_size=query_size)


@dataclass(frozen=True)
class SineTasks:
    """The MAML paper's sinusoids: y = amplitude * sin(x - phase) (+ N(0, noise^2)), with
    amplitude ~ U[amp_min, amp_max], phase ~ U[phase_min, phase_max], x ~ U[xmin, xmax]."""

    amp_min: float = 0.1
    amp_max: float = 5.0
    phase_min: float = 0.0
    phase_max: float = float(np.pi)
    xmin: float = -5.0
    xmax: float = 5.0
    noise: float = 0.0
    support_size: int = 10
    query_size: int = 10
    dtype: str = "float64"

    def sample(self, rng) -> Task:
        amplitude = rng.uniform(self.amp_min, self.amp_max)
        phase = rng.uniform(self.phase_min, self.phase_max)
        x = rng.uniform(self.xmin, self.xmax, size=self.support_size + self.query_size)
        y = amplitude * np.sin(x - phase)
        if self.noise > 0:
            y = y + rng.normal(0.0, self.noise, size=x.shape)
        return _split(x, y, self.support_size, self.dtype)

    def with_sizes(self, support_size: int, query_size: int) -> "SineTasks":
        return dataclasses.replace(self, support_size=support_size, query_size=query_size)


TASK_FAMILIES = {"steps": StepTasks, "sine": SineTasks}


def make_tasks(task_cfg) -> StepTasks | SineTasks:
    """The task distribution named by ``task_cfg.name``, with the config's values."""
    family = TASK_FAMILIES[task_cfg.name]
    fields = {f.name for f in dataclasses.fields(family)}
    return family(**{k: v for k, v in task_cfg.items() if k in fields})
