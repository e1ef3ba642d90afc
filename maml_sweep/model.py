"""An MLP from ``dim``-dimensional inputs to a scalar output, as pure functions of a parameter dict.

Parameter names follow the notebook. For hidden sizes ``(h1, ..., hL)``:

- ``W1`` (dim, h1), ``b1`` (h1,): the input layer;
- ``Wk`` (h_{k-1}, h_k), ``bk`` (h_k,) for k = 2..L: hidden layer k;
- ``w{L+1}`` (h_L,), ``b{L+1}`` (): the linear output layer.

Two hidden layers give exactly the notebook's ``W1, b1, W2, b2, w3, b3``, drawn in that order
(dim 1: W1 is (1, h1), the notebook's draws in the same order). Inputs are (N,) for dim 1 or
(N, dim). Params saved before inputs had a dimension (W1 of shape (h1,)) are read as (1, h1).
Parameters are drawn in float64 and stored in the model's ``dtype`` (float64 or float32), so a
float32 model starts from the float64 model's init rounded, and the random streams stay the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np

DTYPES = ("float64", "float32")  # floating-point types a run can train in (train.dtype)

ACTIVATIONS = {
    "relu": lambda z: anp.maximum(z, 0.0),
    "tanh": anp.tanh,
}


def _normal(rng, std: float, shape: tuple[int, ...]):
    return rng.normal(0.0, std, size=shape or None)


def _truncated_normal(rng, std: float, shape: tuple[int, ...]):
    """N(0, std^2) with every value beyond 2 std redrawn until none is (shape ``shape``)."""
    out = np.asarray(rng.normal(0.0, std, size=shape), dtype=float)
    bad = np.abs(out) > 2 * std
    while bad.any():
        out[bad] = rng.normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(out) > 2 * std
    return out if shape else float(out)


INIT_SCHEMES = {"normal": _normal, "truncated_normal": _truncated_normal}


def param_names(hidden: tuple[int, ...]) -> list[str]:
    """Names of the parameters in draw order, e.g. ``[W1, b1, W2, b2, w3, b3]`` for two layers."""
    names = []
    for k in range(1, len(hidden) + 1):
        names += [f"W{k}", f"b{k}"]
    out = len(hidden) + 1
    return names + [f"w{out}", f"b{out}"]


def param_shapes(hidden: tuple[int, ...], dim: int = 1) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter, keyed by name, in draw order, for ``dim``-dimensional inputs."""
    shapes = {"W1": (dim, hidden[0]), "b1": (hidden[0],)}
    for k in range(2, len(hidden) + 1):
        shapes[f"W{k}"] = (hidden[k - 2], hidden[k - 1])
        shapes[f"b{k}"] = (hidden[k - 1],)
    out = len(hidden) + 1
    shapes[f"w{out}"] = (hidden[-1],)
    shapes[f"b{out}"] = ()
    return shapes


@dataclass(frozen=True)
class MLP:
    """A ReLU/tanh MLP from ``dim``-dimensional inputs to a scalar output, parameters in ``dtype``."""

    hidden: tuple[int, ...] = (50, 50)
    activation: str = "relu"
    dtype: str = "float64"
    dim: int = 1

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "dim", int(self.dim))
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @property
    def names(self) -> list[str]:
        return param_names(self.hidden)

    def init(self, rng, std: float, scheme: str = "normal", zero_biases: bool = False) -> dict:
        """Parameters drawn in draw order from ``rng`` (a RandomState or Generator), as arrays of
        the model's dtype (0-d for the output bias).

        ``scheme="normal"``: N(0, std^2) (the notebook's ``random_init``); ``"truncated_normal"``:
        N(0, std^2) redrawn outside +-2 std (TensorFlow's ``truncated_normal``, the MAML paper's
        code). ``zero_biases``: biases are zeros and draw nothing (the paper's code).
        """
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"init scheme must be one of {sorted(INIT_SCHEMES)}, got {scheme!r}")
        draw = INIT_SCHEMES[scheme]
        return {name: np.asarray(np.zeros(shape) if zero_biases and name.startswith("b") else draw(rng, std, shape),
                                 dtype=self.dtype)
                for name, shape in param_shapes(self.hidden, self.dim).items()}

    def predict(self, params: dict, x):
        """Outputs, shape (N,), for inputs x of shape (N,) (dim 1) or (N, dim)."""
        act = ACTIVATIONS[self.activation]
        n = len(self.hidden)
        x = anp.reshape(x, (anp.shape(x)[0], self.dim))
        h = act(anp.dot(x, anp.reshape(params["W1"], (self.dim, self.hidden[0]))) + params["b1"])
        for k in range(2, n + 1):
            h = act(anp.dot(h, params[f"W{k}"]) + params[f"b{k}"])
        return anp.dot(h, params[f"w{n + 1}"]) + params[f"b{n + 1}"]
