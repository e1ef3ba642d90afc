"""Report benchmark: time and peak memory of ``maml-sweep-report`` on synthetic runs, against targets.

    python -m maml_sweep.tools.bench_report [--runs 1000] [--dir DIR]     # a many-run sweep
    python -m maml_sweep.tools.bench_report --curve-rows 3000000           # one run with a long curve

``--runs N``: a sweep over task.bins (5) x algorithm.inner_lr (5) x optimizer.lr (4) x N/100 seeds,
120 evaluations per run (the default 12,000 steps logged every 100), with params.npz and
adaptation.csv. Targets: 30 s up to 1,000 runs, 60 s up to 10,000.
``--curve-rows N``: one completed run whose metrics.csv has N rows (3,000,000 rows: ~127 MB).
Targets: 10 s and 1 GB peak resident memory.

The report runs in a child process (``maml-sweep-report PATH --quiet``), so its time and peak
resident memory (``getrusage(RUSAGE_CHILDREN)``) are the report's alone; each is printed with its
ratio to the target. Exit 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_TARGETS_S = ((1000, 30.0), (10000, 60.0))  # (up to this many runs, seconds)
CURVE_TARGET_S, CURVE_TARGET_MB = 10.0, 1024.0
GRID = {"task.bins": [2, 3, 4, 6, 8], "algorithm.inner_lr": [0.003, 0.01, 0.03, 0.1, 0.3],
        "optimizer.lr": [0.001, 0.003, 0.01, 0.03]}


def make_bench_sweep(root: Path, runs: int = 1000) -> Path:
    """A synthetic sweep with ``runs`` runs (a multiple of the 100-configuration grid's size)."""
    from .synthetic import make_sweep

    n_configs = 1
    for v in GRID.values():
        n_configs *= len(v)
    seeds = range(max(1, runs // n_configs))
    sweep = Path(root) / "multirun" / "2026-11-26" / "10-00-00"
    make_sweep(sweep, GRID, seeds=seeds, outer_steps=12000, eval_every=100, with_adaptation=True,
               with_params=True)
    return sweep


def make_long_run(root: Path, rows: int) -> Path:
    """One completed run whose metrics.csv has ``rows`` evaluations (every step), written in
    blocks so that making it takes little memory."""
    import numpy as np

    from .. import metrics_csv, rundir
    from .synthetic import base_config, write_run

    run = Path(root) / "long"
    config = base_config(0)
    config["train"].update(outer_steps=rows, eval_every=1)
    write_run(run, config, [f"train.outer_steps={rows}", "train.eval_every=1"],
              summary={"status": rundir.COMPLETED, "steps": rows, "outer_steps": rows, "val_meta_objective": 0.1,
                       "val_mse": 0.2, "ms_per_step": 1.0, "wall_s": rows / 1000})
    rng = np.random.default_rng(0)

    def curve():  # rows in rundir.METRIC_COLUMNS order; a column not modelled here repeats the objective
        for start in range(1, rows + 1, 100_000):
            steps = np.arange(start, min(rows + 1, start + 100_000))
            val = 0.1 + 2.9 * np.exp(-3 * steps / rows) * np.exp(rng.normal(0, 0.05, len(steps)))
            named = {"step": steps, "val_meta_objective": val, "val_mse": 2 * val, "train_meta_objective": 1.1 * val,
                     "elapsed_s": steps / 1000}
            yield from zip(*(named.get(c, val).tolist() for c in rundir.METRIC_COLUMNS))

    metrics_csv.write_metrics(run, curve())
    return run


def report_in_child(path: Path, out: Path) -> tuple[int, float, float]:
    """(exit code, seconds, peak resident MB) of ``maml-sweep-report PATH --out OUT --quiet`` in a child."""
    t = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "maml_sweep.analysis.report_cli", str(path), "--out", str(out),
                           "--quiet"], stdout=subprocess.DEVNULL).returncode
    seconds = time.perf_counter() - t
    return code, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.tools.bench_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000, help="runs in the synthetic sweep (default 1000)")
    p.add_argument("--curve-rows", type=int, help="instead: one run with this many metrics.csv rows")
    p.add_argument("--dir", help="where to make the runs (default: a temp dir, removed afterwards)")
    args = p.parse_args(argv)

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="maml-sweep-bench-"))
    try:
        t = time.perf_counter()
        if args.curve_rows:
            path, what = make_long_run(root, args.curve_rows), f"1 run with {args.curve_rows} curve rows"
            target_s, target_mb = CURVE_TARGET_S, CURVE_TARGET_MB
        else:
            path, what = make_bench_sweep(root, args.runs), f"{args.runs} synthetic runs"
            target_s = next((s for n, s in RUN_TARGETS_S if args.runs <= n), RUN_TARGETS_S[-1][1])
            target_mb = None
        print(f"made {what} in {time.perf_counter() - t:.1f} s under {path}")
        code, seconds, peak_mb = report_in_child(path, root / "report")
        ok = code == 0 and seconds < target_s and (target_mb is None or peak_mb < target_mb)
        memory = f" = {peak_mb / target_mb:.2f} x the {target_mb:.0f} MB target" if target_mb else ""
        print(f"maml-sweep-report (load + aggregate + figures + report, child process): {seconds:.2f} s "
              f"= {seconds / target_s:.2f} x the {target_s:.0f} s target; peak resident {peak_mb:.0f} MB{memory} "
              f"(exit {code})")
        return 0 if ok else 1
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
