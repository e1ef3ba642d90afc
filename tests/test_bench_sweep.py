"""bench_sweep's per-job breakdown of a sweep's time, on a sweep folder made by hand."""
import json
import os

import pytest

from maml_sweep import rundir
from maml_sweep.tools.bench_sweep import breakdown


def fake_job(folder, started, ended, setup_s, wall_s, eval_s, writes_s):
    """A finished run directory whose record is written at ``started`` and summary at ``ended`` (epoch s)."""
    folder.mkdir(parents=True)
    record = folder / rundir.HYDRA_CONFIG
    record.parent.mkdir()
    record.write_text("seed: 0\n")
    summary = folder / rundir.SUMMARY
    summary.write_text(json.dumps({"status": rundir.COMPLETED, "setup_s": setup_s, "wall_s": wall_s,
                                   "eval_s": eval_s, "writes_s": writes_s}))
    os.utime(record, (started, started))
    os.utime(summary, (ended, ended))
    return folder


def test_breakdown_splits_the_jobs_phase_per_job_and_keeps_start_up_and_end_apart(tmp_path):
    t = 1_700_000_000.0  # two workers, two jobs each, 2 s apiece: jobs' phase 104..108, 8 core-seconds
    jobs = [fake_job(tmp_path / str(i), t + 104 + 2 * (i // 2), t + 106 + 2 * (i // 2), 0.1, 1.0, 0.3, 0.05)
            for i in range(4)]
    out = breakdown(jobs, started=t + 100, ended=t + 109, cores=2, compose_s=0.15)
    assert out["start"] == pytest.approx(4.0) and out["end"] == pytest.approx(1.0)
    parts = out["parts"]
    assert [parts[k] for k in ("setup_s", "wall_s", "eval_s", "writes_s", "compose_s")] == \
        pytest.approx([0.1, 1.0, 0.3, 0.05, 0.15])
    assert parts["rest_s"] == pytest.approx(2.0 - 1.6)  # 8 core-seconds / 4 jobs, less what is named


@pytest.mark.slow
def test_bench_sweep_times_each_launcher_against_the_ideal(tmp_path):
    from conftest import run_module

    proc = run_module("maml_sweep.tools.bench_sweep", ["--runs", "2", "--steps", "4", "--repeats", "1", "--override",
                                                 "eval.num_tasks=10", "--override", "model.hidden=[8,8]"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if " sweep of 2 runs x 4 steps" in line]
    assert [line.split(" sweep")[0] for line in rows] == ["joblib", "lockstep"]
    assert all("x the ideal" in line and "load average" in line for line in rows)
