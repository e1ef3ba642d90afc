"""A real single-node SLURM cluster: a ``hydra/launcher=slurm`` sweep of two jobs, one preempted
with SIGUSR2, requeued, resumed, and bit-identical to a local run. Needs root and apt (installs
Debian's slurmctld, slurmd, slurm-client and munge); skips with the reason otherwise."""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, start_cli, subprocess_env, wait_for
from services import slurm_cluster

RUN = ["train.outer_steps=5000", "train.eval_every=100", "eval.num_tasks=50"]


def _squeue(env) -> dict[str, tuple[str, str]]:
    """Array task id (``7_1``) -> (state, reason)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], env=env, capture_output=True, text=True).stdout
    return {p[0]: (p[1], p[2]) for p in (line.split() for line in out.splitlines()) if len(p) == 3}


def _rows(path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.slow
def test_slurm_sweep_survives_preemption_bit_identically(tmp_path):
    with slurm_cluster(tmp_path / "slurm") as env:
        sweep = tmp_path / "sweep"
        proc = start_cli(["-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug", "seed=0,1", *RUN,
                          f"hydra.sweep.dir={sweep}"], tmp_path,
                         env={**subprocess_env(), "SLURM_CONF": env["SLURM_CONF"]},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # Preempt job 1 once it has logged a few evaluations (and so has a checkpoint).
            wait_for(lambda: _rows(sweep / "1" / "metrics.csv") >= 3, 120, "job 1 to train", interval=0.5)
            [task] = [t for t in _squeue(env) if t.endswith("_1")]
            subprocess.run(["scancel", "-s", "USR2", task], env=env, check=True)
            # submitit requeues it; SLURM holds a requeued job ~2 min (BeginTime): start it now.
            wait_for(lambda: _squeue(env).get(task, ("", ""))[1] == "BeginTime", 60, f"{task} to be requeued",
                     interval=0.5)
            subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], env=env, check=True,
                           capture_output=True)
            out, _ = proc.communicate(timeout=240)
        except BaseException:
            proc.kill()
            out, _ = proc.communicate()
            print(out[-5000:])  # shown by pytest on failure
            for log in sorted(sweep.glob("**/*.log")) + sorted(sweep.glob(".submitit/*/*.err")):
                print(f"--- {log}\n{log.read_text()[-2000:]}")
            raise
        assert proc.returncode == 0, out[-3000:]
        restarts = subprocess.run(["scontrol", "show", "job", task], env=env, capture_output=True, text=True).stdout
        assert "Restarts=1" in restarts, restarts

    assert "Bypassing sacct error" not in out
    assert out.count("SLURM job accounting is not available") == 1
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["status"]) == ["completed", "completed"]

    # The preempted job ends exactly where an uninterrupted local run does.
    local = run_cli(["seed=1", *RUN, "hydra.run.dir=local"], cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    slurm_params, local_params = np.load(sweep / "1" / "params.npz"), np.load(tmp_path / "local" / "params.npz")
    assert sorted(slurm_params.files) == sorted(local_params.files)
    for name in local_params.files:
        assert np.array_equal(slurm_params[name], local_params[name]), name
    a = pd.read_csv(sweep / "1" / "metrics.csv").drop(columns="elapsed_s")
    b = pd.read_csv(tmp_path / "local" / "metrics.csv").drop(columns="elapsed_s")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert len(a) == 50
