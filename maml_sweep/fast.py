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

The tape: rules every change must keep
--------------------------------------
The numpy calls of one meta-gradient are recorded once, as a list of (function, buffers), and
replayed on later calls with the same key (see :class:`_Tape`). A replay re-reads nothing but
the buffers' contents, so:

1. Buffers are allocated once per workspace and never rebound or reallocated: inputs are loaded
   into them in place (``buf[...] = value``), never by assigning a new array to the attribute.
2. Every Python value that a recording function reads, whether baked into a call as a constant
   (the loss scale, the mean's 1/N) or deciding which calls are recorded (K, the activation,
   first/second order, a vector lr, the d/d lr, a separate query set, the dtype, the shapes), is
   a field of :class:`TapeKey`, built in ONE place, :func:`tape_key`. Recording functions take
   their constants from the key, never from an ``InnerLoop`` or the data. Values that change
   between replays (the params, the tasks, the inner lr) live in buffers.
3. Results point into the workspace: copy (or reduce) them before returning; the next call
   overwrites them.
4. A recorded call must not depend on buffer contents at record time (recording only makes views).

``tests/test_fast.py::test_tape_not_reused_across_baked_in_constants`` changes each baked-in
constant for the same shapes and fails when a tape is reused. For debugging, ``MAML_SWEEP_FAST_EAGER=1``
(or :func:`eager`) runs each call as it is recorded and keeps no tape, so an error's traceback
points at the recording line rather than at :meth:`_Tape.run`.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import NamedTuple, Sequence

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp_argnum, primitive
from autograd.tracer import getval, isbox

from .maml import InnerLoop
from .model import MLP, param_shapes
from .tasks import Task

__all__ = ["supports", "fast_meta_value_and_grad", "fast_meta_value_and_grad_lrs", "adapted_mean",
           "fast_meta_objective", "meta_loss", "eager", "hessian_vector_product"]


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

    def pack(self, params: dict, dtype=np.float64) -> np.ndarray:
        """Flat vector (P,) of a parameter dict."""
        out = np.empty(self.size, dtype)
        for name in self.names:
            out[self.slices[name]] = np.asarray(params[name]).reshape(-1)
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


def dtype_of(params: dict) -> np.dtype:
    """The dtype the fast path runs in for ``params``: float32 if they all are, else float64."""
    f32 = all(getattr(getval(v), "dtype", None) == _F32 for v in params.values())
    return _F32 if f32 else _F64


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _stack(tasks: Sequence[Task], dtype=np.float64):
    """(x, y, xq, yq) stacked over tasks: (T, N), (T, N), (T, M), (T, M), in ``dtype``."""
    if len(tasks) == 0:
        raise ValueError("empty meta-batch")
    xs, ys, xqs, yqs = [], [], [], []
    for t in tasks:
        xq, yq = t.query
        xs.append(t.x), ys.append(t.y), xqs.append(xq), yqs.append(yq)
    if len(tasks) == 1:  # views, no copies
        x, y, xq, yq = (np.asarray(v[0], dtype=dtype)[None] for v in (xs, ys, xqs, yqs))
        return (x, y, x, y) if xqs[0] is xs[0] and yqs[0] is ys[0] else (x, y, xq, yq)
    try:
        x, y = (np.asarray(np.stack(v), dtype=dtype) for v in (xs, ys))
        if all(q is s for q, s in zip(xqs, xs)) and all(q is s for q, s in zip(yqs, ys)):
            return x, y, x, y  # query set = support set: identity lets the caller reuse work
        xq, yq = (np.asarray(np.stack(v), dtype=dtype) for v in (xqs, yqs))
    except ValueError as err:
        raise ValueError("fast path: tasks in one meta-batch need equal support sizes and "
                         "equal query sizes") from err
    return x, y, xq, yq


