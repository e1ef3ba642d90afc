"""The fast path's flat parameter layout and its stacked task data (used by :mod:`maml_sweep.fast`,
:mod:`maml_sweep.fast_tape` and :mod:`maml_sweep.fast_anil`).

All parameters live in one flat vector ``theta`` of size P, in ``model.names`` order. That order
makes layer k's weight and bias one contiguous block ``[W_k; b_k]`` of shape ``(d_{k-1} + 1, d_k)``
(``d_0`` = the input dimension, ``d_{L+1} = 1``), which multiplies activations augmented with a
column of ones. Stacked inputs are (T, N) for 1-D tasks and (T, N, dim) otherwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from autograd.tracer import getval

from .model import MLP, param_shapes
from .tasks import Task

# ----------------------------------------------------------------------------- layout


class _Layout:
    """Where each parameter and each layer block sits in the flat vector of an MLP."""

    def __init__(self, model: MLP):
        shapes = param_shapes(model.hidden, model.dim)
        self.names = list(shapes)
        self.shapes = shapes
        self.dims = (model.dim,) + model.hidden + (1,)
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
    key = (model.dim, model.hidden, model.activation)
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


def load_inputs(xa: np.ndarray, x: np.ndarray) -> None:
    """Copy stacked inputs x (T, N) or (T, N, dim) into the augmented buffer xa (T, N, dim + 1),
    whose last column holds the ones."""
    xa[..., :-1] = x.reshape(xa.shape[:-1] + (xa.shape[-1] - 1,))


def _stack(tasks: Sequence[Task], dtype=np.float64):
    """(x, y, xq, yq) stacked over tasks: (T, N) (or (T, N, dim)), (T, N), (T, M) (or (T, M, dim)),
    (T, M), in ``dtype``."""
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
