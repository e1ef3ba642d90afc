"""A search through a real single-node SLURM cluster (slow; needs root and apt: installs Debian's
slurmctld, slurmd, slurm-client and munge, skips with the reason otherwise): every trial is a SLURM
job, the study is the SQLite file in the sweep directory, two trials in flight."""
from __future__ import annotations

import json
import subprocess

import pytest

optuna = pytest.importorskip("optuna", reason="the [hpo] extra (optuna) is not installed")

from conftest import TINY, start_cli, subprocess_env  # noqa: E402
from services import slurm_cluster  # noqa: E402

pytestmark = pytest.mark.slow


def test_a_search_runs_its_trials_as_slurm_jobs_with_the_study_on_the_shared_directory(tmp_path):
    sweep = tmp_path / "sweep"
    with slurm_cluster(tmp_path / "slurm") as env:
        proc = start_cli(["-m", "sweep=optuna", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
                          "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *TINY, f"hydra.sweep.dir={sweep}"],
                         tmp_path, env={**subprocess_env(), "SLURM_CONF": env["SLURM_CONF"]},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=600)
        except BaseException:
            proc.kill()
            out, _ = proc.communicate()
            print(out[-5000:])
            raise
    assert proc.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="maml_lr_search", storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    assert [t.number for t in study] == [0, 1, 2, 3] and all(t.state.is_finished() for t in study)
    assert [json.loads((sweep / str(n) / ".hydra" / "trial.json").read_text())["trial"]
            for n in range(4)] == [0, 1, 2, 3]
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    assert len(submitted) == 4  # one SLURM job per trial
