"""Fast MAML meta-gradient for :class:`maml_sweep.model.MLP`: the whole batched inner loop and
query loss as ONE autograd primitive with a hand-written VJP.

Layout. All parameters live in one flat vector ``theta`` of size P, in ``model.names`` order.
That order makes layer k's weight and bias one contiguous block ``[W_k; b_k]`` of shape
``(d_{k-1} + 1, d_k)`` (``d_0 = d_{L+1} = 1``), which multiplies activations augmented with a
column of ones, so every layer (bias included) is one matmul forward and one matmul for its
gradient. A meta-batch of T tasks carries a leading task axis: inputs (T, N), per-task
parameters (T, P), activations (T, N, d_k + 1).

Algorithm (per task, inner loss l, query loss Q, theta_{j+1} = theta_j - lr * grad l(theta_j)):

- forward: K inner steps, keeping each step's activations, activation derivatives and
  back-propagated errors, then Q and its gradient a_K at theta_K;
- backward: a_j = a_{j+1} - H_j (lr * a_{j+1}) with H_j the Hessian of l at theta_j, by an exact
  Hessian-vector product (forward-over-reverse through the cached step; tanh's second
  derivative included, ReLU's is zero as in autograd). First-order: a_j = a_{j+1}.
- d/d lr = -sum_j a_{j+1} * grad l(theta_j) comes for free, so ``lr`` is differentiable too
  (a scalar, or a (P,) vector of per-parameter learning rates, Meta-SGD style).

The numbers equal :func:`maml_sweep.maml.meta_value_and_grad` to rounding, including autograd's
ReLU subgradient convention (0.5 at exact ties).

Entry points. :func:`fast_meta_value_and_grad` runs the numpy core directly (what a trainer
wants); :func:`meta_loss` wraps the same core as an autograd primitive, so ``autograd.grad`` of
any expression built on it works, for the params and for the inner lr (once differentiable:
the VJP is plain numpy).

Hessian-vector products use the R-operator of Pearlmutter (1994): ``R{f} = d/dr f(theta + r v)``
at r = 0, pushed through the forward pass (Rz, Rh) and then through the backward pass
(R(dl/dz), R(dl/dh)), giving Hess(l) v exactly at the cost of about two gradients.
B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1):147-160, 1994.

dtype. The computation runs in the params' dtype: float32 params give a float32 path end to end
(tasks are cast, BLAS sgemm); anything else runs in float64.

Speed. Per outer step the cost is ~48 small gemms plus ~100 elementwise passes and ~250 numpy
calls, so: buffers are reused across calls (per problem size and thread), elementwise work runs on
contiguous arrays, and big meta-batches go through in L2-sized chunks of tasks (see
``CHUNK_BYTES``). One task (T=1) multiplies with ``np.dot`` on 2-D views, which takes transposed
operands and K=1 products at full speed; stacks (T>1) use ``np.matmul``, which does not, so they
copy weights transposed once per step and write outer products as K=2 products.

Buffers, tape and kernels: :mod:`maml_sweep.fast_tape` (its docstring has the rules every change
must keep); the flat layout and the stacked data: :mod:`maml_sweep.fast_layout`.
"""
from __future__ import annotations

import threading
from typing import Sequence

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp_argnum, primitive
from autograd.tracer import getval, isbox

from . import fast_tape
from .fast_layout import _Layout, _layout, _stack, dtype_of, load_inputs, supports
from .fast_tape import (  # noqa: F401
    _WORKSPACES,
    TapeKey,
    _copyto,
    _dot,
    _rec_forward,
    _rec_hvp,
    _rec_loss_grad,
    _Tape,
    _Workspace,
    _workspace,
    clear_workspaces,
    eager,
    tape_key,
)
from .maml import InnerLoop
from .model import MLP
from .tasks import Task

__all__ = ["supports", "fast_meta_value_and_grad", "fast_meta_value_and_grad_lrs", "adapted_mean",
           "fast_meta_objective", "meta_loss", "eager", "hessian_vector_product"]


# ----------------------------------------------------------------------------- whole loop


def _rec_inner_loop(t, key, ws) -> list:
    """Record the inner loop from ws.theta0; returns the views of theta_0..theta_K. With
    ``key.second``, step j's activations stay in ws.caches[j] (for the Hessian-vector products)."""
    B, prev = [ws.theta0_views], ws.theta0
    for j in range(key.steps):
        _rec_loss_grad(t, key, B[j], ws.caches[j if key.second else 0], ws.Z, ws.F, ws.y,
                       ws.grad_blocks[j], ws.Wo)
        if key.kind == "curve" and key.same_query:  # the residuals at theta_j are the query's: score them
            t(_mse_into, ws.F[..., 0], ws.curve[:, j])
        t(np.multiply, ws.grads[j], ws.lrs[key.vector_lr], ws.tmp)
        t(np.subtract, prev, ws.tmp, ws.thetas[j])
        prev = ws.thetas[j]
        B.append(ws.theta_views[j])
    return B


