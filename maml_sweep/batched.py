"""Batched adaptation for the MLP in plain numpy: many tasks' inner loops at once, each task with
its own copy of the parameters along a leading task axis. No meta-gradient: this serves
evaluation (adaptation curves), Reptile's direction and figures. Tested against ``maml.adapt``.

Shapes: T tasks, N support points, M query points; a batched parameter has shape (T, *shape).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .maml import InnerLoop
from .model import MLP
from .tasks import Task


def forward(model: MLP, P: dict, x: np.ndarray) -> np.ndarray:
    """Outputs (T, N) of batched parameters P for inputs x (T, N)."""
    return _forward(model, P, x)[0]


def _forward(model: MLP, P: dict, x: np.ndarray):
    """Outputs (T, N) and the pre-activations of every hidden layer, for inputs x (T, N)."""
    L = len(model.hidden)
    z = x[:, :, None] * P["W1"][:, None, :] + P["b1"][:, None, :]
    zs = [z]
    for k in range(2, L + 1):
        z = np.matmul(_act(model, z), P[f"W{k}"]) + P[f"b{k}"][:, None, :]
        zs.append(z)
    h = _act(model, z)
    out = np.matmul(h, P[f"w{L + 1}"][:, :, None])[..., 0] + P[f"b{L + 1}"][:, None]
    return out, zs


def _act(model: MLP, z):
    return np.maximum(z, 0.0) if model.activation == "relu" else np.tanh(z)


def _act_grad(model: MLP, z):
    if model.activation == "relu":  # autograd's convention: 0.5 at exact ties
        return (z > 0) + 0.5 * (z == 0)
    return 1.0 - np.tanh(z) ** 2


def _loss_grads(model: MLP, P: dict, x, y, scale: float) -> dict:
    """Gradient of scale * mean squared error per task, batched like P."""
    L = len(model.hidden)
    out, zs = _forward(model, P, x)
    d_out = (2.0 * scale / x.shape[1]) * (out - y)  # (T, N)
    h = _act(model, zs[-1])
    g = {f"w{L + 1}": np.matmul(d_out[:, None, :], h)[:, 0], f"b{L + 1}": d_out.sum(axis=1)}
    d_h = d_out[:, :, None] * P[f"w{L + 1}"][:, None, :]
    for k in range(L, 0, -1):
        d_z = d_h * _act_grad(model, zs[k - 1])
        g[f"b{k}"] = d_z.sum(axis=1)
        if k == 1:
            g["W1"] = np.matmul(x[:, None, :], d_z)[:, 0]
        else:
            h_prev = _act(model, zs[k - 2])
            g[f"W{k}"] = np.matmul(h_prev.transpose(0, 2, 1), d_z)
            d_h = np.matmul(d_z, P[f"W{k}"].transpose(0, 2, 1))
    return g


def stack(tasks: Sequence[Task]):
    """(x, y, x_query, y_query), each stacked to (T, points)."""
    x = np.stack([t.x for t in tasks])
    y = np.stack([t.y for t in tasks])
    q = [t.query for t in tasks]
    return x, y, np.stack([a for a, _ in q]), np.stack([b for _, b in q])


def adapt_many(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop, lrs: dict | None = None,
               on_step=None) -> dict:
    """Adapt ``params`` (one set, shared) to every task: ``inner.steps`` gradient steps on each
    support set (``lrs``: per-parameter rates; ``inner.only``: names adapted). Calls
    ``on_step(k, P, xq, yq)`` at k = 0..steps with the batched params P; returns the final P."""
    x, y, xq, yq = stack(tasks)
    T = len(tasks)
    P = {k: np.broadcast_to(np.asarray(v, dtype=float), (T, *np.shape(v))).copy() for k, v in params.items()
         if k in model.names}
    for k in range(inner.steps + 1):
        if on_step is not None:
            on_step(k, P, xq, yq)
        if k == inner.steps:
            break
        g = _loss_grads(model, P, x, y, inner.loss_scale)
        for name in P if inner.only is None else inner.only:
            P[name] -= (inner.lr if lrs is None else lrs[name]) * g[name]
    return P


def adaptation_mse(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop,
                   lrs: dict | None = None) -> np.ndarray:
    """Plain MSE on each task's query set after k = 0..inner.steps steps, shape (T, steps + 1)."""
    curves = np.empty((len(tasks), inner.steps + 1))

    def record(k, P, xq, yq):
        curves[:, k] = np.mean((forward(model, P, xq) - yq) ** 2, axis=1)

    adapt_many(model, params, tasks, inner, lrs, on_step=record)
    return curves
