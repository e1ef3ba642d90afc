"""Task distributions: each samples a regression task (x, y) from a random generator."""
from __future__ import annotations

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


@dataclass(frozen=True)
class StepTasks:
    """The notebook's random piecewise-constant ("perturbed step") functions.

    ``bins`` equal-width pieces on [xmin, xmax) with heights ~ U[ymin, ymax]; observations are
    ``num_points`` inputs x ~ U[xmin, xmax) with targets height(x) + N(0, noise^2).
    """

    xmin: float = -3.0
    xmax: float = 3.0
    ymin: float = -3.0
    ymax: float = 3.0
    noise: float = 0.1
    bins: int = 6
    num_points: int = 100

    def sample(self, rng) -> Task:
        """Draw x, then the heights, then the noisy y: the notebook's order on one stream."""
        x = rng.uniform(self.xmin, self.xmax, size=self.num_points)
        heights = rng.uniform(self.ymin, self.ymax, size=self.bins)
        idx = np.floor((x - self.xmin) / (self.xmax - self.xmin) * self.bins).astype(int)
        y = rng.normal(heights[idx], self.noise)
        return Task(x, y)
