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

Speed. Per outer step the cost is ~48 small gemms plus ~100 elementwise passes and ~250 numpy
calls, so: buffers are reused across calls (per problem size and thread), weights are copied
transposed once per step, elementwise work runs on contiguous arrays, and big meta-batches go
through in L2-sized chunks of tasks (see ``CHUNK_BYTES``).
"""
from __future__ import annotations

import threading
from functools import partial
from typing import Sequence

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp_argnum, primitive
from autograd.tracer import getval, isbox

from .maml import InnerLoop
from .model import MLP, param_shapes
from .tasks import Task

__all__ = ["supports", "fast_meta_value_and_grad", "fast_meta_objective", "meta_loss"]


# ----------------------------------------------------------------------------- layout


class _Layout:
    """Where each parameter and each layer block sits in the flat vector of an MLP."""

    def __init__(self, model: MLP):
        shapes = param_shapes(model.hidden)
        self.names = list(shapes)
        self.shapes = shapes
        self.dims = (1,) + model.hidden + (1,)
        self.relu = model.activation == "relu"
        self.slices, off = {}, 0
        for name, shape in shapes.items():
            n = int(np.prod(shape, dtype=int))
            self.slices[name] = slice(off, off + n)
            off += n
        self.size = off
        self.block_shapes, self.block_slices, off = [], [], 0
        for k in range(1, len(self.dims)):
            shape = (self.dims[k - 1] + 1, self.dims[k])
            self.block_shapes.append(shape)
            self.block_slices.append(slice(off, off + shape[0] * shape[1]))
            off += shape[0] * shape[1]
        assert off == self.size

    def blocks(self, flat: np.ndarray) -> list[np.ndarray]:
        """Views of ``flat`` (..., P) as layer blocks (..., d_{k-1} + 1, d_k), k = 1..L+1."""
        lead = flat.shape[:-1]
        out = []
        for sl, shape in zip(self.block_slices, self.block_shapes):
            view = flat[..., sl].view()
            view.shape = lead + shape  # raises instead of silently copying
            out.append(view)
        return out

    def views(self, flat: np.ndarray) -> "_Views":
        """Blocks of ``flat`` with their weight parts and transposes, made once per buffer."""
        return _Views(self.blocks(flat))

    def pack(self, params: dict) -> np.ndarray:
        """Flat vector (P,) of a parameter dict."""
        out = np.empty(self.size)
        for name in self.names:
            out[self.slices[name]] = np.reshape(params[name], -1)
        return out

    def unpack(self, flat: np.ndarray) -> dict:
        """Parameter dict of views into a flat vector (P,); scalars as 0-d arrays (like autograd)."""
        return {name: flat[self.slices[name]].reshape(self.shapes[name]) for name in self.names}


class _Views:
    """Views of a flat parameter vector: blocks B[k-1] (..., d_{k-1} + 1, d_k) for k = 1..L+1,
    their weight rows W[k-1] (..., d_{k-1}, d_k) and the transposes Wt[k-1]."""

    __slots__ = ("B", "W", "Wt")

    def __init__(self, blocks: list):
        self.B = blocks
        self.W = [b[..., :-1, :] for b in blocks]
        self.Wt = [w.swapaxes(-1, -2) for w in self.W]


_LAYOUTS: dict = {}


def _layout(model: MLP) -> _Layout:
    key = (model.hidden, model.activation)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _Layout(model)
    return _LAYOUTS[key]


def supports(model) -> bool:
    """True if the fast path handles ``model`` (an :class:`MLP` with relu or tanh)."""
    return isinstance(model, MLP) and model.activation in ("relu", "tanh") and len(model.hidden) >= 1


# ----------------------------------------------------------------------------- data


def _stack(tasks: Sequence[Task]):
    """(x, y, xq, yq) stacked over tasks: (T, N), (T, N), (T, M), (T, M), float64."""
    if len(tasks) == 0:
        raise ValueError("empty meta-batch")
    xs, ys, xqs, yqs = [], [], [], []
    for t in tasks:
        xq, yq = t.query
        xs.append(t.x), ys.append(t.y), xqs.append(xq), yqs.append(yq)
    if len(tasks) == 1:  # views, no copies
        x, y, xq, yq = (np.asarray(v[0], dtype=float)[None] for v in (xs, ys, xqs, yqs))
        return (x, y, x, y) if xqs[0] is xs[0] and yqs[0] is ys[0] else (x, y, xq, yq)
    try:
        x, y = (np.asarray(np.stack(v), dtype=float) for v in (xs, ys))
        if all(q is s for q, s in zip(xqs, xs)) and all(q is s for q, s in zip(yqs, ys)):
            return x, y, x, y  # query set = support set: identity lets the caller reuse work
        xq, yq = (np.asarray(np.stack(v), dtype=float) for v in (xqs, yqs))
    except ValueError as err:
        raise ValueError("fast path: tasks in one meta-batch need equal support sizes and "
                         "equal query sizes") from err
    return x, y, xq, yq


class _Cache:
    """One forward/backward pass of the inner loss on T tasks of N points, k = layer 1..L+1:
    activations A[k] (T, N, d_k + 1) with a ones column (A[0]: the augmented input), their
    derivatives S[k] (T, N, d_k), errors D[k] = dl/dz_k (T, N, d_k), and contiguous copies
    WT[k] (T, d_k, d_{k-1}) of W_k^T for 2 <= k <= L (a transposed gemm operand is ~1.7x slower).
    The output error D[L+1] (T, N, 1) sits between its tangent RO and a zero column in
    DR (T, N, 3), so that a K=2 matmul back-propagates both, or it alone (outer products as K=1
    matmuls or broadcasting are ~3x slower)."""

    __slots__ = ("A", "AT", "H", "S", "D", "WT", "DR", "RO", "DZ")

    def __init__(self, xa: np.ndarray, lay: _Layout):
        lead, dims, L = xa.shape[:-1], lay.dims, len(lay.dims) - 2
        self.A = [xa] + [np.ones(lead + (dims[k] + 1,)) for k in range(1, L + 1)]
        self.AT = [a.swapaxes(-1, -2) for a in self.A]
        self.H = [a[..., :-1] for a in self.A]
        self.S = [None] + [np.empty(lead + (dims[k],)) for k in range(1, L + 1)]
        self.D = [None] + [np.empty(lead + (dims[k],)) for k in range(1, L + 1)]
        self.DR = np.zeros(lead + (3,))
        self.RO, self.DZ = self.DR[..., :1], self.DR[..., 1:]  # [RO | D], [D | 0]: (T, N, 2) views
        self.D.append(self.DR[..., 1:2])
        self.DR = self.DR[..., :2]
        self.WT = [None, None] + [np.empty((lead[0], dims[k], dims[k - 1])) for k in range(2, L + 1)]


class _Workspace:
    """All buffers of one problem size, reused across calls: fresh large arrays would cost a
    page fault per 4 KiB on every call. T tasks, N support and M query points, K inner steps."""

    def __init__(self, lay: _Layout, T: int, N: int, M: int, K: int, second: bool, same_query: bool):
        P, dims, L = lay.size, lay.dims, len(lay.dims) - 2
        self.xa = np.ones((T, N, 2))
        self.xqa = self.xa if same_query else np.ones((T, M, 2))
        self.caches = [_Cache(self.xa, lay) for _ in range(K if second else min(K, 1))]
        self.qcache = _Cache(self.xqa, lay)
        self.thetas, self.grads = np.empty((K, T, P)), np.empty((K, T, P))
        self.theta_views = [lay.views(t) for t in self.thetas]
        self.theta0 = np.empty((1, P))  # (1, ...): a 2-D matmul operand is slower at T=1
        self.theta0_views = lay.views(self.theta0)
        self.y = np.empty((T, N))
        self.yq = self.y if same_query else np.empty((T, M))
        self.F, self.Fq = np.empty((T, N, 1)), np.empty((T, M, 1))  # predictions, then residuals
        self.lrs = {0: np.empty(()), 1: np.empty(P)}  # scalar / per-parameter inner lr
        self.glr = {0: np.empty(1), 1: np.empty(P)}
        self.tapes = {}
        self.grad_blocks = [lay.blocks(g) for g in self.grads]
        self.a, self.v, self.hv, self.tmp = (np.empty((T, P)) for _ in range(4))
        self.a_blocks = lay.blocks(self.a)
        self.v_views, self.hv_views = lay.views(self.v), lay.views(self.hv)
        # Scratch: pre-activations Z, tangents Y (T, N, d_k), k = 1..L+1; errors E, R (T, N, d_k),
        # tanh's Rh, k = 1..L (R: to L+1); VT like WT.
        self.Z = [None] + [np.empty((T, N, dims[k])) for k in range(1, L + 2)]
        self.Zq = self.Z if M == N else [None] + [np.empty((T, M, dims[k])) for k in range(1, L + 2)]
        self.Y = [None] + [np.empty((T, N, dims[k])) for k in range(1, L + 2)]
        self.E = [None] + [np.empty((T, N, dims[k])) for k in range(1, L + 1)]
        self.R = [None] + [np.empty((T, N, dims[k])) for k in range(1, L + 1)]
        self.WVo = np.empty((T, 2, dims[L]))  # [w^T; v^T] of the output layer
        self.Wo = np.zeros((T, 2, dims[L]))  # [w^T; 0]
        self.RH = [None] + [np.empty((T, N, dims[k])) for k in range(1, L + 1)]
        rh = self.Z[1:L + 1] if lay.relu else self.RH[1:]  # where the HVP puts Rh_k
        self.RHT = [None] + [r.swapaxes(-1, -2) for r in rh]
        # Weight-gradient terms Rh^T D of the HVP go to the W parts of mw (T, P), zero elsewhere,
        # so that one contiguous add folds them in (adds into (T, P)-strided views are ~3x slower).
        self.mw = np.zeros((T, P))
        self.Mw = lay.views(self.mw).W
        self.VT = [None, None] + [np.empty((T, dims[k], dims[k - 1])) for k in range(2, L + 1)]


_WORKSPACES = threading.local()


def _workspace(lay, T, N, M, K, second, same_query) -> _Workspace:
    """The calling thread's workspace for this problem size (a few sizes are kept)."""
    cache = getattr(_WORKSPACES, "d", None)
    if cache is None:
        cache = _WORKSPACES.d = {}
    key = (id(lay), T, N, M, K, second, same_query)
    ws = cache.get(key)
    if ws is None:
        if len(cache) >= 8:
            cache.clear()
        ws = cache[key] = _Workspace(lay, T, N, M, K, second, same_query)
    return ws


