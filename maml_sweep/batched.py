"""Batched adaptation for the MLP in plain numpy: many tasks' inner loops at once, each task with
its own copy of the parameters along a leading task axis. No meta-gradient: this serves
evaluation (adaptation curves), Reptile's direction and figures. Tested against ``maml.adapt``.

Shapes: T tasks, N support points, M query points, inputs x (T, N) (dim 1) or (T, N, dim); a
batched parameter has shape (T, *shape).
Arrays keep the params' dtype (float32 params: float32 throughout). :func:`adaptation_mse` goes
through the tasks in chunks of ``CHUNK_TASKS`` so that each chunk's activations stay in cache
(whole 300-task banks stream 12 MB arrays through memory at every operation: ~3x slower).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .maml import InnerLoop
from .model import MLP
from .tasks import Task


def forward(model: MLP, P: dict, x: np.ndarray) -> np.ndarray:
    """Outputs (T, N) of batched parameters P for inputs x (T, N) or (T, N, dim)."""
    return _forward(model, P, x)[0]


def _inputs(model: MLP, x: np.ndarray) -> np.ndarray:
    """Inputs as (T, N, dim)."""
    return x.reshape(x.shape[0], x.shape[1], model.dim)


def _first_weights(model: MLP, P: dict) -> np.ndarray:
    """Batched W1 as (T, dim, h1) (a view; params saved before inputs had a dimension: (T, h1))."""
    W1 = P["W1"]
    return W1.reshape(W1.shape[0], model.dim, model.hidden[0])


def _forward(model: MLP, P: dict, x: np.ndarray):
    """Outputs (T, N) and, per hidden layer, (pre-activation, activation), each (T, N, d_k)."""
    L = len(model.hidden)
    layers = []
    h = _inputs(model, x)
    for k in range(1, L + 1):
        z = np.matmul(h, _first_weights(model, P) if k == 1 else P[f"W{k}"])
        z += P[f"b{k}"][:, None, :]
        h = _act(model, z)
        layers.append((z, h))
    out = np.matmul(h, P[f"w{L + 1}"][:, :, None])[..., 0]
    out += P[f"b{L + 1}"][:, None]
    return out, layers


def _act(model: MLP, z):
    return np.maximum(z, 0.0) if model.activation == "relu" else np.tanh(z)


def _act_grad(model: MLP, z, h):
    """Derivative of the activation at z (h: the activation there), shaped and typed like z."""
    if model.activation == "relu":  # autograd's convention: 0.5 at exact ties
        s = np.greater(z, 0.0, out=np.empty_like(z))
        if not z.all():
            s[z == 0] = 0.5
        return s
    s = np.square(h)
    return np.subtract(1.0, s, out=s)


def _loss_grads(model: MLP, P: dict, x, y, scale: float) -> dict:
    """Gradient of scale * mean squared error per task, batched like P."""
    L = len(model.hidden)
    out, layers = _forward(model, P, x)
    d_out = np.subtract(out, y, out=out)
    d_out *= 2.0 * scale / x.shape[1]  # (T, N)
    h = layers[-1][1]
    g = {f"w{L + 1}": np.matmul(d_out[:, None, :], h)[:, 0], f"b{L + 1}": d_out.sum(axis=1)}
    d = d_out[:, :, None] * P[f"w{L + 1}"][:, None, :]  # dl/dh_L, then dl/dz_k in place
    for k in range(L, 0, -1):
        z, h = layers[k - 1]
        d *= _act_grad(model, z, h)
        g[f"b{k}"] = d.sum(axis=1)
        if k == 1:
            g["W1"] = np.matmul(_inputs(model, x).swapaxes(1, 2), d).reshape(P["W1"].shape)
        else:
            g[f"W{k}"] = np.matmul(layers[k - 2][1].swapaxes(1, 2), d)
            d = np.matmul(d, P[f"W{k}"].swapaxes(1, 2))
    return g


def stack(tasks: Sequence[Task]):
    """(x, y, x_query, y_query), each stacked to (T, points) (inputs: (T, points, dim) for dim > 1)."""
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
    P = {k: np.broadcast_to(np.asarray(v), (T, *np.shape(v))).copy() for k, v in params.items()
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


CHUNK_TASKS = 8  # tasks per chunk in adaptation_mse (8-16 measured best at 100 points, 50 units)


def adaptation_mse(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop,
                   lrs: dict | None = None) -> np.ndarray:
    """Plain MSE on each task's query set after k = 0..inner.steps steps, shape (T, steps + 1),
    float64 whatever the params' dtype (the MSE of each task is summed in float64)."""
    curves = np.empty((len(tasks), inner.steps + 1))
    for start in range(0, len(tasks), CHUNK_TASKS):
        rows = curves[start:start + CHUNK_TASKS]

        def record(k, P, xq, yq, rows=rows):
            r = forward(model, P, xq) - yq
            rows[:, k] = np.einsum("tm,tm->t", r, r, dtype=np.float64) / r.shape[1]

        adapt_many(model, params, tasks[start:start + CHUNK_TASKS], inner, lrs, on_step=record)
    return curves
