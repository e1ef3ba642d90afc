"""MAML's inner loop, meta-objective and meta-gradient: the model-agnostic reference path.

``predict(params, x)`` is any function of a parameter dict and inputs of shape (N,) or (N, dim)
returning predictions of shape (N,). The meta-gradient is autograd's gradient through the unrolled inner
loop, so it is exact for any such model; fast paths are tested against it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import autograd.numpy as anp
from autograd import grad, value_and_grad
from autograd.tracer import getval

from .tasks import Task

Predict = Callable[[dict, "anp.ndarray"], "anp.ndarray"]


@dataclass(frozen=True)
class InnerLoop:
    """Inner-loop settings: ``steps`` plain gradient steps of size ``lr`` on
    ``loss_scale * mean squared error`` (the notebook uses 0.5). ``first_order`` drops the
    second-order terms from the meta-gradient (first-order MAML). ``only`` names the parameters
    the inner loop adapts (None: all; ANIL adapts the output layer only). No hyperparameter has a
    default here: runs build it from the config (``algorithm.*``), tests say what they use."""

    lr: float
    steps: int
    first_order: bool = False
    loss_scale: float | None = None  # required (positional or keyword); None only to keep the field order
    only: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.loss_scale is None:
            raise TypeError("InnerLoop needs loss_scale (a run's algorithm.loss_scale)")


def inner_loss(predict: Predict, params, x, y, scale: float):
    """``scale`` * mean squared error of predict(params, x) against y, a scalar."""
    return scale * anp.mean((y - predict(params, x)) ** 2)


def sgd_step(params: dict, grads: dict, lr, only=None) -> dict:
    """One gradient step on a parameter dict, returning a new dict. ``lr`` is a number or a dict of
    per-parameter learning rates (arrays shaped like the parameters); ``only`` limits the names."""
    return {k: params[k] - (lr[k] if isinstance(lr, dict) else lr) * grads[k]
            if only is None or k in only else params[k] for k in params}


def adapt(predict: Predict, params: dict, task: Task, inner: InnerLoop, lrs: dict | None = None) -> list[dict]:
    """Inner loop on the task's support set; returns the trajectory [params, ..., adapted].

    ``lrs`` (per-parameter learning rates, Meta-SGD) replaces ``inner.lr`` when given. With
    ``inner.first_order`` the inner gradients are taken at untraced values, so an outer autograd
    gradient treats them as constants.
    """
    loss_grad = grad(lambda p: inner_loss(predict, p, task.x, task.y, inner.loss_scale))
    trajectory = [params]
    for _ in range(inner.steps):
        current = trajectory[-1]
        g = loss_grad(_untraced(current) if inner.first_order else current)
        trajectory.append(sgd_step(current, g, inner.lr if lrs is None else lrs, inner.only))
    return trajectory


def meta_objective(predict: Predict, params: dict, task: Task, inner: InnerLoop, lrs: dict | None = None):
    """Loss on the task's query set after adapting on its support set (scalar)."""
    adapted = adapt(predict, params, task, inner, lrs)[-1]
    xq, yq = task.query
    return inner_loss(predict, adapted, xq, yq, inner.loss_scale)


def batch_meta_objective(predict: Predict, params: dict, tasks: Sequence[Task], inner: InnerLoop,
                         lrs: dict | None = None):
    """Mean meta-objective over a meta-batch of tasks (scalar)."""
    total = 0.0
    for task in tasks:
        total = total + meta_objective(predict, params, task, inner, lrs)
    return total / len(tasks)


def meta_value_and_grad(predict: Predict, params: dict, tasks: Sequence[Task], inner: InnerLoop):
    """(mean meta-objective, its gradient as a dict like params), by autograd through the inner loop."""
    return value_and_grad(lambda p: batch_meta_objective(predict, p, tasks, inner))(params)


def _untraced(params: dict) -> dict:
    """The plain numpy values of a possibly traced parameter dict."""
    return {k: getval(v) for k, v in params.items()}
