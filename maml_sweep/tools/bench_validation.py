"""Benchmark: the cost of the shared validation (``val_mse``) in the default run.

    python -m maml_sweep.tools.bench_validation [--steps 12000] [--repeats 2]

Trains the default config (the notebook's run) in one process with the trainer as it is and with
a reference trainer whose validation computes only the notebook's ``val_meta_objective`` (what
the trainer did before ``val_mse``), alternating, in temporary directories; prints the wall time
of each (best of ``--repeats``) and the ratio, with the load average at start and end.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time

from hydra import compose, initialize_config_module

from .. import rundir, train
from ..config import register_configs
from .bench import loadavg


class WithoutSharedValidation(train.Trainer):
    """The reference: validation on the run's own validation tasks only."""

    def validate(self, state: dict) -> dict:
        return {"val_meta_objective": self.algorithm.objective(self.model, state.params, state.val_tasks,
                                                               self.inner),
                "val_mse": math.nan}


def time_run(cfg, trainer_class) -> float:
    """Wall seconds of one complete run (training, validation, test evaluation, figure)."""
    with tempfile.TemporaryDirectory() as out:
        original = train.Trainer
        train.Trainer = trainer_class
        try:
            t0 = time.perf_counter()
            summary = train.run(cfg, out)
            elapsed = time.perf_counter() - t0
        finally:
            train.Trainer = original
    assert summary["status"] == rundir.COMPLETED, summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12000, help="outer steps (the default run: 12000)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    register_configs()
    with initialize_config_module("maml_sweep.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"train.outer_steps={args.steps}"])
    print(f"{loadavg()} at start", flush=True)
    before, after = [], []
    for _ in range(args.repeats):
        before.append(time_run(cfg, WithoutSharedValidation))
        after.append(time_run(cfg, train.Trainer))
    b, a = min(before), min(after)
    print(f"default run, {args.steps} outer steps, {cfg.eval.val_tasks} shared validation tasks every "
          f"{cfg.eval.val_every} steps; best of {args.repeats}")
    print(f"without shared validation  {b:7.2f} s")
    print(f"with shared validation     {a:7.2f} s")
    print(f"ratio {a / b:.3f} (cost {100 * (a / b - 1):+.1f}%)")
    print(f"{loadavg()} at end")


if __name__ == "__main__":
    main()
