"""Benchmark: the fast meta-gradient (:mod:`maml_sweep.fast`) in float64 and float32 against the
nested-autograd reference (:func:`maml_sweep.maml.meta_value_and_grad`, float64), in one process,
BLAS pinned to 1 thread, with T=1 and T=16 tasks per meta-batch, every algorithm's outer step
against MAML's, and the arithmetic bound (the tape's matrix-product FLOPs at the measured matmul
peak).

    python -m maml_sweep.tools.bench            # full table (about a minute)
    python -m maml_sweep.tools.bench --quick    # a few rows
    python -m maml_sweep.tools.bench --quick --stat min --clock cpu   # on a busy, shared machine
    python -m maml_sweep.tools.bench --trajectory 1000   # replay the notebook's training with the fast path

Each cell is the median over ``--repeats`` timed batches (after a warm-up) of ms per call; the
reference and the fast path alternate batch by batch so both see the same machine load.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .. import fast
from ..config import StepsTaskConfig
from ..maml import InnerLoop, meta_objective, meta_value_and_grad
from ..model import DTYPES, MLP
from ..optim import SGD
from ..tasks import make_tasks

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
    forced = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    note = (f"\n{', '.join(f'{k}={v}' for k, v in forced.items())} set: OpenBLAS runs the kernels named there, "
            "not the CPU's own; to time those, unset both for this command alone: "
            "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m maml_sweep.tools.bench ..." if forced else "")
    return (f"CPU: {cpu} ({os.cpu_count()} logical cores{l2})\n"
            f"numpy {np.__version__}, BLAS: {'; '.join(blas) or 'unknown'}; BLAS threads pinned to 1{note}")


def loadavg() -> str:
    """The machine's load averages (1, 5, 15 min) and what else runs, for the record."""
    try:
        with open("/proc/loadavg") as fh:
            return "load average " + " ".join(fh.read().split()[:3])
    except OSError:
        return "load average unknown"


def _setup(case: Case, seed: int = 0, dtype: str = "float64"):
    rng = np.random.RandomState(seed)
    model = MLP(case.hidden, dtype=dtype)
    params = model.init(rng, 0.1)
    tasks = [make_tasks(StepsTaskConfig(name="steps", num_points=case.points), dtype).sample(rng)
             for _ in range(case.tasks)]
    return model, params, tasks, InnerLoop(0.1, case.steps, case.first_order, loss_scale=0.5)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time only (a busy machine)
STATS = {"median": statistics.median, "min": min}  # the statistic over timed batches


@dataclass(frozen=True)
class Timer:
    """How cells are timed: ``stat`` (a key of :data:`STATS`) over batches, read on ``clock`` (of :data:`CLOCKS`)."""

    stat: str = "median"
    clock: str = "wall"

    def batch(self, fn, number: int) -> float:
        """ms per call of ``fn`` over ``number`` calls."""
        clock = CLOCKS[self.clock]
        t0 = clock()
        for _ in range(number):
            fn()
        return (clock() - t0) / number * 1e3

    def number(self, fn, budget_ms: float) -> int:
        """Calls per timed batch so that one batch takes about ``budget_ms`` (after one warm-up call)."""
        fn()
        once = self.batch(fn, 1)
        return max(1, int(budget_ms / max(once, 1e-3)))

    def compare(self, fns: dict, repeats: int, budget_ms: float = 40.0) -> dict:
        """``stat`` of the ms per call of each function, timing them alternately, batch by batch."""
        numbers = {name: self.number(fn, budget_ms) for name, fn in fns.items()}
        times = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                times[name].append(self.batch(fn, numbers[name]))
        return {name: STATS[self.stat](ts) for name, ts in times.items()}


def time_case(case: Case, repeats: int, budget_ms: float = 40.0, timer: Timer = Timer()) -> dict:
    """ms per meta-gradient: the float64 reference, the fast path in each dtype, and the ratios."""
    model, params, tasks, inner = _setup(case)
    fns = {"ref": lambda: meta_value_and_grad(model.predict, params, tasks, inner)}
    for dtype in DTYPES:
        m, p, ts, i = _setup(case, dtype=dtype)
        fns[dtype] = lambda m=m, p=p, ts=ts, i=i: fast.fast_meta_value_and_grad(m, p, ts, i)
    t = timer.compare(fns, repeats, budget_ms)
    return {"case": case, **t, **{f"ratio_{d}": t["ref"] / t[d] for d in DTYPES}}