class TapeKey(NamedTuple):
    """Everything a tape and its workspace bake in (rule 2 of the module docstring). Built only by
    :func:`tape_key`; the workspace's buffers and the recorded calls are made from these fields."""

    hidden: tuple       # layer sizes: the layout of theta and every buffer's shape
    activation: str     # which calls the forward pass and the HVP record
    dtype: str          # every buffer's dtype
    T: int              # tasks in the chunk
    N: int              # support points per task
    M: int              # query points per task
    same_query: bool    # query set = support set: one buffer, one forward pass fewer
    steps: int          # K inner steps
    second: bool        # second-order terms (Hessian-vector products) recorded
    loss_scale: float   # the inner/query loss is loss_scale * mean((f - y)^2): baked into calls
    vector_lr: bool     # inner lr a (P,) vector (else a scalar)
    lr_grad: bool       # d/d lr recorded
    kind: str           # "value" (meta-objective), "grad" (and its gradient) or "curve" (query
                        # MSE after each inner step)

    @property
    def workspace(self) -> tuple:
        """The fields that size the workspace's buffers (its tapes are keyed by the whole key)."""
        return self[:9]


def tape_key(lay: "_Layout", data, inner: InnerLoop, lr, kind: str, lr_grad: bool = False) -> TapeKey:
    """THE key of a tape and of its workspace, for one chunk of stacked task ``data``; the one
    place that decides what a tape bakes in."""
    x, _, xq, _ = data
    T, N = x.shape
    second = kind == "grad" and not inner.first_order
    return TapeKey(lay.dims[1:-1], "relu" if lay.relu else "tanh", x.dtype.str, T, N, xq.shape[1],
                   xq is x, int(inner.steps), second, float(inner.loss_scale), bool(np.ndim(lr) > 0),
                   bool(lr_grad and kind == "grad"), kind)


class _Cache:
    """One forward/backward pass of the inner loss on T tasks of N points, k = layer 1..L+1:
    activations A[k] (T, N, d_k + 1) with a ones column (A[0]: the augmented input), their
    derivatives S[k] (T, N, d_k), errors D[k] = dl/dz_k (T, N, d_k), and contiguous copies
    WT[k] (T, d_k, d_{k-1}) of W_k^T for 2 <= k <= L (for T>1: a transposed matmul operand is
    ~1.7x slower). The output error D[L+1] (T, N, 1) sits between its tangent RO and a zero column
    in DR (T, N, 3), so that a K=2 matmul back-propagates both, or (T>1) it alone (outer products
    as K=1 matmuls or broadcasting are ~3x slower)."""

    __slots__ = ("A", "AT", "H", "S", "D", "WT", "DR", "RO", "DZ")

    def __init__(self, xa: np.ndarray, lay: _Layout):
        lead, dims, L, dt = xa.shape[:-1], lay.dims, len(lay.dims) - 2, xa.dtype
        self.A = [xa] + [np.ones(lead + (dims[k] + 1,), dt) for k in range(1, L + 1)]
        self.AT = [a.swapaxes(-1, -2) for a in self.A]
        self.H = [a[..., :-1] for a in self.A]
        self.S = [None] + [np.empty(lead + (dims[k],), dt) for k in range(1, L + 1)]
        self.D = [None] + [np.empty(lead + (dims[k],), dt) for k in range(1, L + 1)]
        self.DR = np.zeros(lead + (3,), dt)
        self.RO, self.DZ = self.DR[..., :1], self.DR[..., 1:]  # [RO | D], [D | 0]: (T, N, 2) views
        self.D.append(self.DR[..., 1:2])
        self.DR = self.DR[..., :2]
        self.WT = [None, None] + [np.empty((lead[0], dims[k], dims[k - 1]), dt) for k in range(2, L + 1)]