# ----------------------------------------------------------------------------- one step
#
# The computation is recorded once per workspace as a tape: a list of numpy calls on the
# workspace's buffers (outputs passed positionally). Running it costs one Python loop iteration
# per numpy call, instead of re-deriving views, indices and branches on every call.


class _Tape(list):
    """A fixed sequence of numpy calls ``fn(*args)``; record with ``tape(fn, *args)``."""

    def __call__(self, fn, *args):
        self.append((fn, args))

    def run(self) -> None:
        for fn, args in self:
            fn(*args)


_all = np.logical_and.reduce  # z.all() without its Python wrapper


def _relu_ties(z: np.ndarray, s: np.ndarray) -> None:
    """Exact ties z == 0: autograd's maximum gives derivative 0.5 there (s is 1.0 * (z > 0))."""
    if not _all(z, axis=None):
        s[z == 0.0] = 0.5


def _rec_forward(t: _Tape, lay: _Layout, P: _Views, c: _Cache, Z: list, F: np.ndarray) -> None:
    """Forward pass with params P (blocks (1 or T, d+1, d')): fills c.A, c.S via pre-activation
    scratch Z[k] (T, N, d_k); predictions into F (T, N, 1)."""
    A, S, Hs, B = c.A, c.S, c.H, P.B
    L = len(B) - 1
    for k in range(1, L + 1):
        t(np.matmul, A[k - 1], B[k - 1], Z[k])
        if lay.relu:
            t(np.greater, Z[k], 0.0, S[k])
            t(_relu_ties, Z[k], S[k])
            t(partial(np.maximum, out=Hs[k]), Z[k], 0.0)  # positional out is deprecated here
        else:
            t(np.tanh, Z[k], Hs[k])
            t(np.square, Hs[k], S[k])
            t(np.subtract, 1.0, S[k], S[k])
    t(np.matmul, A[L], B[L], F)