def time_outer_step(case: Case, repeats: int, budget_ms: float = 40.0, timer: Timer = Timer()) -> dict:
    """ms per full outer step (meta-gradient + SGD update of the params): the float64 reference
    and the fast path in each dtype."""
    opt = SGD(0.01)
    fns, state = {}, {}
    for name, dtype, fn in (("ref", "float64", None), *((d, d, fast.fast_meta_value_and_grad) for d in DTYPES)):
        model, params, tasks, inner = _setup(case, dtype=dtype)
        state[name] = params

        def step(name=name, model=model, tasks=tasks, inner=inner, fn=fn):
            if fn is None:
                _, g = meta_value_and_grad(model.predict, state[name], tasks, inner)
            else:
                _, g = fn(model, state[name], tasks, inner)
            state[name] = opt.update(state[name], g, {})[0]

        fns[name] = step
    t = timer.compare(fns, repeats, budget_ms)
    return {"case": case, **t, **{f"ratio_{d}": t["ref"] / t[d] for d in DTYPES}}


ALGORITHM_ROWS = ("maml", "fomaml", "anil", "metasgd", "reptile", "pretrain")
TARGETS = {"anil": 0.6, "metasgd": 1.3, "reptile": 0.6, "fomaml": 0.6}  # per outer step, x MAML's (issue 19)


def time_algorithms(case: Case, repeats: int, budget_ms: float = 40.0, timer: Timer = Timer()) -> dict:
    """ms per outer step (the algorithm's direction + SGD update of its meta-parameters) of each
    algorithm in ``ALGORITHM_ROWS`` in each dtype, all timed alternately; ratios to MAML's."""
    from ..algorithms import ALGORITHMS
    opt, fns, state = SGD(0.01), {}, {}
    for dtype in DTYPES:
        for name in ALGORITHM_ROWS:
            model, params, tasks, inner = _setup(case, dtype=dtype)
            algorithm = ALGORITHMS[name]()
            state[name, dtype] = algorithm.init(model, params, inner)

            def step(key=(name, dtype), algorithm=algorithm, model=model, tasks=tasks, inner=inner):
                _, g = algorithm.direction(model, state[key], tasks, inner)
                state[key] = opt.update(state[key], g, {})[0]

            fns[name, dtype] = step
    t = timer.compare(fns, repeats, budget_ms)
    return {"case": case, "algorithms": {
        key: {"ms": ms, "ratio_to_maml": ms / t["maml", key[1]]} for key, ms in t.items()}}


def time_per_task(case: Case, repeats: int, big: int = 16, budget_ms: float = 40.0,
                  timer: Timer = Timer()) -> dict:
    """Fast path ms per task at T=1 and at T=``big`` in each dtype, and the ratios big/1."""
    fns = {}
    for dtype in DTYPES:
        for T in (1, big):
            model, params, tasks, inner = _setup(Case(case.steps, T, case.first_order, case.points, case.hidden),
                                                 dtype=dtype)
            fns[dtype, T] = (lambda m=model, p=params, ts=tasks, i=inner:
                             fast.fast_meta_value_and_grad(m, p, ts, i))
    t = timer.compare(fns, repeats, budget_ms)
    out = {"case": case, "big": big}
    for dtype in DTYPES:
        out[dtype] = {"T1": t[dtype, 1], "Tbig": t[dtype, big] / big, "ratio": t[dtype, big] / big / t[dtype, 1]}
    return out


def matmul_peak(dtype: str, n: int = 512, repeats: int = 5, timer: Timer = Timer()) -> float:
    """GFLOP/s of one BLAS thread on an n x n x n product (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = a @ b
    best, clock = math.inf, CLOCKS[timer.clock]
    for _ in range(repeats):
        t0 = clock()
        np.matmul(a, b, out=out)
        best = min(best, clock() - t0)
    return 2 * n ** 3 / best / 1e9


def tape_flops(case: Case) -> float:
    """Floating-point operations of the matrix products in the fast path's tape for ``case``."""
    model, params, tasks, inner = _setup(case)
    fast.clear_workspaces()
    fast.fast_meta_value_and_grad(model, params, tasks, inner)
    flops = 0.0
    for ws in fast._WORKSPACES.d.values():
        for tape in ws.tapes.values():
            for fn, args in tape:
                if fn is np.matmul or fn is fast._dot:  # see fast._Tape.matmul
                    a, b = args[0], args[1]
                    flops += 2 * np.prod(a.shape[:-1]) * a.shape[-1] * b.shape[-1]
    fast.clear_workspaces()
    return flops


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case(5, 1, False), Case(5, 1, True), Case(5, 16, False)]
    return [Case(k, t, fo) for t in (1, 16) for k in (1, 5, 10) for fo in (False, True)]


