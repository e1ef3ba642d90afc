"""Benchmark: the fixed cost of one run, and a parallel sweep's wall time against its runs' training time.

    python -m maml_sweep.tools.bench_sweep [--runs 16 64] [--steps 1000] [--launchers joblib lockstep]
        [--repeats 5] [--serial]

1. Fixed cost: the wall time of ``maml-sweep train.outer_steps=1 train.figures=false`` (a whole
   process as a sweep's job runs it, no figure: imports, composing, one step, the test-bank
   evaluation, the run directory's files), the first with an
   empty scratch cache, then ``--repeats`` more with it warm (median and min), beside the import
   time of the CLI and the run's own ``eval_s``.
2. One run of ``--steps`` outer steps alone: its training loop's ``wall_s`` is the single-run time.
3. Sweeps: for each ``--runs`` count and each launcher (``joblib``, ``lockstep``; with ``--serial``
   also Hydra's basic launcher), that many seeds of ``--steps`` outer steps on all cores. Against
   the ideal (runs x the single-run time / cores: training only, no sweep cost, no slowdown of two
   runs sharing the machine): wall / ideal. Overhead = wall time / (sum of the runs' training time
   ``wall_s`` / cores) - 1: what a sweep costs beyond its training loops. Where it goes, per
   job (means, seconds): composing its config (measured here, in-process, as Hydra does it: the
   sweeper composes every job's config in the parent before launching, the joblib worker again;
   lockstep composes once per group and worker and copies the rest), the
   run's own ``setup_s``, ``wall_s``, ``eval_s`` and ``writes_s`` (summary.json) and the rest of
   the jobs' phase (each worker's core-seconds between the first run's start and the last one's
   end, less those: Hydra's job wrapper, dispatch, the sweep-summary callback); then the
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
        wall = _timed(["-m", "maml_sweep", "train.outer_steps=1", "train.figures=false", f"hydra.run.dir={run_dir}"],
                      cache, workdir)
        runs.append((wall, json.loads((run_dir / "summary.json").read_text())["eval_s"]))
    warm = runs[1:]
    return {"cold": runs[0][0], "cold_eval": runs[0][1], "warm_median": statistics.median(w for w, _ in warm),
            "warm_min": min(w for w, _ in warm), "eval_median": statistics.median(e for _, e in warm),
            "imports": imports - start, "python": start}


PARALLEL = ("joblib", "lockstep")  # launchers that use every core


def single_run(workdir: Path, steps: int, extra: list[str] = ()) -> float:
    """Training-loop seconds (``wall_s``) of one run of ``steps`` outer steps, alone on the machine."""
    run_dir = workdir / "alone"
    _timed(["-m", "maml_sweep", f"train.outer_steps={steps}", "train.figures=false", *extra,
            f"hydra.run.dir={run_dir}"],
           workdir / "cache", workdir)
    return json.loads((run_dir / rundir.SUMMARY).read_text())["wall_s"]


def sweep(workdir: Path, launcher: str, runs: int, steps: int, extra: list[str] = ()) -> dict:
    """Wall seconds of a ``runs``-seed multirun (``extra``: more overrides), the sum of its runs'
    training seconds, and where the rest goes (:func:`breakdown`)."""
    folder = workdir / f"{launcher}-{runs}"
    overrides = [f"seed=range(0,{runs})", f"train.outer_steps={steps}", *extra, f"hydra/launcher={launcher}"]
    started = time.time()
    wall = _timed(["-m", "maml_sweep", "-m", *overrides, f"hydra.sweep.dir={folder}"], workdir / "cache", workdir)
    jobs = [p.parent for p in folder.glob(f"*/{rundir.SUMMARY}")]
    summaries = [json.loads((job / rundir.SUMMARY).read_text()) for job in jobs]
    if len(summaries) != runs or any(s["status"] != rundir.COMPLETED for s in summaries):
        raise RuntimeError(f"{launcher} sweep: {len(summaries)} of {runs} runs completed")
    cores = os.cpu_count() if launcher in PARALLEL else 1
    train = sum(s["wall_s"] for s in summaries)
    compose_s = compose_seconds(overrides[1:] + ["seed=1"]) if launcher != "lockstep" else 0.0
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
    parser.add_argument("--runs", type=int, nargs="+", default=[16, 64], help="runs in each sweep (seeds)")
    parser.add_argument("--steps", type=int, default=1000, help="outer steps per run")
    parser.add_argument("--launchers", nargs="+", default=list(PARALLEL), choices=PARALLEL,
                        help="parallel launchers to time")
    parser.add_argument("--repeats", type=int, default=5, help="warm fixed-cost runs (median, min)")
    parser.add_argument("--serial", action="store_true", help="also time the sweeps with the basic launcher")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for the single run and every sweep (repeatable), e.g. eval.num_tasks=300")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    print(f"{os.cpu_count()} cores; {loadavg()} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        workdir = Path(tmp)
        fc = fixed_cost(workdir, args.repeats)
        print(f"fixed cost (maml-sweep train.outer_steps=1 train.figures=false, wall): "
              f"{fc['warm_median']:.2f} s median, "
              f"{fc['warm_min']:.2f} s min of {args.repeats} (scratch curve cached; first run, empty cache: "
              f"{fc['cold']:.2f} s)", flush=True)
        print(f"  of which: python start-up {fc['python']:.2f} s, importing the CLI {fc['imports']:.2f} s, "
              f"test-bank evaluation {fc['eval_median']:.2f} s (uncached: {fc['cold_eval']:.2f} s)", flush=True)
        alone = single_run(workdir, args.steps, args.override)
        shown = f" {' '.join(args.override)}" if args.override else ""
        print(f"one run of {args.steps} steps{shown} alone: training loop {alone:.2f} s "
              f"({1e3 * alone / args.steps:.2f} ms per step); {loadavg()}", flush=True)
        for runs in args.runs:
            for launcher in [*args.launchers, *(["basic"] if args.serial else [])]:
                sw = sweep(workdir, launcher, runs, args.steps, args.override)
                ideal = runs * alone / sw["cores"]
                print(f"{launcher} sweep of {runs} runs x {args.steps} steps{shown} on {sw['cores']} core(s): wall "
                      f"{sw['wall']:.1f} s = {sw['wall'] / ideal:.2f}x the ideal {ideal:.1f} s (runs x one run alone / "
                      f"cores); runs' training {sw['train']:.1f} s in all -> overhead {sw['overhead']:+.0%} over "
                      f"training time / cores; {loadavg()}", flush=True)
                p = sw["parts"]
                compose = (f"composing its config {p['compose_s']:.3f} (and again in the sweeper's check) | "
                           if launcher != "lockstep" else "")
                print(f"  per job (mean s): {compose}"
                      + " | ".join(f"{name} {p[key]:.3f}" for key, name in PARTS)
                      + " | the rest (Hydra's job wrapper, dispatch, callbacks"
                        f"{', config copies' if not compose else ''}) {p['rest_s']:.3f}", flush=True)
                print(f"  sweep start-up before the first run {sw['start']:.2f} s (imports, the sweeper composing "
                      f"every job's config, starting workers); after the last run {sw['end']:.2f} s", flush=True)
    print(loadavg() + " at end")


if __name__ == "__main__":
    main()
