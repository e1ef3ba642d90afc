"""Benchmark: the fixed cost of one run, and a parallel sweep's wall time against its runs' training time.

    python -m maml_sweep.tools.bench_sweep [--runs 32] [--steps 1000] [--repeats 5] [--serial]

1. Fixed cost: the wall time of ``maml-sweep train.outer_steps=1 train.figures=false`` (a whole
   process as a sweep's job runs it, no figure: imports, composing, one step, the test-bank
   evaluation, the run directory's files), the first with an
   empty scratch cache, then ``--repeats`` more with it warm (median and min), beside the import
   time of the CLI and the run's own ``eval_s``.
2. Sweep: ``--runs`` seeds of ``--steps`` outer steps with the joblib launcher on all cores (and,
   with ``--serial``, Hydra's basic launcher). Overhead = wall time / (sum of the runs' training
   time ``wall_s`` / cores) - 1: what a sweep costs beyond its training loops. Where it goes, per
   job (means, seconds): composing its config (measured here, in-process, as Hydra does it: the
   sweeper composes every job's config in the parent before launching, the worker again), the
   run's own ``setup_s``, ``wall_s``, ``eval_s`` and ``writes_s`` (summary.json) and the rest of
   the jobs' phase (each worker's core-seconds between the first run's start and the last one's
   end, less those: Hydra's job wrapper, joblib's dispatch, the sweep-summary callback); then the
   sweep's start-up before its first run and its end after the last.

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

from .. import rundir
from .bench import loadavg

PARTS = (("setup_s", "set-up"), ("wall_s", "training loop"), ("eval_s", "test-bank evaluation"),
         ("writes_s", "final writes"))  # summary.json timings of a run, in the order they happen


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
    """Wall seconds of a ``runs``-seed multirun, the sum of its runs' training seconds, and where
    the rest goes (:func:`breakdown`)."""
    folder = workdir / launcher
    overrides = [f"seed=range(0,{runs})", f"train.outer_steps={steps}", f"hydra/launcher={launcher}"]
    started = time.time()
    wall = _timed(["-m", "maml_sweep", "-m", *overrides, f"hydra.sweep.dir={folder}"], workdir / "cache", workdir)
    jobs = [p.parent for p in folder.glob(f"*/{rundir.SUMMARY}")]
    summaries = [json.loads((job / rundir.SUMMARY).read_text()) for job in jobs]
    if len(summaries) != runs or any(s["status"] != rundir.COMPLETED for s in summaries):
        raise RuntimeError(f"{launcher} sweep: {len(summaries)} of {runs} runs completed")
    cores = os.cpu_count() if launcher == "joblib" else 1
    train = sum(s["wall_s"] for s in summaries)
    compose_s = compose_seconds(overrides[1:] + ["seed=1"])
    return {"wall": wall, "train": train, "cores": cores, "overhead": wall / (train / cores) - 1,
            **breakdown(jobs, started, started + wall, cores, compose_s)}


def breakdown(jobs: list[Path], started: float, ended: float, cores: int, compose_s: float) -> dict:
    """Where a finished sweep's time went. ``jobs``: its run directories; ``started``/``ended``:
    the sweep command's epoch seconds; ``compose_s``: seconds to compose one job's config.
    Returns ``parts`` (per job, mean seconds: each key of :data:`PARTS`, ``compose_s`` and
    ``rest_s``, the rest of the jobs' phase's core-seconds per job), ``start`` (seconds before the
    first run started: its ``.hydra/config.yaml`` is written then) and ``end`` (after the last
    run's ``summary.json``)."""
    summaries = [json.loads((job / rundir.SUMMARY).read_text()) for job in jobs]
    first = min((job / rundir.HYDRA_CONFIG).stat().st_mtime for job in jobs)
    last = max((job / rundir.SUMMARY).stat().st_mtime for job in jobs)
    parts = {key: statistics.mean(s[key] for s in summaries) for key, _ in PARTS}
    parts["compose_s"] = compose_s  # the worker's; the sweeper's check is before the first run
    parts["rest_s"] = (last - first) * cores / len(jobs) - sum(parts.values())
    return {"parts": parts, "start": first - started, "end": ended - last}


def compose_seconds(overrides: list[str], repeats: int = 10) -> float:
    """Median seconds for Hydra to compose one job's config (``overrides``) in this process."""
    from hydra import compose, initialize_config_module

    from ..config import register_configs

    register_configs()
    with initialize_config_module("maml_sweep.conf", version_base="1.3"):
        compose("config", overrides)  # first: imports and caches
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            compose("config", overrides, return_hydra_config=True)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maml_sweep.tools.bench_sweep", description=__doc__.splitlines()[0])
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
            p = sw["parts"]
            print(f"  per job (mean s): composing its config {p['compose_s']:.3f} (and again in the sweeper's check) | "
                  + " | ".join(f"{name} {p[key]:.3f}" for key, name in PARTS)
                  + f" | the rest (Hydra's job wrapper, dispatch, callbacks) {p['rest_s']:.3f}", flush=True)
            print(f"  sweep start-up before the first run {sw['start']:.2f} s (imports, the sweeper composing every "
                  f"job's config, starting workers); after the last run {sw['end']:.2f} s", flush=True)
    print(loadavg() + " at end")


if __name__ == "__main__":
    main()
