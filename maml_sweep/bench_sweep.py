"""Benchmark: the fixed cost of one run, and a parallel sweep's wall time against its runs' training time.

    python -m maml_sweep.bench_sweep [--runs 32] [--steps 1000] [--repeats 5] [--serial]

1. Fixed cost: the wall time of ``maml-sweep train.outer_steps=1 train.figures=false`` (a whole
   process as a sweep's job runs it, no figure: imports, composing, one step, the test-bank
   evaluation, the run directory's files), the first with an
   empty scratch cache, then ``--repeats`` more with it warm (median and min), beside the import
   time of the CLI and the run's own ``eval_s``.
2. Sweep: ``--runs`` seeds of ``--steps`` outer steps with the joblib launcher on all cores (and,
   with ``--serial``, Hydra's basic launcher). Overhead = wall time / (sum of the runs' training
   time ``wall_s`` / cores) - 1: what a sweep costs beyond its training loops.

Everything runs in a temporary directory with a scratch cache of its own; BLAS one thread per run
(the default ``train.blas_threads``). The machine is shared: the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import rundir
from .bench import loadavg


def _env(cache: Path) -> dict:
    return {**os.environ, "MAML_SWEEP_CACHE_DIR": str(cache), "HYDRA_FULL_ERROR": "1"}


def _timed(args: list[str], cache: Path, cwd: Path) -> float:
    """Seconds of wall time for ``python ARGS`` (which must succeed)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, cwd=cwd, env=_env(cache),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def fixed_cost(workdir: Path, repeats: int) -> dict:
    """Wall seconds of ``maml-sweep train.outer_steps=1``: cold (empty scratch cache), then warm."""
    cache = workdir / "cache"
    imports = min(_timed(["-c", "import maml_sweep.cli"], cache, workdir) for _ in range(3))
    start = min(_timed(["-c", "pass"], cache, workdir) for _ in range(3))
    runs = []
    for i in range(repeats + 1):
        run_dir = workdir / f"one-{i}"
        wall = _timed(["-m", "maml_sweep", "train.outer_steps=1", "train.figures=false", f"hydra.run.dir={run_dir}"], cache, workdir)
        runs.append((wall, json.loads((run_dir / "summary.json").read_text())["eval_s"]))
    warm = runs[1:]
    return {"cold": runs[0][0], "cold_eval": runs[0][1], "warm_median": statistics.median(w for w, _ in warm),
            "warm_min": min(w for w, _ in warm), "eval_median": statistics.median(e for _, e in warm),
            "imports": imports - start, "python": start}


def sweep(workdir: Path, launcher: str, runs: int, steps: int) -> dict:
    """Wall seconds of a ``runs``-seed multirun and the sum of its runs' training seconds."""
    folder = workdir / launcher
    args = ["-m", "maml_sweep", "-m", f"seed=range(0,{runs})", f"train.outer_steps={steps}",
            f"hydra.sweep.dir={folder}", f"hydra/launcher={launcher}"]
    wall = _timed(args, workdir / "cache", workdir)
    summaries = [json.loads(p.read_text()) for p in folder.glob("*/summary.json")]
    if len(summaries) != runs or any(s["status"] != rundir.COMPLETED for s in summaries):
        raise RuntimeError(f"{launcher} sweep: {len(summaries)} of {runs} runs completed")
    cores = os.cpu_count() if launcher == "joblib" else 1
    train = sum(s["wall_s"] for s in summaries)
    return {"wall": wall, "train": train, "cores": cores, "overhead": wall / (train / cores) - 1}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maml_sweep.bench_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=32, help="runs in the sweep (seeds)")
    parser.add_argument("--steps", type=int, default=1000, help="outer steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="warm fixed-cost runs (median, min)")
    parser.add_argument("--serial", action="store_true", help="also time the sweep with the basic launcher")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    print(f"{os.cpu_count()} cores; {loadavg()} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        workdir = Path(tmp)
        fc = fixed_cost(workdir, args.repeats)
        print(f"fixed cost (maml-sweep train.outer_steps=1 train.figures=false, wall): {fc['warm_median']:.2f} s median, "
              f"{fc['warm_min']:.2f} s min of {args.repeats} (scratch curve cached; first run, empty cache: "
              f"{fc['cold']:.2f} s)", flush=True)
        print(f"  of which: python start-up {fc['python']:.2f} s, importing the CLI {fc['imports']:.2f} s, "
              f"test-bank evaluation {fc['eval_median']:.2f} s (uncached: {fc['cold_eval']:.2f} s)", flush=True)
        for launcher in ("joblib", "basic") if args.serial else ("joblib",):
            sw = sweep(workdir, launcher, args.runs, args.steps)
            print(f"{launcher} sweep of {args.runs} runs x {args.steps} steps on {sw['cores']} core(s): wall "
                  f"{sw['wall']:.1f} s, runs' training {sw['train']:.1f} s in all -> overhead "
                  f"{sw['overhead']:+.0%} over training time / cores", flush=True)
    print(loadavg() + " at end")


if __name__ == "__main__":
    main()
