"""Benchmark: the fast meta-gradient (:mod:`maml_sweep.fast`) against the nested-autograd
reference (:func:`maml_sweep.maml.meta_value_and_grad`), in one process, BLAS pinned to 1 thread.

    python -m maml_sweep.bench            # full table (about a minute)
    python -m maml_sweep.bench --quick    # a few rows
    python -m maml_sweep.bench --trajectory 1000   # replay the notebook's training with the fast path

Each cell is the median over ``--repeats`` timed batches (after a warm-up) of ms per call; the
reference and the fast path alternate batch by batch so both see the same machine load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from . import fast
from .maml import InnerLoop, meta_objective, meta_value_and_grad
from .model import MLP
from .optim import SGD
from .config import StepsTaskConfig
from .tasks import make_tasks

# The notebook's printed meta-objective on its validation task (RandomState(0), MLP().init(rng, 0.1),
# InnerLoop(0.1, 5), outer SGD 0.01, one task per step), every 100 steps.
NOTEBOOK_EXPECTED = {100: 1.254, 200: 1.226, 300: 1.215, 400: 1.190, 500: 1.177, 600: 1.160,
                     700: 1.137, 800: 1.124, 900: 1.087, 1000: 1.056,
                     6000: 0.492, 8000: 0.345, 11000: 0.261, 11500: 0.261, 12000: 0.247}


@dataclass(frozen=True)
class Case:
    """One benchmark setting: T tasks of ``points`` points, ``steps`` inner steps."""

    steps: int = 5
    tasks: int = 1
    first_order: bool = False
    points: int = 100
    hidden: tuple = (50, 50)

    @property
    def label(self) -> str:
        order = "1st" if self.first_order else "2nd"
        return f"K={self.steps:<2d} T={self.tasks:<2d} {order}"


def machine() -> str:
    """CPU model, numpy version and BLAS (from threadpoolctl), one line each."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer', '?')} threading, "
            f"arch {i.get('architecture', '?')})" for i in threadpool_info() if i.get("user_api") == "blas"]
    l2 = ""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as fh:
            l2 = f", L2 {fh.read().strip()} per core"
    except OSError:
        pass
    return (f"CPU: {cpu} ({os.cpu_count()} logical cores{l2})\n"
            f"numpy {np.__version__}, BLAS: {'; '.join(blas) or 'unknown'}; BLAS threads pinned to 1")


def _setup(case: Case, seed: int = 0):
    rng = np.random.RandomState(seed)
    model = MLP(case.hidden)
    params = model.init(rng, 0.1)
    tasks = [make_tasks(StepsTaskConfig(name="steps", num_points=case.points)).sample(rng) for _ in range(case.tasks)]
    return model, params, tasks, InnerLoop(0.1, case.steps, case.first_order, loss_scale=0.5)


