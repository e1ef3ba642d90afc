"""Task distributions (families), each declared once: its config schema (defaults), its sampler and its
own value checks, registered by name in :data:`TASK_FAMILIES` (``task=<name>``).

Every family draws ``num_points`` points per task; the last ``query_size`` of them score the
meta-objective and the others (``support_size = num_points - query_size``) adapt. ``query_size`` 0
scores on the support points themselves (the notebook's behaviour). Generators may be numpy
``RandomState`` or ``Generator``. Points are drawn in float64 (the same draws whatever the dtype)
and returned in the family's ``dtype`` (float64 or float32, the run's ``train.dtype``). Inputs are
(N,) for a 1-D family and (N, dim) otherwise (``dim``). The sampler classes have no defaults:
:func:`make_tasks` builds them from a config, whose defaults live in the family's ``schema``.
docs/extending.md shows how to add a family.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
from omegaconf import MISSING

from .checks import Checks, finite_positive, registrar


class Task(NamedTuple):
    """One regression task: support inputs x, shape (N,) or (N, dim), and targets y, shape (N,), and
    optionally a separate query set, (M,) or (M, dim) and (M,). Without one, the query set is the
    support set (the notebook)."""

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


@dataclass
class TaskConfig:
    """What every task family's schema has. A task is ``num_points`` points drawn together; the last
    ``query_size`` of them score the meta-objective and the first ``num_points - query_size`` (the
    support set) adapt. ``query_size`` 0: all ``num_points`` adapt and score (the notebook's way)."""
    name: str = MISSING
    xmin: float = MISSING     # inputs x ~ U[xmin, xmax) (each coordinate)
    xmax: float = MISSING
    noise: float = MISSING    # observation noise standard deviation
    num_points: int = MISSING  # points per task: support + query
    query_size: int = MISSING  # of those, held out to score; 0: the support points score


class TaskFamily:
    """A family's sampler (a frozen dataclass of its schema's values but ``name``, plus ``dtype``):
    ``schema`` its config dataclass, :attr:`input_dim` its input dimension, :meth:`check` its own
    value checks, :meth:`sample` one task. ``num_points`` drawn per task, the last ``query_size`` held
    out to score."""

    schema: ClassVar[type] = TaskConfig

    @property
    def input_dim(self) -> int:
        """Dimension of the inputs x (1: x is (N,); a family with ``task.dim`` returns it)."""
        return 1

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        """The family's own value checks on the composed config ``cfg`` (``cfg.task`` is this
        family's; what every family has is checked by ``config.check_values``): ``c.need(...)``."""

    def sample(self, rng) -> Task:
        raise NotImplementedError

    @property
    def support_size(self) -> int:
        """Points that adapt."""
        return self.num_points - self.query_size

    def with_sizes(self, support_size: int, query_size: int):
        """The same family with ``support_size`` points that adapt and ``query_size`` that score."""
        return dataclasses.replace(self, num_points=support_size + query_size, query_size=query_size)


TASK_FAMILIES: dict[str, type[TaskFamily]] = {}  # task=<name> -> its family


register_task_family = registrar(TASK_FAMILIES)  # @register_task_family("name"): task=name samples with it


@dataclass
class StepsTaskConfig(TaskConfig):
    """``task=steps``: the notebook's random piecewise-constant ("perturbed step") functions."""
    xmin: float = -3.0
    xmax: float = 3.0
    noise: float = 0.1
    num_points: int = 100
    query_size: int = 0
    ymin: float = -3.0        # step heights ~ U[ymin, ymax]
    ymax: float = 3.0
    bins: int = 6             # number of steps


@dataclass
class SineTaskConfig(TaskConfig):
    """``task=sine``: the MAML paper's y = A sin(x - phase), K = 10 shots and 10 query points."""
    xmin: float = -5.0
    xmax: float = 5.0
    noise: float = 0.0
    num_points: int = 20
    query_size: int = 10
    amp_min: float = 0.1      # A ~ U[amp_min, amp_max]
    amp_max: float = 5.0
    phase_min: float = 0.0    # phase ~ U[phase_min, phase_max]
    phase_max: float = math.pi


@register_task_family("steps")
@dataclass(frozen=True)
class StepTasks(TaskFamily):
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

    schema: ClassVar[type] = StepsTaskConfig

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        c.ordered("task", cfg.task, "ymin", "ymax")
        c.need(cfg.task.bins >= 1, "task.bins", "an integer >= 1", cfg.task.bins)

    def sample(self, rng) -> Task:
        x = rng.uniform(self.xmin, self.xmax, size=self.num_points)
        heights = rng.uniform(self.ymin, self.ymax, size=self.bins)
        idx = np.floor((x - self.xmin) / (self.xmax - self.xmin) * self.bins).astype(int)
        y = rng.normal(heights[idx], self.noise)
        return _split(x, y, self.query_size, self.dtype)


@register_task_family("sine")
@dataclass(frozen=True)
class SineTasks(TaskFamily):
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

    schema: ClassVar[type] = SineTaskConfig

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        c.ordered("task", cfg.task, "amp_min", "amp_max")
        c.ordered("task", cfg.task, "phase_min", "phase_max")

    def sample(self, rng) -> Task:
        amplitude = rng.uniform(self.amp_min, self.amp_max)
        phase = rng.uniform(self.phase_min, self.phase_max)
        x = rng.uniform(self.xmin, self.xmax, size=self.num_points)
        y = amplitude * np.sin(x - phase)
        if self.noise > 0:
            y = y + rng.normal(0.0, self.noise, size=x.shape)
        return _split(x, y, self.query_size, self.dtype)


@dataclass
class GPTaskConfig(TaskConfig):
    """``task=gp``: functions drawn from a Gaussian process with an RBF kernel on [xmin, xmax)^dim, the
    task distribution of Neural Processes (Garnelo et al. 2018): 10 shots, 10 query points."""
    xmin: float = -2.0
    xmax: float = 2.0
    noise: float = 0.05
    num_points: int = 20
    query_size: int = 10
    dim: int = 1              # input dimension: x in R^dim
    lengthscale: float = 0.4  # k(x, x') = variance * exp(-|x - x'|^2 / (2 lengthscale^2))
    variance: float = 1.0


GP_MAX_POINTS = 1000  # points drawn jointly per task: its Cholesky factor is (n, n), ~8 MB at 1000
GP_JITTER = 1e-6      # added to the kernel's diagonal (times the variance): a positive definite matrix


@register_task_family("gp")
@dataclass(frozen=True)
class GPTasks(TaskFamily):
    """Functions f ~ GP(0, k) with the RBF kernel k(x, x') = variance exp(-|x - x'|^2 / (2 l^2)),
    observed with N(0, noise^2) noise (Rasmussen & Williams 2006, ch. 2; the Neural Processes'
    tasks, Garnelo et al. 2018). Draw order: x ~ U[xmin, xmax)^(num_points, dim), then the
    num_points standard normals that make f = chol(K + jitter I) z (the task's values drawn
    jointly), then the noise. Inputs (N,) for dim 1, else (N, dim)."""

    xmin: float
    xmax: float
    noise: float
    num_points: int
    query_size: int
    dim: int
    lengthscale: float
    variance: float
    dtype: str

    schema: ClassVar[type] = GPTaskConfig

    @property
    def input_dim(self) -> int:
        return self.dim

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        t, ev = cfg.task, cfg.eval
        c.need(t.dim >= 1, "task.dim", "an integer >= 1", t.dim)
        c.need(finite_positive(t.lengthscale), "task.lengthscale", "a finite number > 0", t.lengthscale)
        c.need(finite_positive(t.variance), "task.variance", "a finite number > 0", t.variance)
        c.need(t.num_points <= GP_MAX_POINTS, "task.num_points",
               f"<= {GP_MAX_POINTS} with task=gp (a task's points are drawn jointly: an (n, n) Cholesky)", t.num_points)
        shots = ev.support_size if ev.support_size is not None else t.num_points - t.query_size
        c.need(shots + ev.query_size <= GP_MAX_POINTS, "eval.query_size",
               f"<= {GP_MAX_POINTS} - the test tasks' support size ({shots}) with task=gp "
               "(a test task's points are drawn jointly: an (n, n) Cholesky)", ev.query_size)

    def sample(self, rng) -> Task:
        n = self.num_points
        x = rng.uniform(self.xmin, self.xmax, size=(n, self.dim))
        sq = np.sum(x * x, axis=1)
        dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
        kernel = self.variance * np.exp(-0.5 * dist2 / self.lengthscale ** 2)
        kernel[np.diag_indices(n)] += GP_JITTER * self.variance
        y = np.linalg.cholesky(kernel) @ rng.normal(0.0, 1.0, size=n)
        if self.noise > 0:
            y = y + rng.normal(0.0, self.noise, size=n)
        return _split(x[:, 0] if self.dim == 1 else x, y, self.query_size, self.dtype)


def make_tasks(task_cfg, dtype: str) -> TaskFamily:
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
