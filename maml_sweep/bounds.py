"""Resource bounds: a run's peak memory and time estimated from its config alone, refused before any
work when above the caps ``train.max_memory_gb`` and ``train.max_hours`` (raise them to go on).

The estimates are upper-bound sketches, not measurements: float64 arrays (8 bytes), every inner
step's activations of the whole meta-batch kept for the meta-gradient (the reference path's worst
case), validation and test tasks held in memory and adapted in chunks, and
``FLOPS_PER_S`` floating-point operations per second (about what one core reaches here on the
notebook's setting, autograd overhead included). They are meant to catch configs that are wrong by
orders of magnitude (``model.hidden=[100000,100000]``, ``eval.max_steps=1000000``), not to
predict a run's cost to the percent.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import batched, fast_anil

BYTES = 8  # float64
GB = 1e9
FLOPS_PER_S = 2e9
SECOND_ORDER = 3  # a meta-gradient through the inner loop costs about this many plain gradients
# Validation and evaluation adapt tasks in chunks: at most this many at once on any path.
CHUNK_TASKS = max(batched.CHUNK_TASKS, fast_anil.CHUNK_TASKS)
BANK_FLOATS_PER_POINT = 24  # per test-bank point, measured ~22 (tests/test_memory_bounds.py: eval.num_tasks=5000)


@dataclass(frozen=True)
class Estimate:
    """Peak bytes and seconds of one phase, and the config keys that drive it (``drivers``)."""

    phase: str
    bytes: float
    seconds: float
    drivers: tuple[str, ...]


def param_count(hidden, dim: int = 1) -> int:
    """Parameters of the MLP from ``dim`` inputs to a scalar with these hidden sizes."""
    sizes = [dim, *hidden, 1]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def _dim(task) -> int:
    """The task's input dimension (task.dim where the family has it, else 1)."""
    return task.get("dim", 1) if hasattr(task, "get") else getattr(task, "dim", 1)


def estimates(cfg, default) -> list[Estimate]:
    """(training, validation, evaluation) estimates for a composed config with sane values;
    ``default``: the schemas' defaults for its family and algorithm (``config.default_config``)."""
    t, a, tr, ev = cfg.task, cfg.algorithm, cfg.train, cfg.eval
    D = _dim(t)
    P, H = param_count(list(cfg.model.hidden), D), sum(cfg.model.hidden)
    point_flops = 6 * P            # forward and backward through the MLP, one input point
    point_bytes = BYTES * (3 * H + D + 1)  # activations kept per point for the backward pass
    n, steps, batch = t.num_points, a.inner_steps, tr.meta_batch_size
    order = 1 if a.first_order else SECOND_ORDER

    # Training: a meta-batch of tasks, each through steps + 1 forward/backward passes on its points,
    # with every step's activations and parameters kept; parameters, gradients and optimizer state.
    train_bytes = batch * (steps + 1) * (n * point_bytes + 2 * BYTES * P) + 4 * BYTES * P
    train_s = tr.outer_steps * batch * (steps + 1) * n * point_flops * order / FLOPS_PER_S

    # Validation: eval.val_tasks tasks of the test protocol (shots + held-out points) kept for the
    # whole run (and a stacked copy), adapted eval.val_step steps in chunks at every evaluation
    # (no meta-gradient: one step's activations at a time).
    shots = _shots(t, ev)
    val_tasks, val_n = ev.val_tasks, shots + ev.query_size
    val_k = steps if ev.val_step is None else ev.val_step
    val_bytes = val_tasks * 4 * BYTES * val_n + min(val_tasks, CHUNK_TASKS) * (val_n * point_bytes + 3 * BYTES * P)
    validations = tr.outer_steps // max(tr.eval_every, ev.val_every) + 1  # exact when one divides the other
    val_s = validations * val_tasks * (val_k * shots + ev.query_size) * point_flops / FLOPS_PER_S

    # Evaluation: the test bank and what is built from it for every task (measured: about
    # BANK_FLOATS_PER_POINT float64 per support or query point, whatever the model) and its curves
    # for the trained and the scratch initialisation; tasks adapted in chunks for max_steps steps,
    # a task's every step kept (the adaptation's tape: activations of its points at each of k + 1 steps).
    m, T, k = shots + ev.query_size, ev.num_tasks, ev.max_steps
    eval_bytes = (T * (BANK_FLOATS_PER_POINT * BYTES * m + 2 * BYTES * (k + 1))
                  + min(T, CHUNK_TASKS) * (m * point_bytes + 3 * BYTES * P)
                  + (k + 1) * (m * point_bytes + 2 * BYTES * P))
    eval_s = 2 * T * (k * shots + (k + 1) * ev.query_size) * point_flops / FLOPS_PER_S

    return [
        Estimate("training", train_bytes, train_s, ("model.hidden", "task.num_points", "algorithm.inner_steps",
                                                    "train.meta_batch_size", "train.outer_steps")),
        Estimate("validation", val_bytes, val_s, ("eval.val_tasks", "eval.query_size", "model.hidden",
                                                  "algorithm.inner_steps", "train.outer_steps")),
        Estimate("evaluation", eval_bytes, eval_s, (
            "eval.num_tasks", "eval.support_size" if ev.support_size is not None else "task.num_points",
            "eval.query_size", "eval.max_steps", "model.hidden")),
    ]


