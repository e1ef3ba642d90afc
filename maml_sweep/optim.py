"""Outer (meta) optimizers as pure updates with explicit state.

Each optimizer has ``init(params) -> state`` and ``update(params, grads, state) -> (params, state)``;
params, grads and every array in state are dicts of numpy arrays keyed by parameter name, so the
state saves to and loads from a checkpoint as it is. Updates keep the params' dtype (Python-float
hyperparameters do not promote float32 arrays under NumPy 2's promotion rules). Each is declared once,
registered by name in :data:`OPTIMIZERS` (``optimizer=<name>``): its class (no defaults), its config
``schema`` (the defaults, once) and its own value checks (``check``; ``optimizer.lr`` is checked for all).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from omegaconf import MISSING

from .checks import Checks, finite_positive, registrar

OPTIMIZERS: dict[str, type] = {}  # optimizer=<name> -> its class


register_optimizer = registrar(OPTIMIZERS)  # @register_optimizer("name"): optimizer=name is the class


@dataclass
class OptimizerConfig:
    """``optimizer=sgd``: the outer (meta) optimizer, plain gradient descent (the notebook's)."""
    name: str = MISSING
    lr: float = 0.01


@dataclass
class MomentumConfig(OptimizerConfig):
    """``optimizer=momentum``: heavy-ball momentum, v <- beta v + g; p <- p - lr v."""
    lr: float = 0.001
    beta: float = 0.9


@dataclass
class AdamConfig(OptimizerConfig):
    """``optimizer=adam``: Adam with bias correction."""
    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def _zeros_like(params: dict) -> dict:
    """Zeros shaped and typed like each parameter (float32 params keep float32 state)."""
    return {k: np.zeros_like(np.asarray(v)) for k, v in params.items()}


@register_optimizer("sgd")
@dataclass(frozen=True)
class SGD:
    """Plain gradient descent: p <- p - lr * g (the notebook's outer step)."""

    lr: float

    schema: ClassVar[type] = OptimizerConfig

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        """Its own value checks on the composed config (``optimizer.lr``: checked for every optimizer)."""

    def init(self, params: dict) -> dict:
        return {}

    def update(self, params: dict, grads: dict, state: dict):
        return {k: params[k] - self.lr * grads[k] for k in params}, state


@register_optimizer("momentum")
@dataclass(frozen=True)
class Momentum:
    """Heavy-ball momentum: v <- beta * v + g; p <- p - lr * v."""

    lr: float
    beta: float

    schema: ClassVar[type] = MomentumConfig

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        c.need(0 <= cfg.optimizer.beta < 1, "optimizer.beta", "in [0, 1)", cfg.optimizer.beta)

    def init(self, params: dict) -> dict:
        return {"velocity": _zeros_like(params)}

    def update(self, params: dict, grads: dict, state: dict):
        v = {k: self.beta * state["velocity"][k] + grads[k] for k in params}
        return {k: params[k] - self.lr * v[k] for k in params}, {"velocity": v}


@register_optimizer("adam")
@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) with bias correction; ``step`` counts updates done."""

    lr: float
    beta1: float
    beta2: float
    eps: float

    schema: ClassVar[type] = AdamConfig

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        o = cfg.optimizer
        c.need(0 <= o.beta1 < 1, "optimizer.beta1", "in [0, 1)", o.beta1)
        c.need(0 <= o.beta2 < 1, "optimizer.beta2", "in [0, 1)", o.beta2)
        c.need(finite_positive(o.eps), "optimizer.eps", "a finite number > 0", o.eps)

    def init(self, params: dict) -> dict:
        return {"m": _zeros_like(params), "v": _zeros_like(params), "step": 0}

    def update(self, params: dict, grads: dict, state: dict):
        t = int(state["step"]) + 1
        m = {k: self.beta1 * state["m"][k] + (1 - self.beta1) * grads[k] for k in params}
        v = {k: self.beta2 * state["v"][k] + (1 - self.beta2) * grads[k] ** 2 for k in params}
        c1, c2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        new = {k: params[k] - self.lr * (m[k] / c1) / (np.sqrt(v[k] / c2) + self.eps) for k in params}
        return new, {"m": m, "v": v, "step": t}
