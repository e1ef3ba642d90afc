"""Multiruns: launchers, Optuna, divergence, failure, kill and resume, sweep_summary.csv.

Every test here but the first starts real sweeps in subprocesses: they are ``slow`` (.ci/run runs them)."""
import json
import signal
import time

import numpy as np
import pytest
import yaml
from conftest import LONG, TINY, curve, run_cli, start_cli, summary_of, sweep_table, wait_for

from maml_sweep.console import progress
from maml_sweep.sweep import PLAN, planned_jobs, summary_rows


def summaries(sweep_dir):
    runs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [summary_of(p) for p in runs]


def test_planned_jobs_expand_presets_and_command_line_like_the_sweeper(compose_cfg):
    grid = compose_cfg(["sweep=grid", "task.bins=3"], hydra=True)
    assert planned_jobs(grid) == 3 * 2 * 1  # the command line's task.bins replaces the preset's 3,6,12
    assert planned_jobs(compose_cfg(["sweep=algorithms"], hydra=True)) == 7 * 3
    assert planned_jobs(compose_cfg(["sweep=optuna", "hydra.sweeper.n_trials=9"], hydra=True)) == 9


@pytest.mark.slow
def test_joblib_launcher_gives_the_basic_launchers_numbers(tmp_path):
    args = ["-m", "seed=0,1", *TINY]
    assert run_cli([*args, "hydra.sweep.dir=basic"], cwd=tmp_path).returncode == 0
    proc = run_cli([*args, "hydra/launcher=joblib", "hydra.sweep.dir=joblib"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for job in ("0", "1"):
        assert curve(tmp_path / "joblib" / job) == curve(tmp_path / "basic" / job)
    assert [r["status"] for r in sweep_table(tmp_path / "joblib")] == ["completed", "completed"]


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=submitit_local", "seed=0,1", *TINY, "hydra.sweep.dir=sweep"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [s["status"] for s in summaries(tmp_path / "sweep")] == ["completed", "completed"]
    assert (tmp_path / "sweep" / ".submitit").is_dir()
    assert [r["seed"] for r in sweep_table(tmp_path / "sweep")] == ["0", "1"]


@pytest.mark.slow
def test_optuna_preset_runs_trials_and_reports_the_best(tmp_path):
    proc = run_cli(["-m", "sweep=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1", *TINY,
                    "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = summaries(tmp_path / "sweep")
    assert len(runs) == 3 and all(s["status"] == "completed" for s in runs)
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(s["val_mse"] for s in runs))  # the shared validation MSE
    assert set(best["best_params"]) == {"algorithm.inner_lr", "optimizer.lr", "algorithm.inner_steps"}


@pytest.mark.slow
def test_a_diverging_run_is_marked_and_the_sweep_exits_0(tmp_path):
    proc = run_cli(["-m", "algorithm.inner_lr=0.1,50", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "sweep" / PLAN).read_text())
    p = progress(summary_rows(tmp_path / "sweep"), plan, time.time())
    assert (p["ended"], p["planned"], p["counts"], p["eta_s"]) == (2, 2, {"completed": 1, "diverged": 1}, 0)
    ok, bad = summaries(tmp_path / "sweep")
    assert ok["status"] == "completed"
    assert bad["status"] == "diverged" and bad["diverged_step"] >= 1 and bad["val_meta_objective"] is None
    table = sweep_table(tmp_path / "sweep")
    assert [(r["algorithm.inner_lr"], r["status"]) for r in table] == [("0.1", "completed"), ("50", "diverged")]


@pytest.mark.slow
def test_a_failing_run_does_not_stop_the_sweep_and_is_in_the_summary(tmp_path):
    proc = run_cli(["-m", "optimizer.lr=-1,0.01", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 1
    failed, ok = summaries(tmp_path / "sweep")
    assert failed["status"] == "failed" and failed["error"].startswith("optimizer.lr=-1")
    assert ok["status"] == "completed"
    assert [r["status"] for r in sweep_table(tmp_path / "sweep")] == ["failed", "completed"]


def start_and_stop(args, tmp_path, path, sig):
    """Start ``maml-sweep args``, send ``sig`` once ``path`` exists; returns the exit code."""
    proc = start_cli(args, tmp_path)
    wait_for(path.exists, what=str(path))
    proc.send_signal(sig)
    return proc.wait(60)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted LONG runs, made once for the module: a single run ("run") and a two-seed
    sweep ("sweep"); each test compares its cut-and-resumed copy with these."""
    root = tmp_path_factory.mktemp("straight")
    assert run_cli([*LONG, "hydra.run.dir=run"], cwd=root).returncode == 0
    assert run_cli(["-m", "seed=0,1", *LONG, "hydra.sweep.dir=sweep"], cwd=root).returncode == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM, signal.SIGUSR2])
def test_a_killed_or_interrupted_run_resumes_to_identical_results(tmp_path, straight, sig):
    code = start_and_stop([*LONG, "hydra.run.dir=cut"], tmp_path, tmp_path / "cut" / "checkpoint.npz", sig)
    status = json.loads((tmp_path / "cut" / "summary.json").read_text())["status"]
    # 130 SIGINT, 143 SIGTERM, 140 SIGUSR2
    assert (code, status) == ((-9, "running") if sig == signal.SIGKILL else (128 + sig, "interrupted"))
    assert run_cli([*LONG, "hydra.run.dir=cut"], cwd=tmp_path).returncode == 0
    assert curve(tmp_path / "cut") == curve(straight / "run")
    with np.load(tmp_path / "cut" / "params.npz") as a, np.load(straight / "run" / "params.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.slow
def test_rerunning_a_killed_sweep_skips_finished_runs_and_resumes_the_rest(tmp_path, straight):
    args = ["-m", "seed=0,1", *LONG]
    assert start_and_stop([*args, "hydra.sweep.dir=cut"], tmp_path, tmp_path / "cut" / "1" / "checkpoint.npz",
                          signal.SIGKILL) == -9
    first = (tmp_path / "cut" / "0" / "summary.json").read_text()
    assert json.loads(first)["status"] == "completed"
    assert run_cli([*args, "hydra.sweep.dir=cut"], cwd=tmp_path).returncode == 0
    assert (tmp_path / "cut" / "0" / "summary.json").read_text() == first  # skipped, untouched
    for job in ("0", "1"):
        assert curve(tmp_path / "cut" / job) == curve(straight / "sweep" / job)
    assert [r["status"] for r in sweep_table(tmp_path / "cut")] == ["completed", "completed"]


@pytest.mark.slow
def test_sigterm_stops_a_serial_sweep_and_the_rerun_finishes_it(tmp_path, straight):
    args = ["-m", "seed=0,1", *LONG]
    assert start_and_stop([*args, "hydra.sweep.dir=cut"], tmp_path, tmp_path / "cut" / "0" / "checkpoint.npz",
                          signal.SIGTERM) == 143
    assert json.loads((tmp_path / "cut" / "0" / "summary.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "cut" / "1").exists()  # the sweep stopped; job 1 never started
    assert [r["status"] for r in sweep_table(tmp_path / "cut")] == ["interrupted"]
    assert run_cli([*args, "hydra.sweep.dir=cut"], cwd=tmp_path).returncode == 0
    for job in ("0", "1"):
        assert curve(tmp_path / "cut" / job) == curve(straight / "sweep" / job)


@pytest.mark.slow
def test_a_changed_config_in_an_existing_sweep_is_refused_and_nothing_is_overwritten(tmp_path):
    assert run_cli(["-m", "seed=0", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path).returncode == 0
    sweep, run_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    files = [run_dir / "summary.json", *(run_dir / ".hydra").iterdir(), sweep / "multirun.yaml", sweep / PLAN,
             sweep / "sweep_summary.csv"]
    before = {p: p.read_bytes() for p in files}
    proc = run_cli(["-m", "seed=5", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 2 and "holds another sweep (overrides seed=0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert {p: p.read_bytes() for p in before} == before
