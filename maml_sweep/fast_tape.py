"""The fast path's tape: its key, its buffers (workspaces) and the recorded numpy kernels of one
forward pass, one backward pass and one Hessian-vector product (see :mod:`maml_sweep.fast` for
the algorithm that strings them together).

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
from typing import NamedTuple

import numpy as np

from .fast_layout import _Layout, _Views
from .maml import InnerLoop


class TapeKey(NamedTuple):
    """Everything a tape and its workspace bake in (rule 2 of the module docstring). Built only by
    :func:`tape_key`; the workspace's buffers and the recorded calls are made from these fields."""

    hidden: tuple       # layer sizes: the layout of theta and every buffer's shape
    dim: int            # input dimension: the input layer's block and the input buffers
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
        return self[:10]


def tape_key(lay: "_Layout", data, inner: InnerLoop, lr, kind: str, lr_grad: bool = False) -> TapeKey:
    """THE key of a tape and of its workspace, for one chunk of stacked task ``data``; the one
    place that decides what a tape bakes in."""
    x, _, xq, _ = data
    T, N = x.shape[:2]
    second = kind == "grad" and not inner.first_order
    return TapeKey(lay.dims[1:-1], lay.dims[0], "relu" if lay.relu else "tanh", x.dtype.str, T, N, xq.shape[1],
                   xq is x, int(inner.steps), second, float(inner.loss_scale), bool(np.ndim(lr) > 0),
                   bool(lr_grad and kind == "grad"), kind)


def _buffer(shape: tuple, dtype) -> np.ndarray:
    """A workspace buffer, uninitialised: every recorded call writes a buffer before any call reads it
    (``tests/test_fast.py::test_no_buffer_is_read_before_it_is_written`` fills them with NaN)."""
    return np.empty(shape, dtype)


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
        self.S = [None] + [_buffer(lead + (dims[k],), dt) for k in range(1, L + 1)]
        self.D = [None] + [_buffer(lead + (dims[k],), dt) for k in range(1, L + 1)]
        self.DR = np.zeros(lead + (3,), dt)
        self.RO, self.DZ = self.DR[..., :1], self.DR[..., 1:]  # [RO | D], [D | 0]: (T, N, 2) views
        self.D.append(self.DR[..., 1:2])
        self.DR = self.DR[..., :2]
        self.WT = [None, None] + [_buffer((lead[0], dims[k], dims[k - 1]), dt) for k in range(2, L + 1)]


class _Workspace:
    """All buffers of one problem size (``key.workspace``), reused across calls: fresh large arrays
    would cost a page fault per 4 KiB on every call. T tasks, N support and M query points, K steps.
    ``tapes`` maps full :class:`TapeKey` s to the tapes recorded on these buffers."""

    def __init__(self, lay: _Layout, key: TapeKey):
        T, N, M, K, dt = key.T, key.N, key.M, key.steps, np.dtype(key.dtype)
        P, dims, L = lay.size, lay.dims, len(lay.dims) - 2

        def empty(*shape):
            return _buffer(shape, dt)

        self.xa = np.ones((T, N, dims[0] + 1), dt)  # inputs with a ones column
        self.xqa = self.xa if key.same_query else np.ones((T, M, dims[0] + 1), dt)
        self.caches = [_Cache(self.xa, lay) for _ in range(K if key.second else min(K, 1))]
        self.qcache = _Cache(self.xqa, lay)
        self.thetas, self.grads = empty(K, T, P), empty(K, T, P)
        self.theta_views = [lay.views(t) for t in self.thetas]
        self.theta0 = empty(1, P)  # (1, ...): a 2-D matmul operand is slower at T=1
        self.theta0_views = lay.views(self.theta0)
        self.y = empty(T, N)
        self.yq = self.y if key.same_query else empty(T, M)
        self.F, self.Fq = empty(T, N, 1), empty(T, M, 1)  # predictions, then residuals
        self.curve = _buffer((T, K + 1), np.float64)  # plain query MSE after k = 0..K steps (kind "curve")
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


def _relu_into(z: np.ndarray, h: np.ndarray) -> None:
    """h = max(z, 0): a forward pass without derivatives (no back-propagation through it)."""
    np.maximum(z, 0.0, out=h)


def _rec_forward(t: _Tape, key: TapeKey, P: _Views, c: _Cache, Z: list, F: np.ndarray,
                 derivatives: bool = True) -> None:
    """Forward pass with params P (blocks (1 or T, d+1, d')): fills c.A, c.S via pre-activation
    scratch Z[k] (T, N, d_k); predictions into F (T, N, 1). Without ``derivatives`` (a forward
    that nothing back-propagates through) c.S is left alone: one call per layer instead of three."""
    A, S, Hs, B = c.A, c.S, c.H, P.B
    L = len(B) - 1
    for k in range(1, L + 1):
        t.matmul(A[k - 1], B[k - 1], Z[k])
        if not derivatives and key.activation == "relu":
            t(_relu_into, Z[k], Hs[k])
        elif not derivatives:
            t(np.tanh, Z[k], Hs[k])
        elif key.activation == "relu":
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