def _rec_backward(t: _Tape, P: _Views, c: _Cache, G: list, Wo: np.ndarray) -> None:
    """Back-propagate c.D[L+1] = dl/df (T, N, 1): fills c.D[1..L], c.WT and the gradient blocks G
    (Wo: (T, 2, d_L) scratch with a zero second row)."""
    AT, S, D, Wt = c.AT, c.S, c.D, P.Wt
    L = len(G) - 1
    for k in range(L + 1, 0, -1):
        t(np.matmul, AT[k - 1], D[k], G[k - 1])
        if k == 1:
            break
        if k == L + 1:  # the outer product D w^T as [D | 0] @ [w^T; 0]
            t(np.copyto, Wo[:, :1], Wt[k - 1])
            t(np.matmul, c.DZ, Wo, D[k - 1])
        else:
            t(np.copyto, c.WT[k], Wt[k - 1])
            t(np.matmul, D[k], c.WT[k], D[k - 1])
        t(np.multiply, D[k - 1], S[k - 1], D[k - 1])


def _rec_loss_grad(t, lay, P, c, Z, F, y, scale, G, Wo) -> None:
    """Gradient of ``scale * mean((f - y)^2)`` into blocks G; leaves the residuals f - y in F."""
    _rec_forward(t, lay, P, c, Z, F)
    f = F[..., 0]
    t(np.subtract, f, y, f)
    t(np.multiply, f, 2.0 * scale / f.shape[-1], c.D[-1][..., 0])
    _rec_backward(t, P, c, G, Wo)


