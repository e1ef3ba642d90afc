"""Outer (meta) optimizers as pure updates with explicit state.

Each optimizer has ``init(params) -> state`` and ``update(params, grads, state) -> (params, state)``;
params, grads and every array in state are dicts of numpy arrays keyed by parameter name, so the
state saves to and loads from a checkpoint as it is. Updates keep the params' dtype (Python-float
hyperparameters do not promote float32 arrays under NumPy 2's promotion rules). Hyperparameters have
no defaults here: they live in ``config.py`` (optimizer groups), once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _zeros_like(params: dict) -> dict:
    """Zeros shaped and typed like each parameter (float32 params keep float32 state)."""
    return {k: np.zeros_like(np.asarray(v)) for k, v in params.items()}


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent: p <- p - lr * g (the notebook's outer step)."""

    lr: float

    def init(self, params: dict) -> dict:
        return {}

    def update(self, params: dict, grads: dict, state: dict):
        return {k: params[k] - self.lr * grads[k] for k in params}, state


@dataclass(frozen=True)
class Momentum:
    """Heavy-ball momentum: v <- beta * v + g; p <- p - lr * v."""

    lr: float
    beta: float

    def init(self, params: dict) -> dict:
        return {"velocity": _zeros_like(params)}

    def update(self, params: dict, grads: dict, state: dict):
        v = {k: self.beta * state["velocity"][k] + grads[k] for k in params}
        return {k: params[k] - self.lr * v[k] for k in params}, {"velocity": v}


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) with bias correction; ``step`` counts updates done."""

    lr: float
    beta1: float
    beta2: float
    eps: float

    def init(self, params: dict) -> dict:
        return {"m": _zeros_like(params), "v": _zeros_like(params), "step": 0}

    def update(self, params: dict, grads: dict, state: dict):
        t = int(state["step"]) + 1
        m = {k: self.beta1 * state["m"][k] + (1 - self.beta1) * grads[k] for k in params}
        v = {k: self.beta2 * state["v"][k] + (1 - self.beta2) * grads[k] ** 2 for k in params}
        c1, c2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        new = {k: params[k] - self.lr * (m[k] / c1) / (np.sqrt(v[k] / c2) + self.eps) for k in params}
        return new, {"m": m, "v": v, "step": t}


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
