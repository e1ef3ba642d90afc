"""How large the test bank and the shared validation must be, measured on trained runs.

    python -m maml_sweep.tools.bank_sizes RUN_DIR [--against OTHER_RUN_DIR] [--tasks 3000] [--val-tasks 1000]

For a completed run (its ``.hydra/config.yaml`` and ``params.npz``):

- **test bank**: the per-task MSE after k = 5 steps of the run's own init on its ``test_mse.npz``
  (today's ``eval.num_tasks``) and on a larger bank (the first ``--tasks`` tasks of the same test
  stream, so today's bank is its prefix); the standard error of the bank mean as a fraction of the
  mean, ``sd / sqrt(T) / mean``, and the ``eval.num_tasks`` that brings it below 2%; the seconds of
  the run's whole test evaluation (trained init and scratch baseline, scratch cache off) at today's
  size and at that size.
- **validation** (with ``--against``, a run of another configuration on the same task family):
  each configuration's per-task ``val_mse`` (held-out MSE of the test protocol after ``eval.val_step``
  steps, as ``Trainer.validate`` computes it) and the seconds of one validation, on the first ``--val-tasks``
  shared validation tasks (today's
  ``eval.val_tasks`` are their prefix); the paired standard error of the difference of the two
  means, ``sd(d) / sqrt(n)``, as a fraction of the mean of both, at today's ``eval.val_tasks`` and
  the ``eval.val_tasks`` for which a 5% difference is 2 paired standard errors.

Sizes needed are ``ceil((sd / (f * mean))^2)`` with f = 0.02 (bank) and 0.025 (validation); a
non-finite task MSE makes the mean infinite and no size is given.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from .. import evaluate, rundir
from ..components import run_config
from ..train import Trainer
from .bench import loadavg

K = 5                 # the adaptation step the bank is sized at
BANK_FRACTION = 0.02  # the bank's standard error at most this fraction of the mean
VAL_DIFFERENCE = 0.05  # a difference of this fraction of the mean ...
VAL_SES = 2            # ... is at least this many paired standard errors
MAX_TIMED = 50_000     # a bank size above this is not evaluated (memory grows with it)
CHUNK = 2000           # tasks evaluated at a time


def load_run(run_dir: Path):
    """(config, params, summary) of the completed run in ``run_dir``."""
    summary = rundir.read_summary(run_dir)
    if summary is None or summary.get("status") != rundir.COMPLETED:
        raise ValueError(f"{run_dir}: not a completed run")
    cfg = run_config(run_dir)
    return cfg, rundir.load_params(run_dir / rundir.PARAMS), summary


def with_eval(cfg, **eval_keys):
    """A copy of ``cfg`` with ``eval.<key>`` set."""
    cfg = OmegaConf.merge(cfg, {"eval": eval_keys})
    return cfg


def size_for(sd: float, mean: float, fraction: float) -> float:
    """Tasks for ``sd / sqrt(n) <= fraction * mean`` (inf if the mean is not finite and positive)."""
    if not (np.isfinite(sd) and np.isfinite(mean) and mean > 0):
        return math.inf
    return math.ceil((sd / (fraction * mean)) ** 2)


def se_fraction(x: np.ndarray) -> float:
    """Standard error of the mean of ``x`` over its mean."""
    return float(np.std(x, ddof=1) / math.sqrt(len(x)) / np.mean(x)) if np.isfinite(x).all() else math.inf


def bank_mse(cfg, params, num_tasks: int) -> np.ndarray:
    """Per-task MSE (T,) after :data:`K` steps of the trained init on the first ``num_tasks`` test tasks."""
    trainer = Trainer(with_eval(cfg, num_tasks=num_tasks), Path(tempfile.gettempdir()), "")
    ev = trainer.cfg.eval
    inner = evaluate.eval_inner(trainer.inner, ev)
    bank = evaluate.test_bank(trainer.tasks, trainer.cfg.task, ev)
    return np.concatenate([trainer.algorithm.adaptation_mse(trainer.model, params, bank[i:i + CHUNK], inner)[:, K]
                           for i in range(0, len(bank), CHUNK)])


def eval_seconds(cfg, params, num_tasks: int) -> float:
    """Wall seconds of a run's whole test evaluation at ``num_tasks`` (scratch cache off)."""
    old = os.environ.get("MAML_SWEEP_CACHE_DIR")
    os.environ["MAML_SWEEP_CACHE_DIR"] = "off"
    try:
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(with_eval(cfg, num_tasks=num_tasks), Path(out), "")
            t0 = time.perf_counter()
            trainer.evaluate(params)
            return time.perf_counter() - t0
    finally:
        if old is None:
            del os.environ["MAML_SWEEP_CACHE_DIR"]
        else:
            os.environ["MAML_SWEEP_CACHE_DIR"] = old