class _Workspace:
    """All buffers of one problem size (``key.workspace``), reused across calls: fresh large arrays
    would cost a page fault per 4 KiB on every call. T tasks, N support and M query points, K steps.
    ``tapes`` maps full :class:`TapeKey` s to the tapes recorded on these buffers."""

    def __init__(self, lay: _Layout, key: TapeKey):
        T, N, M, K, dt = key.T, key.N, key.M, key.steps, np.dtype(key.dtype)
        P, dims, L = lay.size, lay.dims, len(lay.dims) - 2

        def empty(*shape):
            return np.empty(shape, dt)

        self.xa = np.ones((T, N, 2), dt)
        self.xqa = self.xa if key.same_query else np.ones((T, M, 2), dt)
        self.caches = [_Cache(self.xa, lay) for _ in range(K if key.second else min(K, 1))]
        self.qcache = _Cache(self.xqa, lay)
        self.thetas, self.grads = empty(K, T, P), empty(K, T, P)
        self.theta_views = [lay.views(t) for t in self.thetas]
        self.theta0 = empty(1, P)  # (1, ...): a 2-D matmul operand is slower at T=1
        self.theta0_views = lay.views(self.theta0)
        self.y = empty(T, N)
        self.yq = self.y if key.same_query else empty(T, M)
        self.F, self.Fq = empty(T, N, 1), empty(T, M, 1)  # predictions, then residuals
        self.curve = np.empty((T, K + 1))  # plain query MSE after k = 0..K steps (kind "curve")
        self.lrs = {False: empty(), True: empty(P)}  # the inner lr: scalar / per parameter
        self.glrs = {False: empty(1), True: empty(P)}  # d/d lr, summed over tasks
        self.tapes = {}
        self.grad_blocks = [lay.blocks(g) for g in self.grads]
        self.a, self.v, self.hv, self.tmp = (empty(T, P) for _ in range(4))
        self.a_blocks = lay.blocks(self.a)
        self.v_views, self.hv_views = lay.views(self.v), lay.views(self.hv)
        # Scratch: pre-activations Z, tangents Y (T, N, d_k), k = 1..L+1; errors E, R (T, N, d_k),
        # tanh's Rh, k = 1..L (R: to L+1); VT like WT.
        self.Z = [None] + [empty(T, N, dims[k]) for k in range(1, L + 2)]
        self.Zq = self.Z if M == N else [None] + [empty(T, M, dims[k]) for k in range(1, L + 2)]
        self.Y = [None] + [empty(T, N, dims[k]) for k in range(1, L + 2)]
        self.E = [None] + [empty(T, N, dims[k]) for k in range(1, L + 1)]
        self.R = [None] + [empty(T, N, dims[k]) for k in range(1, L + 1)]
        self.WVo = empty(T, 2, dims[L])  # [w^T; v^T] of the output layer
        self.Wo = np.zeros((T, 2, dims[L]), dt)  # [w^T; 0]
        self.RH = [None] + [empty(T, N, dims[k]) for k in range(1, L + 1)]
        rh = self.Z[1:L + 1] if lay.relu else self.RH[1:]  # where the HVP puts Rh_k
        self.RHT = [None] + [r.swapaxes(-1, -2) for r in rh]
        # Weight-gradient terms Rh^T D of the HVP go to the W parts of mw (T, P), zero elsewhere,
        # so that one contiguous add folds them in (adds into (T, P)-strided views are ~3x slower).
        self.mw = np.zeros((T, P), dt)
        self.Mw = lay.views(self.mw).W
        self.VT = [None, None] + [empty(T, dims[k], dims[k - 1]) for k in range(2, L + 1)]


_WORKSPACES = threading.local()


def _workspace(lay: _Layout, key: TapeKey) -> _Workspace:
    """The calling thread's workspace for this key's problem size (a few sizes are kept)."""
    cache = getattr(_WORKSPACES, "d", None)
    if cache is None:
        cache = _WORKSPACES.d = {}
    ws = cache.get(key.workspace)
    if ws is None:
        if len(cache) >= 8:
            cache.clear()
        ws = cache[key.workspace] = _Workspace(lay, key)
    return ws


def clear_workspaces() -> None:
    """Drop this thread's workspaces and their tapes (tests; memory)."""
    _WORKSPACES.d = {}


# ----------------------------------------------------------------------------- one step
#
# The computation is recorded once per key as a tape: a list of numpy calls on the workspace's
# buffers (outputs passed positionally). Running it costs one Python loop iteration per numpy
# call, instead of re-deriving views, indices and branches on every call.

EAGER = os.environ.get("MAML_SWEEP_FAST_EAGER", "") not in ("", "0")


@contextmanager
def eager(on: bool = True):
    """Within ``with``: run every numpy call as it is recorded and keep no tape (debugging: a
    failing call's traceback then shows the recording line). Same numbers, slower."""
    global EAGER
    old, EAGER = EAGER, on
    try:
        yield
    finally:
        EAGER = old