def run(quick: bool = False, repeats: int = 7, out=print, timer: Timer = Timer()) -> list[dict]:
    """Print the benchmark table; return its rows (meta-gradient rows, outer step, per task, bound)."""
    budget = 15.0 if quick else 40.0
    out(machine())
    out(loadavg() + " at start")
    out("Notebook setting: 1-50-50-1 ReLU MLP, 100 points per task, inner lr 0.1; the reference is float64.")
    out(f"ms per meta-gradient ({timer.clock} clock), {timer.stat} of {repeats} batches; "
        "K inner steps, T tasks per meta-batch.")
    out(f"{'setting':<16} {'reference':>10} {'fast f64':>9} {'fast f32':>9} {'speed-up f64':>13} {'f32':>6}")
    rows = []
    for case in cases(quick):
        row = time_case(case, repeats, budget, timer)
        rows.append(row)
        out(f"{case.label:<16} {row['ref']:>10.3f} {row['float64']:>9.3f} {row['float32']:>9.3f} "
            f"{row['ratio_float64']:>12.1f}x {row['ratio_float32']:>5.1f}x")
    notebook = Case(5, 1, False)
    step = time_outer_step(notebook, repeats, budget, timer)
    rows.append(step)
    out(f"outer step (meta-gradient + SGD update), K=5 T=1 2nd: reference {step['ref']:.3f} ms, "
        f"fast float64 {step['float64']:.3f} ms ({step['ratio_float64']:.1f}x), "
        f"float32 {step['float32']:.3f} ms ({step['ratio_float32']:.1f}x)")
    algos = time_algorithms(notebook, repeats, budget, timer)
    rows.append(algos)
    out("outer step per algorithm (direction + SGD update), K=5 T=1, ms and x MAML's in the same dtype:")
    out(f"{'algorithm':<10} " + " ".join(f"{d:>15}" for d in DTYPES) + "  target")
    for name in ALGORITHM_ROWS:
        cells = [algos["algorithms"][name, d] for d in DTYPES]
        target = f"<= {TARGETS[name]}x" if name in TARGETS else ""
        out(f"{name:<10} " + " ".join(f"{c['ms']:>7.3f} ({c['ratio_to_maml']:.2f}x)" for c in cells) + f"  {target}")
    for fo in (False, True):
        pt = time_per_task(Case(5, 1, fo), repeats, budget_ms=budget, timer=timer)
        rows.append(pt)
        out(f"per-task cost (fast), K=5 {'1st' if fo else '2nd'} order: " + "; ".join(
            f"{d} T=1 {pt[d]['T1']:.3f} ms, T={pt['big']} {pt[d]['Tbig']:.3f} ms/task ({pt[d]['ratio']:.2f})"
            for d in DTYPES))
    flops = tape_flops(notebook)
    bound = {"case": notebook, "mflop": flops / 1e6}
    for dtype in DTYPES:
        peak = matmul_peak(dtype, timer=timer)
        bound[dtype] = {"gflops": peak, "ms": flops / peak / 1e6}
    rows.append(bound)
    out(f"arithmetic bound, K=5 T=1 2nd: {flops / 1e6:.1f} MFLOP of matrix products at the measured "
        "512^3 matmul peak: " + "; ".join(
            f"{d} {bound[d]['gflops']:.0f} GFLOP/s -> {bound[d]['ms']:.3f} ms ({bound[d]['ms'] / step[d]:.0%} "
            "of the outer step)" for d in DTYPES))
    out(loadavg() + " at end")
    return rows


def notebook_trajectory(steps: int = 1000, every: int = 100, use_fast: bool = True, out=None) -> dict:
    """Replay the notebook's training (see ``NOTEBOOK_EXPECTED``); return {step: '%1.3f' value}."""
    rng = np.random.RandomState(0)
    model = MLP()
    params = model.init(rng, 0.1)
    notebook = make_tasks(StepsTaskConfig(name="steps"), "float64")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m maml_sweep.tools.bench",
        description="ms per MAML outer step: nested-autograd reference vs maml_sweep.fast, "
                    "same process, BLAS pinned to 1 thread.")
    parser.add_argument("--quick", action="store_true", help="a few rows, short timings")
    parser.add_argument("--repeats", type=int, default=None, help="timed batches per cell (median)")
    parser.add_argument("--stat", choices=sorted(STATS), default="median",
                        help="statistic over the timed batches (min resists a busy machine)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (less disturbed by other jobs on a busy machine)")
    parser.add_argument("--trajectory", type=int, default=0, metavar="STEPS",
                        help="instead, replay the notebook's training for STEPS steps (fast path)")
    parser.add_argument("--reference", action="store_true", help="with --trajectory: use the reference")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    with threadpool_limits(1):
        if args.trajectory:
            t0 = time.perf_counter()
            notebook_trajectory(args.trajectory, use_fast=not args.reference, out=print)
            print(f"{time.perf_counter() - t0:.1f} s")
        else:
            run(args.quick, args.repeats or (3 if args.quick else 7), timer=Timer(args.stat, args.clock))


if __name__ == "__main__":
    main()
