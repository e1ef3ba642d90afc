"""Speed benchmark: make a synthetic 1,000-run sweep directory, then time loading it and writing its report.

    python -m maml_sweep.analysis.bench [--runs 1000] [--dir DIR]

The sweep is task.bins (5) x algorithm.inner_lr (5) x optimizer.lr (4) x seeds, 120 evaluations
per run (the default 12,000 steps logged every 100), with params.npz and adaptation.csv, in the
run-directory format. The target is under 30 s for 1,000 runs; the ratio is printed.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

TARGET_S = 30.0
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.analysis.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000, help="runs in the synthetic sweep (default 1000)")
    p.add_argument("--dir", help="where to make the sweep (default: a temp dir, removed afterwards)")
    args = p.parse_args(argv)

    from .load import load_runs
    from .report_cli import main as report_main

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="maml-sweep-bench-"))
    try:
        t = time.perf_counter()
        sweep = make_bench_sweep(root, args.runs)
        made = time.perf_counter() - t
        print(f"made {args.runs} synthetic runs in {made:.1f} s under {sweep}")

        t = time.perf_counter()
        rs = load_runs(sweep)
        load_s = time.perf_counter() - t
        print(f"load_runs: {len(rs.runs)} runs, {len(rs.curves)} curve rows, "
              f"{len(rs.adaptation)} adaptation rows in {load_s:.2f} s")

        t = time.perf_counter()
        code = report_main([str(sweep), "--out", str(root / "report"), "--quiet"])
        total = time.perf_counter() - t
        print(f"maml-sweep-report (load + aggregate + figures + report): {total:.2f} s "
              f"= {total / TARGET_S:.2f} x the {TARGET_S:.0f} s target (exit {code})")
        return code if total < TARGET_S else 1
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