def _batch(fn, number: int) -> float:
    """ms per call of ``fn`` over ``number`` calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number * 1e3


def _number(fn, budget_ms: float) -> int:
    """Calls per timed batch so that one batch takes about ``budget_ms`` (after one warm-up call)."""
    fn()
    once = _batch(fn, 1)
    return max(1, int(budget_ms / max(once, 1e-3)))


def compare(fns: dict, repeats: int, budget_ms: float = 40.0, stat=statistics.median) -> dict:
    """Median (or ``stat``) ms per call of each function, timing them alternately, batch by batch."""
    numbers = {name: _number(fn, budget_ms) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_batch(fn, numbers[name]))
    return {name: stat(ts) for name, ts in times.items()}


STATS = {"median": statistics.median, "min": min}
STAT = "median"  # set by --stat: the statistic over timed batches


def time_case(case: Case, repeats: int, budget_ms: float = 40.0) -> dict:
    """ms per meta-gradient for the reference and the fast path, and their ratio."""
    model, params, tasks, inner = _setup(case)
    t = compare({
        "ref": lambda: meta_value_and_grad(model.predict, params, tasks, inner),
        "fast": lambda: fast.fast_meta_value_and_grad(model, params, tasks, inner),
    }, repeats, budget_ms, STATS[STAT])
    return {"case": case, "ref": t["ref"], "fast": t["fast"], "ratio": t["ref"] / t["fast"]}


def time_outer_step(case: Case, repeats: int, budget_ms: float = 40.0) -> dict:
    """ms per full outer step (meta-gradient + SGD update of the params) for both paths."""
    model, params, tasks, inner = _setup(case)
    opt = SGD(0.01)
    state = {"ref": dict(params), "fast": dict(params)}

    def ref_step():
        _, g = meta_value_and_grad(model.predict, state["ref"], tasks, inner)
        state["ref"] = opt.update(state["ref"], g, {})[0]

    def fast_step():
        _, g = fast.fast_meta_value_and_grad(model, state["fast"], tasks, inner)
        state["fast"] = opt.update(state["fast"], g, {})[0]

    t = compare({"ref": ref_step, "fast": fast_step}, repeats, budget_ms, STATS[STAT])
    return {"case": case, "ref": t["ref"], "fast": t["fast"], "ratio": t["ref"] / t["fast"]}


def time_per_task(case: Case, repeats: int, big: int = 16, budget_ms: float = 40.0) -> dict:
    """Fast path ms per task at T=1 and at T=``big`` (same other settings), and their ratio."""
    fns = {}
    for T in (1, big):
        model, params, tasks, inner = _setup(Case(case.steps, T, case.first_order, case.points, case.hidden))
        fns[T] = (lambda m=model, p=params, ts=tasks, i=inner:
                  fast.fast_meta_value_and_grad(m, p, ts, i))
    t = compare(fns, repeats, budget_ms, STATS[STAT])
    one, many = t[1], t[big] / big
    return {"case": case, "T1": one, "Tbig": many, "big": big, "ratio": many / one}


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case(5, 1, False), Case(5, 1, True), Case(5, 16, False)]
    return [Case(k, t, fo) for t in (1, 16) for k in (1, 5, 10) for fo in (False, True)]


def run(quick: bool = False, repeats: int = 7, out=print) -> list[dict]:
    """Print the benchmark table; return its rows (meta-gradient rows, then the outer step)."""
    budget = 15.0 if quick else 40.0
    out(machine())
    out("Notebook setting: 1-50-50-1 ReLU MLP, 100 points per task, inner lr 0.1, float64;")
    out(f"ms per meta-gradient, {STAT} of {repeats} batches; K inner steps, T tasks per meta-batch.")
    out(f"{'setting':<16} {'reference ms':>13} {'fast ms':>9} {'speed-up':>9}")
    rows = []
    for case in cases(quick):
        row = time_case(case, repeats, budget)
        rows.append(row)
        out(f"{case.label:<16} {row['ref']:>13.3f} {row['fast']:>9.3f} {row['ratio']:>8.1f}x")
    step = time_outer_step(Case(5, 1, False), repeats, budget)
    rows.append(step)
    out(f"outer step (meta-gradient + SGD update), K=5 T=1 2nd: reference {step['ref']:.3f} ms, "
        f"fast {step['fast']:.3f} ms, {step['ratio']:.1f}x")
    for fo in (False, True):
        pt = time_per_task(Case(5, 1, fo), repeats, budget_ms=budget)
        rows.append(pt)
        out(f"per-task cost (fast), K=5 {'1st' if fo else '2nd'} order: T=1 {pt['T1']:.3f} ms, "
            f"T={pt['big']} {pt['Tbig']:.3f} ms/task, ratio {pt['ratio']:.2f}")
    return rows


def notebook_trajectory(steps: int = 1000, every: int = 100, use_fast: bool = True, out=None) -> dict:
    """Replay the notebook's training (see ``NOTEBOOK_EXPECTED``); return {step: '%1.3f' value}."""
    rng = np.random.RandomState(0)
    model = MLP()
    params = model.init(rng, 0.1)
    notebook = make_tasks(StepsTaskConfig(name="steps"))
    val = notebook.sample(rng)
    inner = InnerLoop(0.1, 5, loss_scale=0.5)
    seen = {}
    for step in range(1, steps + 1):
        task = notebook.sample(rng)
        if use_fast:
            _, g = fast.fast_meta_value_and_grad(model, params, [task], inner)
        else:
            _, g = meta_value_and_grad(model.predict, params, [task], inner)
        params = {k: params[k] - 0.01 * g[k] for k in params}
        if step % every == 0:
            value = (fast.fast_meta_objective(model, params, [val], inner) if use_fast
                     else meta_objective(model.predict, params, val, inner))
            seen[step] = "%1.3f" % value
            if out:
                expected = NOTEBOOK_EXPECTED.get(step)
                mark = "" if expected is None else (" ok" if seen[step] == "%1.3f" % expected
                                                     else f" MISMATCH (notebook {expected:.3f})")
                out(f"{step:6d} {seen[step]}{mark}")
    return seen


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m maml_sweep.bench",
        description="ms per MAML outer step: nested-autograd reference vs maml_sweep.fast, "
                    "same process, BLAS pinned to 1 thread.")
    parser.add_argument("--quick", action="store_true", help="a few rows, short timings")
    parser.add_argument("--repeats", type=int, default=None, help="timed batches per cell (median)")
    parser.add_argument("--stat", choices=sorted(STATS), default="median",
                        help="statistic over the timed batches (min resists a busy machine)")
    parser.add_argument("--trajectory", type=int, default=0, metavar="STEPS",
                        help="instead, replay the notebook's training for STEPS steps (fast path)")
    parser.add_argument("--reference", action="store_true", help="with --trajectory: use the reference")
    args = parser.parse_args(argv)
    global STAT
    STAT = args.stat
    with threadpool_limits(1):
        if args.trajectory:
            t0 = time.perf_counter()
            notebook_trajectory(args.trajectory, use_fast=not args.reference, out=print)
            print(f"{time.perf_counter() - t0:.1f} s")
        else:
            run(args.quick, args.repeats or (3 if args.quick else 7))


if __name__ == "__main__":
    main()
