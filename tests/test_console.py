"""What a sweep and a single run print: a 4-run sweep fits in 30 lines and ends with its directory, its
best runs and the report command; the jobs' step lines stay in their log files unless -v; a single run
ends with its test results and the report command; sweep_summary.csv carries the test statistics."""
import io
import json
import re

import pytest
from conftest import TINY, run_cli, summary_of, sweep_table

from maml_sweep import rundir
from maml_sweep.console import SweepConsole, run_end_lines
from maml_sweep.tools.synthetic import base_config, write_run

STEP_LINE = re.compile(r"step \d+/\d+ +val_meta_objective")


def test_a_4_run_sweep_prints_at_most_30_lines_and_ends_with_where_to_look(tmp_path):
    proc = run_cli(["-m", "task.bins=3,6", "seed=0,1", *TINY, "hydra.sweep.dir=s"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(lines) <= 30, lines
    assert lines[0] == "sweep: 4 runs into s; each run logs into its own directory (-v also prints those lines here)"
    jobs = [line for line in lines if line.startswith("[")]
    assert [line.split()[:4] for line in jobs] == [[f"[{n + 1}/4]", "job", str(n), "completed"] for n in range(4)]
    for n, line in enumerate(jobs):  # each job: its val_mse, its test MSE at every report step, its swept keys
        s = summary_of(tmp_path / "s" / str(n))
        assert f"val_mse {s['val_mse']:.4g}  test_mse k1 {s['test_mse_k1']:.4g} k5 {s['test_mse_k5']:.4g} " \
               f"k10 {s['test_mse_k10']:.4g}  task.bins={3 if n < 2 else 6} seed={n % 2}" in line
    assert not any(STEP_LINE.search(line) for line in lines)  # step lines are in the logs only
    assert any(STEP_LINE.search(line) for line in (tmp_path / "s" / "0" / "maml_sweep.log").read_text().splitlines())
    assert "sweep directory: s  (one row per run: sweep_summary.csv)" in lines
    best = lines.index("best by val_mse per task.bins:")
    assert lines[best + 1].split() == ["job", "task.bins", "seed", "val_mse", "test_mse_k1", "test_mse_k5",
                                       "test_mse_k10"]
    assert [line.split()[1] for line in lines[best + 2:best + 4]] == ["3", "6"]
    assert lines[-1] == "report: maml-sweep-report s"

    table = sweep_table(tmp_path / "s")
    assert {"task.bins", "seed", "test_mse_k5", "test_median_k10", "test_blowup_k1"} <= set(table[0])
    assert not {"train.outer_steps", "model.hidden", "task.num_points"} & set(table[0])  # the same in every job
    assert float(table[3]["test_mse_k5"]) == summary_of(tmp_path / "s" / "3")["test_mse_k5"]


@pytest.mark.slow
def test_verbose_puts_the_jobs_step_lines_on_the_console(tmp_path):
    proc = run_cli(["-m", "seed=0,1", *TINY, "-v", "hydra.sweep.dir=s"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sum(bool(STEP_LINE.search(line)) for line in proc.stdout.splitlines()) == 2 * 3
    assert "-v" not in json.dumps(sweep_table(tmp_path / "s"))  # not an override of the runs


@pytest.mark.slow
def test_a_single_run_ends_with_its_test_results_and_the_report_command(tmp_path, monkeypatch):
    proc = run_cli([*TINY, "hydra.run.dir=r"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    monkeypatch.chdir(tmp_path)
    s = summary_of(tmp_path / "r")
    tail = [line.split(" - ", 1)[1] for line in proc.stdout.splitlines()[-4:]]
    assert tail == run_end_lines(tmp_path / "r", s)
    assert tail[0] == f"completed at step 24/24 ({s['ms_per_step']:.2f} ms per outer step); val_mse {s['val_mse']:.4g}"
    assert f"k=1 {s['test_mse_k1']:.4g}  k=5 {s['test_mse_k5']:.4g}  k=10 {s['test_mse_k10']:.4g}" in tail[1]
    assert tail[2:] == ["run directory: r", "report: maml-sweep-report r"]


def test_job_lines_and_progress_say_each_outcome(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep, config = tmp_path / "sweep", base_config(0)
    tests = {"test_mse_k1": 0.5, "test_mse_k5": 0.25}
    outcomes = [{"status": "completed", "val_mse": 0.125, **tests}, {"status": "diverged", "diverged_step": 7},
                {"status": "failed", "error": "optimizer.lr=0: must be > 0"}, None]
    for job, summary in enumerate(outcomes):
        write_run(sweep / str(job), config, [f"seed={job}", "train.outer_steps=24"],
                  summary=summary and {"config_hash": "x", "steps": 7, **summary})
    out = io.StringIO()
    console = SweepConsole(sweep, 5, ["seed"], lambda: {"3": "holds another config's run"}, out=out, err=io.StringIO())
    console.poll()
    assert out.getvalue().splitlines() == [
        "[1/5] job 0 completed  val_mse 0.125  test_mse k1 0.5 k5 0.25  seed=0",
        "[2/5] job 1 diverged  at step 7  seed=1",
        "[3/5] job 2 failed  optimizer.lr=0: must be > 0  seed=2",
        "[4/5] job 3 failed  refused: holds another config's run  seed=3"]
    console.poll()  # each job is told once
    assert len(out.getvalue().splitlines()) == 4
    assert console.progress_line(console.started + 60).startswith(
        "sweep 4/5 ended (1 completed, 1 diverged, 2 failed) | 0 running | 4.0 runs/min | ETA 15s")
    assert rundir.FAILED in console.ended.values()