def val_mse(cfg, params, val_tasks: int) -> tuple[np.ndarray, float]:
    """Per-task validation MSE (n,) on the first ``val_tasks`` shared validation tasks, as
    ``Trainer.validate`` scores them (the test protocol's shots and held-out points, ``eval.val_step``
    steps), and the seconds that one validation took."""
    trainer = Trainer(with_eval(cfg, val_tasks=val_tasks), Path(tempfile.gettempdir()), "")
    t0 = time.perf_counter()
    mse = trainer.algorithm.adaptation_mse(trainer.model, params, trainer.shared_val, trainer.val_inner)[:, -1]
    return mse, time.perf_counter() - t0


def _n(x: float) -> str:
    return "none (the mean is not finite)" if math.isinf(x) else f"{int(x):,}"


def report_bank(run_dir: Path, tasks: int) -> None:
    cfg, params, _ = load_run(run_dir)
    saved = rundir.load_params(run_dir / rundir.TEST_MSE)
    label = next(k for k in saved if k != "scratch")  # the run's own init (evaluate.record)
    today = np.asarray(saved[label], dtype=float)[:, K]
    T = len(today)
    large = bank_mse(cfg, params, max(tasks, T))
    print(f"{run_dir}: test bank, k={K}, {label}")
    for name, x in ((f"test_mse.npz ({T} tasks)", today), (f"first {len(large)} test tasks", large)):
        sd, mean = float(np.std(x, ddof=1)), float(np.mean(x))
        print(f"  {name}: mean {mean:.4g}  sd {sd:.4g}  SE/mean {100 * se_fraction(x):.2f}%  "
              f"non-finite {int((~np.isfinite(x)).sum())}  eval.num_tasks for SE < {100 * BANK_FRACTION:g}%: "
              f"{_n(size_for(sd, mean, BANK_FRACTION))}")
    sd, mean = float(np.std(large, ddof=1)), float(np.mean(large))
    need = size_for(sd, mean, BANK_FRACTION)
    sizes = [T] + ([int(need)] if np.isfinite(need) and need != T else [])
    if sizes[-1] > MAX_TIMED:
        print(f"  evaluation at eval.num_tasks={sizes.pop():,}: not timed (above {MAX_TIMED:,} tasks)")
    for n in sizes:
        print(f"  evaluation at eval.num_tasks={n}: {eval_seconds(cfg, params, n):.2f} s (trained + scratch, no cache)",
              flush=True)


def report_val(run_dir: Path, other: Path, val_tasks: int) -> None:
    cfg, params, _ = load_run(run_dir)
    cfg_b, params_b, _ = load_run(other)
    today = cfg.eval.val_tasks
    n = max(val_tasks, today)
    (a, seconds), (b, _) = val_mse(cfg, params, n), val_mse(cfg_b, params_b, n)
    _, seconds_today = val_mse(cfg, params, today)
    d = a - b
    print(f"validation: {run_dir} minus {other}, per-task val_mse; one validation of {run_dir} takes "
          f"{1e3 * seconds_today:.1f} ms at {today} tasks, {1e3 * seconds:.1f} ms at {n}")
    for name, m in ((f"today's eval.val_tasks={today}", today), (f"first {n} validation tasks", n)):
        mean = float(np.mean(np.concatenate([a[:m], b[:m]])))
        se = float(np.std(d[:m], ddof=1) / math.sqrt(m))
        print(f"  {name}: means {np.mean(a[:m]):.4g} vs {np.mean(b[:m]):.4g}  difference {np.mean(d[:m]):.4g}  "
              f"paired SE/mean {100 * se / mean:.2f}%")
    mean = float(np.mean(np.concatenate([a, b])))
    print(f"  eval.val_tasks for a {100 * VAL_DIFFERENCE:g}% difference to be {VAL_SES} paired SEs: "
          f"{_n(size_for(float(np.std(d, ddof=1)), mean, VAL_DIFFERENCE / VAL_SES))}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.tools.bank_sizes", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a completed run directory")
    p.add_argument("--against", type=Path, help="a completed run of another configuration (same task family)")
    p.add_argument("--tasks", type=int, default=3000, help="the larger test bank (default 3000)")
    p.add_argument("--val-tasks", type=int, default=1000, help="the larger validation set (default 1000)")
    p.add_argument("--no-bank", action="store_true", help="only the validation part")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name, value in (("--tasks", args.tasks), ("--val-tasks", args.val_tasks)):
        if not 2 <= value <= MAX_TIMED:
            print(f"bank_sizes: error: {name} must be an integer in 2..{MAX_TIMED}, got {value}", file=sys.stderr)
            return 2
    print(f"{loadavg()} at start", flush=True)
    try:
        if not args.no_bank:
            report_bank(args.run, args.tasks)
        if args.against is not None:
            report_val(args.run, args.against, args.val_tasks)
    except (ValueError, rundir.RunDirError) as exc:
        print(f"bank_sizes: error: {exc}", file=sys.stderr)
        return 2
    print(f"{loadavg()} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