class _Tape(list):
    """A fixed sequence of numpy calls ``fn(*args)``; record with ``tape(fn, *args)``. An eager
    tape runs each call at once instead of keeping it."""

    def __init__(self, eager: bool = False):
        super().__init__()
        self.eager = eager

    def __call__(self, fn, *args):
        if self.eager:
            fn(*args)
        else:
            self.append((fn, args))

    def run(self) -> None:
        for fn, args in self:
            fn(*args)

    def matmul(self, a, b, out) -> None:
        """Record ``out = a @ b`` for stacks (S, n, k) @ (S, k, m) -> (S, n, m). A stack of one
        goes through ``np.dot`` on the 2-D views: its call costs less than matmul's (~0.4 us of
        ~1.2 us for the thin products of the output layer, ~0.3 us of ~2 us for the input's)."""
        if _one(a) and _one(b) and _one(out) and out[0].flags.c_contiguous:
            self(_dot, a[0], b[0], out[0])
        else:
            self(np.matmul, a, b, out)


def _one(stack: np.ndarray) -> bool:
    """True for a stack of one (a leading axis of 1): :meth:`_Tape.matmul` then uses np.dot."""
    return stack.shape[0] == 1


_all = np.logical_and.reduce  # z.all() without its Python wrapper
# np.dot and np.copyto without their __array_function__ dispatch (~0.17 us a call, ~140 calls a step);
# the same C functions. Plain ndarrays only ever reach them here.
_dot = getattr(np.dot, "_implementation", np.dot)
_copyto = getattr(np.copyto, "_implementation", np.copyto)


def _relu_ties(z: np.ndarray, s: np.ndarray) -> None:
    """Exact ties z == 0: autograd's maximum gives derivative 0.5 there (s is 1.0 * (z > 0))."""
    if not _all(z, axis=None):
        s[z == 0.0] = 0.5


def _rec_forward(t: _Tape, key: TapeKey, P: _Views, c: _Cache, Z: list, F: np.ndarray) -> None:
    """Forward pass with params P (blocks (1 or T, d+1, d')): fills c.A, c.S via pre-activation
    scratch Z[k] (T, N, d_k); predictions into F (T, N, 1)."""
    A, S, Hs, B = c.A, c.S, c.H, P.B
    L = len(B) - 1
    for k in range(1, L + 1):
        t.matmul(A[k - 1], B[k - 1], Z[k])
        if key.activation == "relu":
            t(np.greater, Z[k], 0.0, S[k])
            t(_relu_ties, Z[k], S[k])
            t(np.multiply, Z[k], S[k], Hs[k])  # = max(z, 0) (-0.0 for z < 0), faster than maximum
        else:
            t(np.tanh, Z[k], Hs[k])
            t(np.square, Hs[k], S[k])
            t(np.subtract, 1.0, S[k], S[k])
    t.matmul(A[L], B[L], F)


def _rec_backward(t: _Tape, P: _Views, c: _Cache, G: list, Wo: np.ndarray) -> None:
    """Back-propagate c.D[L+1] = dl/df (T, N, 1): fills c.D[1..L], c.WT and the gradient blocks G
    (Wo: (T, 2, d_L) scratch with a zero second row)."""
    AT, S, D, Wt = c.AT, c.S, c.D, P.Wt
    L = len(G) - 1
    for k in range(L + 1, 0, -1):
        t.matmul(AT[k - 1], D[k], G[k - 1])
        if k == 1:
            break
        if _one(D[k]):  # np.dot takes W^T as it is and a K=1 product at full speed
            t.matmul(D[k], Wt[k - 1], D[k - 1])
        elif k == L + 1:  # the outer product D w^T as [D | 0] @ [w^T; 0]
            t(_copyto, Wo[:, :1], Wt[k - 1])
            t.matmul(c.DZ, Wo, D[k - 1])
        else:
            t(_copyto, c.WT[k], Wt[k - 1])
            t.matmul(D[k], c.WT[k], D[k - 1])
        t(np.multiply, D[k - 1], S[k - 1], D[k - 1])