def _shots(task, ev) -> int:
    """Support points per test task: ``eval.support_size``, else the task's support."""
    return ev.support_size if ev.support_size is not None else task.num_points - task.query_size


def _sizes(cfg) -> dict[str, float]:
    """How big each key makes a run (parameters, points, tasks, steps), for :func:`_driver`."""
    t, a, tr, ev = cfg.task, cfg.algorithm, cfg.train, cfg.eval
    return {"model.hidden": param_count(list(cfg.model.hidden), _dim(t)), "task.num_points": t.num_points,
            "algorithm.inner_steps": a.inner_steps + 1, "train.meta_batch_size": tr.meta_batch_size,
            "train.outer_steps": tr.outer_steps, "eval.val_tasks": ev.val_tasks, "eval.num_tasks": ev.num_tasks,
            "eval.support_size": _shots(t, ev), "eval.query_size": ev.query_size, "eval.max_steps": ev.max_steps + 1}


def _driver(cfg, default, keys) -> tuple[str, object]:
    """Of ``keys``, the one whose size (:func:`_sizes`) grew most over the ``default`` config's (the
    schemas' defaults), and its value, to name in a refusal."""
    sizes, base = _sizes(cfg), _sizes(default)
    key = max(keys, key=lambda k: sizes[k] / max(base[k], 1))
    group, leaf = key.split(".")
    value = cfg[group][leaf]
    return key, list(value) if key == "model.hidden" else value


def check_bounds(cfg, default) -> list[str]:
    """One line if the estimate exceeds a cap (the memory of the phase needing most, else the
    time), naming the key that drives it most against ``default`` (the schemas' default config of
    the same task family: ``model``, ``task``, ``algorithm``, ``train``, ``eval``); empty when the run fits."""
    tr = cfg.train
    parts = estimates(cfg, default)
    e = max(parts, key=lambda e: e.bytes)
    if e.bytes > tr.max_memory_gb * GB:
        key, value = _driver(cfg, default, e.drivers)
        return [f"{key}={value!r} is not allowed here: {e.phase} would need about {_size(e.bytes)} "
                f"of memory, above train.max_memory_gb={tr.max_memory_gb:g} (raise it if the machine has it)"]
    total_s = sum(e.seconds for e in parts)
    if total_s > tr.max_hours * 3600:
        e = max(parts, key=lambda e: e.seconds)
        key, value = _driver(cfg, default, e.drivers)
        return [f"{key}={value!r} is not allowed here: the run would take about {_hours(total_s)} "
                f"({e.phase} {_hours(e.seconds)}), above train.max_hours={tr.max_hours:g} (raise it to run anyway)"]
    return []


def _size(n: float) -> str:
    return f"{n / GB:.3g} GB" if n < 1e6 * GB else f"{n / GB:.2e} GB"


def _hours(s: float) -> str:
    h = s / 3600
    return f"{h:.3g} h" if h < 1e6 else f"{h:.2e} h"