def _mse_into(r, out):
    """Mean of squares of residuals r (T, M) per task into out (T,), summed in float64."""
    np.einsum("tm,tm->t", r, r, dtype=np.float64, out=out)
    out /= r.shape[-1]


def _lr_grad_scalar(a, g, out):
    out[0] -= np.vdot(a, g)


def _lr_grad_vector(a, g, out):
    out -= np.einsum("tp,tp->p", a, g)


def _record(ws: _Workspace, key: TapeKey, eager: bool = False) -> _Tape:
    """Record the tape of ``key`` on ``ws``: the meta-objective's residuals in ws.Fq and, for
    kind "grad", the per-task meta-gradients (ws.a) and, with ``key.lr_grad``, the summed d/d lr
    (ws.glrs[key.vector_lr]). Constants come from ``key`` only (rule 2)."""
    t = _Tape(eager)
    lr, glr = ws.lrs[key.vector_lr], ws.glrs[key.vector_lr]
    B = _rec_inner_loop(t, key, ws)
    K = key.steps
    if key.kind in ("value", "curve"):
        scored_in_loop = key.kind == "curve" and key.same_query  # steps 0..K-1 (see _rec_inner_loop)
        for j in range(K + 1) if key.kind == "curve" and not scored_in_loop else (K,):
            _rec_forward(t, key, B[j], ws.qcache, ws.Zq, ws.Fq, derivatives=False)
            t(np.subtract, ws.Fq[..., 0], ws.yq, ws.Fq[..., 0])
            if key.kind == "curve":
                t(_mse_into, ws.Fq[..., 0], ws.curve[:, j])
        return t
    _rec_loss_grad(t, key, B[K], ws.qcache, ws.Zq, ws.Fq, ws.yq, ws.a_blocks, ws.Wo)
    t(_copyto, glr, 0.0)
    for j in range(K - 1, -1, -1):
        if key.lr_grad:
            if key.vector_lr and key.T == 1:  # glr -= a * g, without einsum's set-up
                t(np.multiply, ws.a[0], ws.grads[j][0], ws.tmp[0])
                t(np.subtract, glr, ws.tmp[0], glr)
            else:
                t(_lr_grad_vector if key.vector_lr else _lr_grad_scalar, ws.a, ws.grads[j], glr)
        if key.second:
            t(np.multiply, ws.a, lr, ws.v)
            _rec_hvp(t, key, B[j], ws.caches[j], ws.v_views, ws)
            t(np.subtract, ws.a, ws.hv, ws.a)
    return t


def _run(lay, theta, lr, data, inner, kind: str, lr_grad: bool = False) -> _Workspace:
    """Load one chunk (theta (P,), lr, stacked data) into its workspace and run its tape (recorded
    on first use; recorded and run at once, and not kept, in eager mode)."""
    x, y, xq, yq = data
    key = tape_key(lay, data, inner, lr, kind, lr_grad)
    ws = _workspace(lay, key)
    load_inputs(ws.xa, x)
    ws.y[...] = y
    if not key.same_query:
        load_inputs(ws.xqa, xq)
        ws.yq[...] = yq
    ws.theta0[0] = theta
    ws.lrs[key.vector_lr][...] = lr
    if fast_tape.EAGER:
        _record(ws, key, eager=True)
        return ws
    tape = ws.tapes.get(key)
    if tape is None:
        tape = ws.tapes[key] = _record(ws, key)
    tape.run()
    return ws


def _query_losses(ws, scale) -> np.ndarray:
    """Query loss per task (T,) from the residuals the tape left in ws.Fq."""
    r = ws.Fq[..., 0]
    return scale * np.einsum("tn,tn->t", r, r) / r.shape[-1]


# Tasks go through in chunks whose buffers for one inner step take about CHUNK_BYTES, so they
# stay in a core's L2 cache; whole big batches stream every buffer from L3/memory and cost more
# per task. Measured on the notebook setting (2 MiB L2, T=16): chunks of 4 tasks are best, for
# both orders (per-task cost vs T=1: 2nd order 0.89 at 4 vs 0.99 unchunked; 1st 0.81 vs 0.91).
CHUNK_BYTES = 1 << 21