def _rec_loss_grad(t, key, P, c, Z, F, y, G, Wo) -> None:
    """Gradient of ``key.loss_scale * mean((f - y)^2)`` into blocks G; leaves the residuals f - y
    in F."""
    _rec_forward(t, key, P, c, Z, F)
    f = F[..., 0]
    t(np.subtract, f, y, f)
    t(np.multiply, f, 2.0 * key.loss_scale / f.shape[-1], c.D[-1][..., 0])
    _rec_backward(t, P, c, G, Wo)


def _rec_hvp(t, key, P, c, V, ws) -> None:
    """Hessian-vector product of the inner loss at the cached step with params P, for the view V
    of the per-task vectors ws.v (T, P): ws.hv = Hess(l) V.

    Pearlmutter's (1994) R-operator, forward-over-reverse: tangents of the forward pass
    (Rz, Rh) in direction V, then of the backward pass, reusing c's activations and errors."""
    A, AT, S, D, H = c.A, c.AT, c.S, c.D, ws.hv_views
    Z, Y, E = ws.Z, ws.Y, ws.E
    R = ws.R + [c.RO]  # R[k] = R(dl/dz_k), k = 1..L+1
    L = len(P.B) - 1
    relu = key.activation == "relu"
    t.matmul(A[0], V.B[0], Z[1])
    for k in range(1, L + 1):  # Z[k] = Rz_k, rh = Rh_k
        rh = Z[k] if relu else ws.RH[k]
        t(np.multiply, Z[k], S[k], rh)
        t.matmul(rh, P.W[k], Z[k + 1])
        t.matmul(A[k], V.B[k], Y[k + 1])
        t(np.add, Z[k + 1], Y[k + 1], Z[k + 1])
    t(np.multiply, Z[L + 1], 2.0 * key.loss_scale / Z[L + 1].shape[-2], R[L + 1])  # R(dl/df)
    for k in range(L + 1, 0, -1):
        t.matmul(AT[k - 1], R[k], H.B[k - 1])
        if k == 1:
            break
        t.matmul(ws.RHT[k - 1], D[k], ws.Mw[k - 1])
        e, y = E[k - 1], Y[k - 1]  # e = R(dl/dh_{k-1})
        if k == L + 1:  # [R | D] @ [w^T; v^T], K = 2
            t(_copyto, ws.WVo[:, :1], P.Wt[L])
            t(_copyto, ws.WVo[:, 1:], V.Wt[L])
            t.matmul(c.DR, ws.WVo, e)
        elif _one(D[k]):  # np.dot takes W^T and V^T as they are
            t.matmul(R[k], P.Wt[k - 1], e)
            t.matmul(D[k], V.Wt[k - 1], y)
            t(np.add, e, y, e)
        else:
            t(_copyto, ws.VT[k], V.Wt[k - 1])
            t.matmul(R[k], c.WT[k], e)
            t.matmul(D[k], ws.VT[k], y)
            t(np.add, e, y, e)
        t(np.multiply, e, S[k - 1], R[k - 1])
        if not relu:  # tanh'' = -2 h tanh': add -2 h * dl/dz * Rz
            t(np.multiply, c.H[k - 1], D[k - 1], y)
            t(np.multiply, y, Z[k - 1], y)
            t(np.multiply, y, 2.0, y)
            t(np.subtract, R[k - 1], y, R[k - 1])
    t(np.add, ws.hv, ws.mw, ws.hv)


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
            _rec_forward(t, key, B[j], ws.qcache, ws.Zq, ws.Fq)
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
    ws.xa[..., 0] = x
    ws.y[...] = y
    if not key.same_query:
        ws.xqa[..., 0] = xq
        ws.yq[...] = yq
    ws.theta0[0] = theta
    ws.lrs[key.vector_lr][...] = lr
    if EAGER:
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
    per_task = itemsize * (N + M) * (2 + 3 * sum(lay.dims[1:-1]))
    return max(1, CHUNK_BYTES // per_task)


def _chunks(lay, data) -> list:
    """Split stacked task data into chunks of tasks (each a tuple like ``data``)."""
    x, _, xq, _ = data
    T, N = x.shape
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
    ws.xa[..., 0], ws.y[...], ws.theta0[0] = x, y, lay.pack(params, dtype)
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