def _rec_hvp(t, lay, P, c, V, H, scale, ws) -> None:
    """Hessian-vector product of the inner loss at the cached step with params P: H = Hess(l) V,
    for views V, H of per-task (T, P) vectors.

    Forward-over-reverse: tangents of the forward pass (Rz, Rh) in direction V, then of the
    backward pass, reusing c's activations and errors."""
    A, AT, S, D = c.A, c.AT, c.S, c.D
    Z, Y, E = ws.Z, ws.Y, ws.E
    R = ws.R + [c.RO]  # R[k] = R(dl/dz_k), k = 1..L+1
    L = len(P.B) - 1
    relu = lay.relu
    t(np.matmul, A[0], V.B[0], Z[1])
    for k in range(1, L + 1):  # Z[k] = Rz_k, rh = Rh_k
        rh = Z[k] if relu else ws.RH[k]
        t(np.multiply, Z[k], S[k], rh)
        t(np.matmul, rh, P.W[k], Z[k + 1])
        t(np.matmul, A[k], V.B[k], Y[k + 1])
        t(np.add, Z[k + 1], Y[k + 1], Z[k + 1])
    t(np.multiply, Z[L + 1], 2.0 * scale / Z[L + 1].shape[-2], R[L + 1])  # R(dl/df)
    for k in range(L + 1, 0, -1):
        t(np.matmul, AT[k - 1], R[k], H.B[k - 1])
        if k == 1:
            break
        t(np.matmul, ws.RHT[k - 1], D[k], ws.Mw[k - 1])
        e, y = E[k - 1], Y[k - 1]  # e = R(dl/dh_{k-1})
        if k == L + 1:  # [R | D] @ [w^T; v^T], K = 2
            t(np.copyto, ws.WVo[:, :1], P.Wt[L])
            t(np.copyto, ws.WVo[:, 1:], V.Wt[L])
            t(np.matmul, c.DR, ws.WVo, e)
        else:
            t(np.copyto, ws.VT[k], V.Wt[k - 1])
            t(np.matmul, R[k], c.WT[k], e)
            t(np.matmul, D[k], ws.VT[k], y)
            t(np.add, e, y, e)
        t(np.multiply, e, S[k - 1], R[k - 1])
        if not relu:  # tanh'' = -2 h tanh': add -2 h * dl/dz * Rz
            t(np.multiply, c.H[k - 1], D[k - 1], y)
            t(np.multiply, y, Z[k - 1], y)
            t(np.multiply, y, 2.0, y)
            t(np.subtract, R[k - 1], y, R[k - 1])
    t(np.add, ws.hv, ws.mw, ws.hv)  # H is ws.hv_views


