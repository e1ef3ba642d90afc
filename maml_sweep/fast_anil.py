"""Fast ANIL for :class:`maml_sweep.model.MLP`: the inner loop adapts only the output layer
(the head), so the body's activations are computed once per task and reused by every inner step,
the query loss and the meta-gradient.

With the body's last activations augmented by a ones column, ``Hs`` (N, d+1) on the support and
``Hq`` (M, d+1) on the query points, and the head ``theta`` = [w; b] (d+1,), one task's inner loop
is linear least squares (c = 2 s / N, s the loss scale, lr the inner rate):

    r_j = Hs theta_j - y,   theta_{j+1} = theta_j - lr c Hs^T r_j,   Q = s mean((Hq theta_K - yq)^2)

Meta-gradient (second order; the Hessian of the inner loss in the head is c Hs^T Hs):

- the head's: a_K = (2 s / M) Hq^T rq, a_j = a_{j+1} - lr c Hs^T (Hs a_{j+1}); the answer is a_0;
- through the activations: dQ/dHq = (2 s / M) rq theta_K^T and
  dQ/dHs = -lr c sum_j (r_j a_{j+1}^T + (Hs a_{j+1}) theta_j^T), one (N, 2K) x (2K, d+1) product;
  then one ordinary backward pass through the body, whose parameters all tasks share (2-D
  products over every task's points at once).

First order (the inner gradients held constant): a_j = a_{j+1} and no term through Hs. ReLU's
derivative is 0.5 at exact ties (autograd's convention), as in :mod:`maml_sweep.fast`. The
numbers equal :func:`maml_sweep.maml.meta_value_and_grad` with ``inner.only`` = the output layer
to rounding (``tests/test_fast_algorithms.py``). This path keeps no tape and no buffers: about 60
numpy calls per meta-batch, each on arrays of at most (T N, d).

dtype: the params' (float32 params: float32 throughout; the per-task MSE of the curves summed in
float64).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .fast_layout import _stack, dtype_of, supports
from .maml import InnerLoop
from .model import MLP
from .tasks import Task

CHUNK_TASKS = 32  # tasks per chunk of the adaptation curves (the body's activations: 32 x 100 x 50)


def applies(model, inner: InnerLoop) -> bool:
    """True if this path handles ``inner``: an MLP the fast path supports, only its head adapted."""
    return supports(model) and inner.only is not None and tuple(inner.only) == tuple(model.names[-2:])


def _body_forward(model: MLP, params: dict, x: np.ndarray, dtype):
    """Body activations for inputs x (T, P) or (T, P, dim): (Ha (T, P, d_L + 1) with a ones
    column, the list of (activation h_k, derivative s_k) per hidden layer, each (T P, d_k))."""
    L = len(model.hidden)
    flat = x.reshape(-1, model.dim)
    layers, h = [], flat
    T_P = x.shape[:2]
    for k in range(1, L + 1):
        W = np.asarray(params[f"W{k}"], dtype)
        z = flat @ W.reshape(model.dim, -1) if k == 1 else h @ W
        z += np.asarray(params[f"b{k}"], dtype)
        if k == L:  # the last activations go next to a ones column
            last = np.empty((z.shape[0], z.shape[1] + 1), dtype)
            last[:, -1] = 1.0
            h = last[:, :-1]
        else:
            h = np.empty_like(z)
        if model.activation == "relu":
            s = np.greater(z, 0.0).astype(dtype)
            if not z.all():
                s[z == 0.0] = 0.5
            np.multiply(z, s, out=h)
        else:
            np.tanh(z, out=h)
            s = 1.0 - h * h
        layers.append((h, s))
    return last.reshape(T_P + (last.shape[-1],)), layers


def _body_backward(model: MLP, params: dict, x: np.ndarray, layers: list, dh: np.ndarray, dtype) -> dict:
    """Gradients of the body's parameters given dh = dQ/dh_L (T P, d_L), summed over all points
    (W1 as (dim, h1))."""
    L = len(model.hidden)
    grads = {}
    d = dh
    for k in range(L, 0, -1):
        h, s = layers[k - 1]
        d = d * s  # dQ/dz_k
        grads[f"b{k}"] = d.sum(axis=0)
        if k == 1:
            grads["W1"] = x.reshape(-1, model.dim).T @ d
        else:
            grads[f"W{k}"] = layers[k - 2][0].T @ d
            d = d @ np.asarray(params[f"W{k}"], dtype).T
    return grads


def _head(model: MLP, params: dict, dtype) -> np.ndarray:
    """The head [w; b] (d_L + 1,) in ``dtype``."""
    L1 = len(model.hidden) + 1
    return np.concatenate([np.asarray(params[f"w{L1}"], dtype).reshape(-1),
                           np.asarray(params[f"b{L1}"], dtype).reshape(1)])


def _split(model, params, data, dtype):
    """Body activations of support and query points: (Hs (T, N, d+1), Hq (T, M, d+1), the
    forward's layers, the inputs they saw (T, P) or (T, P, dim), same_query)."""
    x, y, xq, yq = data
    same = xq is x
    xs = x if same else np.concatenate([x, xq], axis=1)
    Ha, layers = _body_forward(model, params, xs, dtype)
    N = x.shape[1]
    return Ha[:, :N], (Ha if same else Ha[:, N:]), layers, xs, same


def _inner(theta0, Hs, y, lr, c, K):
    """The head's inner loop on T tasks: thetas [theta_0..theta_K] (each (T, d+1)) and the
    support residuals r_0..r_{K-1} (each (T, N))."""
    T = Hs.shape[0]
    theta = np.broadcast_to(theta0, (T, theta0.shape[-1]))
    thetas, rs = [theta], []
    for _ in range(K):
        r = np.matmul(Hs, theta[:, :, None])[..., 0]
        r -= y
        g = np.matmul(r[:, None, :], Hs)[:, 0]
        theta = theta - (lr * c) * g
        thetas.append(theta)
        rs.append(r)
    return thetas, rs


def value_and_grad(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop):
    """(mean meta-objective, gradient dict like the model's params, in the params' dtype) of
    ANIL: the numbers of ``maml.meta_value_and_grad`` with ``inner.only`` = the output layer."""
    dtype = dtype_of({k: params[k] for k in model.names})
    data = _stack(tasks, dtype)
    _, y, _, yq = data
    T, N, M, K = y.shape[0], y.shape[1], yq.shape[1], int(inner.steps)
    s, lr = float(inner.loss_scale), float(inner.lr)
    c, cq = 2.0 * s / N, 2.0 * s / M
    Hs, Hq, layers, xs, same = _split(model, params, data, dtype)
    thetas, rs = _inner(_head(model, params, dtype), Hs, y, lr, c, K)
    rq = np.matmul(Hq, thetas[K][:, :, None])[..., 0]
    rq -= yq
    value = s * float(np.einsum("tm,tm->", rq, rq, dtype=np.float64)) / (M * T)
    rq *= cq
    a = np.matmul(rq[:, None, :], Hq)[:, 0]  # a_K (T, d+1)
    dHq = rq[:, :, None] * thetas[K][:, None, :]  # (T, M, d+1)
    if K and not inner.first_order:
        us, adj = [], []
        for j in range(K - 1, -1, -1):
            u = np.matmul(Hs, a[:, :, None])[..., 0]  # Hs a_{j+1} (T, N)
            us.append(u), adj.append(a)
            a = a - (lr * c) * np.matmul(u[:, None, :], Hs)[:, 0]
        us.reverse(), adj.reverse()  # index j: u_j, a_{j+1}
        left = np.stack(rs + us, axis=-1)  # (T, N, 2K)
        right = np.stack(adj + thetas[:K], axis=1)  # (T, 2K, d+1)
        dHs = np.matmul(left, right)
        dHs *= -lr * c
        if same:
            dHs += dHq
            dH = dHs
        else:
            dH = np.concatenate([dHs, dHq], axis=1)
    elif same:
        dH = dHq
    else:
        dH = np.concatenate([np.zeros_like(Hs), dHq], axis=1)
    dh = dH[..., :-1].reshape(-1, dH.shape[-1] - 1)
    grads = _body_backward(model, params, xs, layers, dh, dtype)
    head = a.sum(axis=0)
    L1 = len(model.hidden) + 1
    grads[f"w{L1}"], grads[f"b{L1}"] = head[:-1], head[-1]
    return value, {k: np.asarray(grads[k] / T, dtype).reshape(np.shape(params[k])) for k in model.names}


def meta_objective(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop) -> float:
    """Mean meta-objective (no gradient)."""
    dtype = dtype_of({k: params[k] for k in model.names})
    data = _stack(tasks, dtype)
    _, y, _, yq = data
    Hs, Hq, _, _, _ = _split(model, params, data, dtype)
    thetas, _ = _inner(_head(model, params, dtype), Hs, y, float(inner.lr),
                       2.0 * float(inner.loss_scale) / y.shape[1], int(inner.steps))
    rq = np.matmul(Hq, thetas[-1][:, :, None])[..., 0]
    rq -= yq
    return float(inner.loss_scale) * float(np.einsum("tm,tm->", rq, rq, dtype=np.float64)) / rq.size


def adaptation_mse(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop) -> np.ndarray:
    """Plain MSE on each task's query set after k = 0..inner.steps head steps (T, steps + 1),
    float64: the numbers of :func:`maml_sweep.batched.adaptation_mse` with ``inner.only``."""
    dtype = dtype_of({k: params[k] for k in model.names})
    curves = np.empty((len(tasks), inner.steps + 1))
    theta0 = _head(model, params, dtype)
    for start in range(0, len(tasks), CHUNK_TASKS):
        data = _stack(tasks[start:start + CHUNK_TASKS], dtype)
        _, y, _, yq = data
        Hs, Hq, _, _, _ = _split(model, params, data, dtype)
        thetas, _ = _inner(theta0, Hs, y, float(inner.lr), 2.0 * float(inner.loss_scale) / y.shape[1],
                           int(inner.steps))
        for k, theta in enumerate(thetas):
            r = np.matmul(Hq, theta[:, :, None])[..., 0]
            r -= yq
            curves[start:start + CHUNK_TASKS, k] = np.einsum("tm,tm->t", r, r, dtype=np.float64) / r.shape[1]
    return curves
