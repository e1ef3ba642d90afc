"""Blow-ups of trained runs on fresh, distinct test tasks (for the paper table's exact binomial CI).

    python -m maml_sweep.tools.fresh_blowups SWEEP_OR_RUN_DIR [...] [--tasks 10000] > blowups.csv

For each completed run: its trained init (``params.npz``) adapted on ``--tasks`` fresh tasks, the
test stream of ``eval.seed`` = :data:`FRESH_EVAL_SEED` + the run's seed (so runs of different seeds
see different tasks, and none is in the run's own test bank), with the run's shots, query points
and evaluation inner loop; prints CSV rows ``path,seed,tasks,blowups_k1,blowups_k5,blowups_k10``
(:func:`maml_sweep.stats.blown_up`), with progress on stderr. The runs are not changed.
``python -m maml_sweep.tools.paper SWEEP --fresh blowups.csv`` reads it.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from .. import evaluate, rundir, rundir_read, stats
from ..components import run_config
from ..config import EvalConfig
from ..safe_text import csv_cell
from ..train import Trainer

FRESH_EVAL_SEED = 1000  # fresh tasks for run seed s: the test stream of eval.seed = FRESH_EVAL_SEED + s
STEPS = tuple(EvalConfig().report_steps)  # k = 1, 5, 10: the schema's report steps
CHUNK = 2000            # tasks evaluated at a time (bounded memory)
MAX_TASKS = 1_000_000


def fresh_blowups(run_dir: Path, num_tasks: int, steps=STEPS) -> np.ndarray:
    """Blown-up counts (len(steps),) of the run's trained init on ``num_tasks`` fresh test tasks."""
    cfg = run_config(run_dir)
    cfg = OmegaConf.merge(cfg, {"eval": {"seed": FRESH_EVAL_SEED + int(cfg.seed), "num_tasks": num_tasks}})
    params = rundir.load_params(Path(run_dir) / rundir.PARAMS)
    trainer = Trainer(cfg, Path(run_dir), "")
    bank = evaluate.test_bank(trainer.tasks, cfg.task, cfg.eval)
    inner = evaluate.eval_inner(trainer.inner, cfg.eval)
    counts = np.zeros(len(steps), dtype=int)
    with np.errstate(all="ignore"):  # diverging tasks overflow: that is what is counted
        for start in range(0, num_tasks, CHUNK):
            mse = trainer.algorithm.adaptation_mse(trainer.model, params, bank[start:start + CHUNK], inner)
            counts += stats.blown_up(mse[:, list(steps)]).sum(axis=0)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.tools.fresh_blowups", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=Path, help="run directories, or sweep directories holding them")
    p.add_argument("--tasks", type=int, default=10000, help="fresh tasks per run (default 10000)")
    args = p.parse_args(argv)
    if not 1 <= args.tasks <= MAX_TASKS:
        print(f"fresh_blowups: error: --tasks must be an integer in 1..{MAX_TASKS:,}, got {args.tasks}",
              file=sys.stderr)
        return 2
    runs = sorted({s.parent for path in args.paths for s in ([path / rundir.SUMMARY] if (path / rundir.SUMMARY).exists()
                                                             else path.glob(f"*/{rundir.SUMMARY}"))})
    done = [r for r in runs if (rundir.read_summary(r) or {}).get("status") == rundir.COMPLETED]
    if not done:
        print(f"fresh_blowups: error: no completed runs in {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["path", "seed", "tasks", *(f"blowups_k{k}" for k in STEPS)])
    t0 = time.perf_counter()
    for i, run in enumerate(done, 1):
        seed = int(rundir_read.read_config(run).get("seed", 0))
        out.writerow([csv_cell(str(run)), seed, args.tasks, *fresh_blowups(run, args.tasks)])
        sys.stdout.flush()
        rate = i / (time.perf_counter() - t0)
        print(f"fresh_blowups: {i}/{len(done)} runs  {rate * 60:.1f} runs/min  ETA {(len(done) - i) / rate:.0f} s",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