# ----------------------------------------------------------------------------- whole loop


def _rec_inner_loop(t, lay, ws, lr, K, scale, keep: bool) -> list:
    """Record the inner loop from ws.theta0; returns the views of theta_0..theta_K. With ``keep``,
    step j's activations stay in ws.caches[j] (for the Hessian-vector products)."""
    B, prev = [ws.theta0_views], ws.theta0
    for j in range(K):
        _rec_loss_grad(t, lay, B[j], ws.caches[j if keep else 0], ws.Z, ws.F, ws.y, scale,
                       ws.grad_blocks[j], ws.Wo)
        t(np.multiply, ws.grads[j], lr, ws.tmp)
        t(np.subtract, prev, ws.tmp, ws.thetas[j])
        prev = ws.thetas[j]
        B.append(ws.theta_views[j])
    return B


def _lr_grad_scalar(a, g, out):
    out[0] -= np.vdot(a, g)


def _lr_grad_vector(a, g, out):
    out -= np.einsum("tp,tp->p", a, g)


def _value_tape(lay, ws, K, scale, vector_lr: bool) -> _Tape:
    """Tape for the meta-objective: residuals at the adapted params in ws.Fq."""
    t = _Tape()
    B = _rec_inner_loop(t, lay, ws, ws.lrs[vector_lr], K, scale, False)
    _rec_forward(t, lay, B[K], ws.qcache, ws.Zq, ws.Fq)
    t(np.subtract, ws.Fq[..., 0], ws.yq, ws.Fq[..., 0])
    return t


def _grad_tape(lay, ws, K, scale, second: bool, vector_lr: bool, lr_grad: bool) -> _Tape:
    """Tape for the meta-objective (residuals in ws.Fq), the per-task meta-gradients (ws.a)
    and, with ``lr_grad``, the summed d/d lr (ws.glr[vector_lr])."""
    t = _Tape()
    lr, glr = ws.lrs[vector_lr], ws.glr[vector_lr]
    B = _rec_inner_loop(t, lay, ws, lr, K, scale, second)
    _rec_loss_grad(t, lay, B[K], ws.qcache, ws.Zq, ws.Fq, ws.yq, scale, ws.a_blocks, ws.Wo)
    t(np.copyto, glr, 0.0)
    for j in range(K - 1, -1, -1):
        if lr_grad:
            t(_lr_grad_vector if vector_lr else _lr_grad_scalar, ws.a, ws.grads[j], glr)
        if second:
            t(np.multiply, ws.a, lr, ws.v)
            _rec_hvp(t, lay, B[j], ws.caches[j], ws.v_views, ws.hv_views, scale, ws)
            t(np.subtract, ws.a, ws.hv, ws.a)
    return t


def _prepare(lay, theta, lr, data, inner, second):
    """The workspace for this chunk, loaded with its data, theta (P,) and lr."""
    x, y, xq, yq = data
    T, N = x.shape
    ws = _workspace(lay, T, N, xq.shape[1], inner.steps, second, xq is x)
    ws.xa[..., 0] = x
    ws.y[...] = y
    if xq is not x:
        ws.xqa[..., 0] = xq
        ws.yq[...] = yq
    ws.theta0[0] = theta
    ws.lrs[np.ndim(lr) > 0][...] = lr
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