def chunk_size(lay: _Layout, N: int, M: int, itemsize: int) -> int:
    """Tasks per chunk: as many as keep one inner step's buffers within ``CHUNK_BYTES`` (>= 1)."""
    per_task = itemsize * (N + M) * (lay.dims[0] + 1 + 3 * sum(lay.dims[1:-1]))
    return max(1, CHUNK_BYTES // per_task)


def _chunks(lay, data) -> list:
    """Split stacked task data into chunks of tasks (each a tuple like ``data``)."""
    x, _, xq, _ = data
    T, N = x.shape[:2]
    size = min(T, chunk_size(lay, N, xq.shape[1], x.dtype.itemsize))
    if size >= T:
        return [data]
    out = []
    for i in range(0, T, size):
        x_, y_ = data[0][i:i + size], data[1][i:i + size]
        out.append((x_, y_, x_, y_) if xq is x else (x_, y_, data[2][i:i + size], data[3][i:i + size]))
    return out


def _value(lay, theta, lr, data, inner) -> np.ndarray:
    """Meta-objective per task (T,) at flat params theta (P,), no gradient."""
    return np.concatenate([_query_losses(_run(lay, theta, lr, part, inner, "value"), inner.loss_scale)
                           for part in _chunks(lay, data)])


def _curves(lay, theta, lr, data, inner) -> np.ndarray:
    """Plain query MSE per task after k = 0..inner.steps steps (T, steps + 1), float64."""
    return np.concatenate([_run(lay, theta, lr, part, inner, "curve").curve.copy()
                           for part in _chunks(lay, data)])


def _value_and_grads(lay, theta, lr, data, inner, lr_grad: bool = True):
    """(mean meta-objective, d/d theta (P,), d/d lr (shape of lr; 0 without ``lr_grad``)) for
    flat theta (P,), in theta's dtype."""
    vector_lr = np.ndim(lr) > 0
    value, g, glr = 0.0, 0.0, 0.0
    for part in _chunks(lay, data):
        ws = _run(lay, theta, lr, part, inner, "grad", lr_grad)
        value = value + _query_losses(ws, inner.loss_scale).sum()
        g = g + ws.a.sum(axis=0)
        glr = glr + (ws.glrs[True] if vector_lr else ws.glrs[False][0])
    T = data[0].shape[0]
    glr = glr / T
    return float(value / T), g / T, glr if vector_lr else float(glr)


def hessian_vector_product(model: MLP, params: dict, task: Task, v: dict, loss_scale: float) -> dict:
    """Hess(l) v (a dict like params) of the inner loss ``loss_scale * mean((f - y)^2)`` on the
    task's support set at ``params``, by the tape's own R-operator code (for tests and checks)."""
    lay, dtype = _layout(model), dtype_of(params)
    x, y, _, _ = _stack([Task(task.x, task.y)], dtype)
    key = tape_key(lay, (x, y, x, y), InnerLoop(0.0, 1, False, loss_scale), 0.0, "grad")
    ws = _Workspace(lay, key)
    load_inputs(ws.xa, x)
    ws.y[...], ws.theta0[0] = y, lay.pack(params, dtype)
    ws.v[...] = lay.pack(v, dtype)
    t = _Tape(eager=True)
    _rec_loss_grad(t, key, ws.theta0_views, ws.caches[0], ws.Z, ws.F, ws.y, ws.grad_blocks[0], ws.Wo)
    _rec_hvp(t, key, ws.theta0_views, ws.caches[0], ws.v_views, ws)
    return lay.unpack(ws.hv[0].copy())


# ----------------------------------------------------------------------------- autograd


_STASH = threading.local()


def _pack_arrays(lay, arrays, data) -> np.ndarray:
    """Flat theta from parameter arrays in ``lay.names`` order, in the stacked data's dtype."""
    return lay.pack(dict(zip(lay.names, arrays)), data[0].dtype)


@primitive
def _meta_loss_prim(lr, ctx, *arrays):
    """Mean meta-objective at parameter arrays ``arrays`` (in ``ctx[0].names`` order) with inner
    lr (scalar or (P,)); ``ctx`` = (layout, stacked task data, InnerLoop).

    Computes the gradients as well and stashes them for the VJPs, which autograd builds right
    after this call, so a gradient costs one pass."""
    lay, data, inner = ctx
    value, g_theta, g_lr = _value_and_grads(lay, _pack_arrays(lay, arrays, data), lr, data, inner)
    _STASH.last = (value, lay.unpack(g_theta), g_lr)
    return value


def _stashed(ans, lr, ctx, arrays):
    last = getattr(_STASH, "last", None)
    if last is None or last[0] is not ans:  # not built right after its forward: recompute
        lay, data, inner = ctx
        _, g_theta, g_lr = _value_and_grads(lay, _pack_arrays(lay, arrays, data), lr, data, inner)
        last = (ans, lay.unpack(g_theta), g_lr)
    return last


def _meta_loss_vjp(argnum, ans, args, kwargs):
    lr, ctx, arrays = args[0], args[1], args[2:]
    _, grads, g_lr = _stashed(ans, lr, ctx, arrays)
    if argnum == 0:
        return lambda g: g * g_lr
    return lambda g, gi=grads[ctx[0].names[argnum - 2]]: g * gi


defvjp_argnum(_meta_loss_prim, _meta_loss_vjp)


def meta_loss(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop, lr=None):
    """Mean meta-objective as an autograd-differentiable function of ``params`` (dict) and of
    ``lr`` (default ``inner.lr``; a scalar, or a dict like params of per-parameter learning
    rates broadcastable to each parameter's shape). Once differentiable (the VJP is numpy)."""
    lay = _layout(model)
    lr = inner.lr if lr is None else lr
    if isinstance(getval(lr), dict):  # also a dict being differentiated (a DictBox)
        lr = anp.concatenate([anp.ravel(lr[k] * np.ones(lay.shapes[k])) for k in lay.names])
    arrays = [params[k] for k in lay.names]
    dtype = dtype_of(params)
    ctx = (lay, _stack(tasks, dtype), inner)
    if not (isbox(lr) or any(isbox(a) for a in arrays)):
        return float(_value(lay, lay.pack(params, dtype), lr, ctx[1], inner).mean())
    return _meta_loss_prim(lr, ctx, *arrays)


# ----------------------------------------------------------------------------- public API


def fast_meta_value_and_grad(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop):
    """(mean meta-objective, gradient dict like params, in the params' dtype): the numbers of
    ``maml.meta_value_and_grad(model.predict, params, tasks, inner)``, in one batched pass."""
    lay, dtype = _layout(model), dtype_of(params)
    value, g, _ = _value_and_grads(lay, lay.pack(params, dtype), inner.lr, _stack(tasks, dtype), inner,
                                   lr_grad=False)
    return value, lay.unpack(g)


def fast_meta_value_and_grad_lrs(model: MLP, params: dict, lrs: dict, tasks: Sequence[Task], inner: InnerLoop):
    """(mean meta-objective, gradient dict like params, gradient dict like params for the rates)
    with per-parameter inner rates ``lrs`` (a dict like params; ``inner.lr`` unused), in one
    pass: Meta-SGD's direction, the numbers of autograd through the reference with ``lrs``."""
    lay, dtype = _layout(model), dtype_of(params)
    value, g, g_lr = _value_and_grads(lay, lay.pack(params, dtype), _flat_rates(lay, lrs, dtype),
                                      _stack(tasks, dtype), inner)
    return value, lay.unpack(g), lay.unpack(np.asarray(g_lr, dtype))


def adapted_mean(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop):
    """(mean query loss after the inner loop, the adapted parameters averaged over tasks, a dict
    like params): Reptile's ingredients, by the tape's inner loop (no gradient kept)."""
    lay, dtype = _layout(model), dtype_of(params)
    theta, data = lay.pack(params, dtype), _stack(tasks, dtype)
    loss, total, K = 0.0, 0.0, int(inner.steps)
    for part in _chunks(lay, data):
        ws = _run(lay, theta, inner.lr, part, inner, "value")
        loss = loss + _query_losses(ws, inner.loss_scale).sum()
        total = total + (ws.thetas[K - 1].sum(axis=0) if K else part[0].shape[0] * theta)
    T = data[0].shape[0]
    return float(loss / T), lay.unpack(np.asarray(total / T, dtype))


def _flat_rates(lay: _Layout, lrs: dict, dtype) -> np.ndarray:
    """Per-parameter rates (a dict of arrays broadcastable to each parameter) as a flat (P,) vector."""
    if all(np.shape(lrs[k]) == shape for k, shape in lay.shapes.items()):
        return lay.pack(lrs, dtype)
    return np.concatenate([np.ravel(np.broadcast_to(lrs[k], lay.shapes[k])) for k in lay.names]).astype(dtype)


def adaptation_mse(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop,
                   lrs: dict | None = None) -> np.ndarray:
    """Plain MSE on each task's query set after k = 0..inner.steps inner steps (T, steps + 1),
    float64: the numbers of :func:`maml_sweep.batched.adaptation_mse` (``lrs``: per-parameter
    rates like params; ``inner.only`` is not supported here)."""
    if inner.only is not None:
        raise ValueError("fast.adaptation_mse adapts all parameters (inner.only must be None)")
    lay, dtype = _layout(model), dtype_of(params)
    lr = inner.lr if lrs is None else _flat_rates(lay, lrs, dtype)
    return _curves(lay, lay.pack(params, dtype), lr, _stack(tasks, dtype), inner)


def fast_meta_objective(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop) -> float:
    """Mean meta-objective over ``tasks`` (evaluation; no gradient)."""
    lay, dtype = _layout(model), dtype_of(params)
    return float(_value(lay, lay.pack(params, dtype), inner.lr, _stack(tasks, dtype), inner).mean())
