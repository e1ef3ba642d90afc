"""Benchmark: the same 8-run sweep with Hydra's basic (serial) and joblib (all cores) launchers.

    python -m maml_sweep.bench_sweep [--runs 8] [--steps 3000]

Prints the wall time of each and their ratio (ideal on 2 cores: 0.5). Both sweeps run in one
process's lifetime, one after the other, in a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def time_sweep(launcher: str | None, runs: int, steps: int, workdir: str) -> float:
    """Seconds for one multirun of ``runs`` seeds (basic launcher when ``launcher`` is None)."""
    args = [sys.executable, "-m", "maml_sweep", "-m", f"seed=range(0,{runs})",
            f"train.outer_steps={steps}", f"train.eval_every={max(steps // 10, 1)}",
            f"hydra.sweep.dir={workdir}/{launcher or 'basic'}"]
    if launcher:
        args.append(f"hydra/launcher={launcher}")
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3000, help="outer steps per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        serial = time_sweep(None, args.runs, args.steps, workdir)
        parallel = time_sweep("joblib", args.runs, args.steps, workdir)
    print(f"{args.runs} runs x {args.steps} outer steps on {os.cpu_count()} cores")
    print(f"basic launcher (serial)   {serial:7.1f} s")
    print(f"joblib launcher (n_jobs=-1) {parallel:5.1f} s")
    print(f"ratio joblib/serial        {parallel / serial:6.2f}")


if __name__ == "__main__":
    main()