def _chunks(lay, data) -> list:
    """Split stacked task data into chunks of tasks (each a tuple like ``data``)."""
    x, _, xq, _ = data
    T, N = x.shape
    per_task = 8 * (N + xq.shape[1]) * (2 + 3 * sum(lay.dims[1:-1]))
    size = max(1, min(T, CHUNK_BYTES // per_task))
    if size >= T:
        return [data]
    out = []
    for i in range(0, T, size):
        x_, y_ = data[0][i:i + size], data[1][i:i + size]
        out.append((x_, y_, x_, y_) if xq is x else (x_, y_, data[2][i:i + size], data[3][i:i + size]))
    return out


def _value(lay, theta, lr, data, inner) -> np.ndarray:
    """Meta-objective per task (T,) at flat params theta (P,), no gradient."""
    out = []
    for part in _chunks(lay, data):
        ws = _prepare(lay, theta, lr, part, inner, False)
        key = ("value", inner.loss_scale, np.ndim(lr) > 0)
        if key not in ws.tapes:
            ws.tapes[key] = _value_tape(lay, ws, inner.steps, inner.loss_scale, key[2])
        ws.tapes[key].run()
        out.append(_query_losses(ws, inner.loss_scale))
    return np.concatenate(out)


def _value_and_grads(lay, theta, lr, data, inner, lr_grad: bool = True):
    """(mean meta-objective, d/d theta (P,), d/d lr (shape of lr; 0 without ``lr_grad``)) for
    flat theta (P,)."""
    second, vector_lr = not inner.first_order, np.ndim(lr) > 0
    value, g, glr = 0.0, 0.0, 0.0
    for part in _chunks(lay, data):
        ws = _prepare(lay, theta, lr, part, inner, second)
        key = ("grad", inner.loss_scale, vector_lr, lr_grad)
        if key not in ws.tapes:
            ws.tapes[key] = _grad_tape(lay, ws, inner.steps, inner.loss_scale, second, vector_lr,
                                       lr_grad)
        ws.tapes[key].run()
        value = value + _query_losses(ws, inner.loss_scale).sum()
        g = g + ws.a.sum(axis=0)
        glr = glr + (ws.glr[1] if vector_lr else ws.glr[0][0])
    T = data[0].shape[0]
    glr = glr / T
    return float(value / T), g / T, glr if vector_lr else float(glr)


# ----------------------------------------------------------------------------- autograd


_STASH = threading.local()


@primitive
def _meta_loss_prim(lr, ctx, *arrays):
    """Mean meta-objective at parameter arrays ``arrays`` (in ``ctx[0].names`` order) with inner
    lr (scalar or (P,)); ``ctx`` = (layout, stacked task data, InnerLoop).

    Computes the gradients as well and stashes them for the VJPs, which autograd builds right
    after this call, so a gradient costs one pass."""
    lay, data, inner = ctx
    value, g_theta, g_lr = _value_and_grads(lay, lay.pack(dict(zip(lay.names, arrays))), lr, data, inner)
    _STASH.last = (value, lay.unpack(g_theta), g_lr)
    return value


def _stashed(ans, lr, ctx, arrays):
    last = getattr(_STASH, "last", None)
    if last is None or last[0] is not ans:  # not built right after its forward: recompute
        lay, data, inner = ctx
        _, g_theta, g_lr = _value_and_grads(lay, lay.pack(dict(zip(lay.names, arrays))), lr, data, inner)
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
    ctx = (lay, _stack(tasks), inner)
    if not (isbox(lr) or any(isbox(a) for a in arrays)):
        return float(_value(lay, lay.pack(params), lr, ctx[1], inner).mean())
    return _meta_loss_prim(lr, ctx, *arrays)


# ----------------------------------------------------------------------------- public API


def fast_meta_value_and_grad(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop):
    """(mean meta-objective, gradient dict like params): the numbers of
    ``maml.meta_value_and_grad(model.predict, params, tasks, inner)``, in one batched pass."""
    lay = _layout(model)
    value, g, _ = _value_and_grads(lay, lay.pack(params), inner.lr, _stack(tasks), inner, lr_grad=False)
    return value, lay.unpack(g)


def fast_meta_objective(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop) -> float:
    """Mean meta-objective over ``tasks`` (evaluation; no gradient)."""
    lay = _layout(model)
    return float(_value(lay, lay.pack(params), inner.lr, _stack(tasks), inner).mean())
