"""``maml-sweep -m sweep=optuna`` end to end (slow: real searches in subprocesses): a study that a
larger n_trials continues, Ctrl-C and continue, pruning that saves outer steps, paired seeds under
joblib, a quiet console, bad settings refused."""
import hashlib
import json
import math
import os
import signal

import pytest

optuna = pytest.importorskip("optuna", reason="the [hpo] extra (optuna) is not installed")

from conftest import LONG, TINY, run_cli, start_cli, summary_of, sweep_table, wait_for  # noqa: E402

pytestmark = pytest.mark.slow
STUDY = "maml_lr_search"  # conf/sweep/optuna.yaml


def trials(sweep_dir):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials


def fingerprint(run_dir):
    """Every file of a run directory with its modification time and content hash."""
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_larger_n_trials_continues_the_study_and_leaves_finished_runs_alone(tmp_path):
    args = ["-m", "sweep=optuna", *TINY, "hydra.sweep.dir=sweep"]
    first = run_cli([*args, "hydra.sweeper.n_trials=6"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {job: fingerprint(tmp_path / "sweep" / str(job)) for job in range(6)}
    again = run_cli([*args, "hydra.sweeper.n_trials=9"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = trials(tmp_path / "sweep")
    assert [t.number for t in study] == list(range(9)) and all(t.state.is_finished() for t in study)
    assert {job: fingerprint(tmp_path / "sweep" / str(job)) for job in range(6)} == before
    assert [json.loads((tmp_path / "sweep" / str(j) / ".hydra" / "trial.json").read_text())["trial"]
            for j in range(9)] == list(range(9))
    for out in (first, again):  # a quiet console: no plugin chatter, no colour codes
        assert "alembic" not in out.stderr + out.stdout and "\x1b[" not in out.stderr + out.stdout
    assert not any("\x1b[" in p.read_text() for p in (tmp_path / "sweep").rglob("*.log"))
    straight = run_cli(["-m", "sweep=optuna", *TINY, "hydra.sweep.dir=straight", "hydra.sweeper.n_trials=9"],
                       cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert [(t.params, t.state, t.value) for t in trials(tmp_path / "straight")] == [
        (t.params, t.state, t.value) for t in study]  # the same search as one command of 9 trials


def test_a_search_interrupted_with_sigint_continues_where_it_stopped(tmp_path):
    args = ["-m", "sweep=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner=none", *LONG,
            "hydra.sweep.dir=sweep"]
    proc = start_cli(args, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "sweep" / "1" / "checkpoint.npz").exists(), what="trial 1's first checkpoint")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    stopped = summary_of(tmp_path / "sweep" / "1")
    assert stopped["status"] == "interrupted" and 0 < stopped["steps"] < 3000
    assert [t.state.name for t in trials(tmp_path / "sweep")] == ["COMPLETE", "RUNNING"]
    done_first = fingerprint(tmp_path / "sweep" / "0")
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = trials(tmp_path / "sweep")
    assert [t.state.name for t in study] == ["COMPLETE"] * 3
    assert fingerprint(tmp_path / "sweep" / "0") == done_first
    resumed = summary_of(tmp_path / "sweep" / "1")
    assert resumed["status"] == "completed" and study[1].value == resumed["val_mse"]
    assert "resuming" in (tmp_path / "sweep" / "1" / "maml_sweep.log").read_text()


def test_ctrl_c_under_joblib_checkpoints_the_trials_in_flight_and_the_rerun_resumes_them(tmp_path):
    args = ["-m", "sweep=optuna", "hydra/launcher=joblib", "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner=none",
            *LONG, "hydra.sweep.dir=sweep"]
    proc = start_cli(args, cwd=tmp_path, start_new_session=True)
    wait_for(lambda: all((tmp_path / "sweep" / j / "checkpoint.npz").exists() for j in "01"), what="two checkpoints")
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    assert proc.wait(timeout=120) == 130
    assert [t.state.name for t in trials(tmp_path / "sweep")] == ["RUNNING", "RUNNING"]
    steps = [summary_of(tmp_path / "sweep" / j)["steps"] for j in "01"]
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = trials(tmp_path / "sweep")
    assert [t.state.name for t in study] == ["COMPLETE"] * 3
    for j, step in zip("01", steps):
        assert f"from step {step}" in (tmp_path / "sweep" / j / "maml_sweep.log").read_text()


def test_pruning_stops_losing_trials_and_saves_outer_steps(tmp_path):
    steps = 200
    proc = run_cli(["-m", "sweep=optuna", "hydra.sweeper.n_trials=14", "hydra.sweeper.sampler=random",
                    "algorithm.inner_lr=tag(log, interval(0.00001, 0.5))", f"train.outer_steps={steps}",
                    "train.eval_every=20", "eval.val_every=20", "model.hidden=[8,8]", "task.num_points=20",
                    "eval.num_tasks=20", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = trials(tmp_path / "sweep")
    table = sweep_table(tmp_path / "sweep")
    pruned = [t.number for t in study if t.state.name == "PRUNED"]
    assert pruned and [int(r["job"]) for r in table if r["status"] == "pruned"] == pruned
    for n in pruned:
        summary = summary_of(tmp_path / "sweep" / str(n))
        assert summary["status"] == "pruned" and summary["steps"] == max(study[n].intermediate_values) < steps
    spent = sum(int(r["steps"]) for r in table)
    assert spent < len(study) * steps
    best = min(t.value for t in study if t.state.name == "COMPLETE")
    assert all(study[n].intermediate_values[max(study[n].intermediate_values)] > best for n in pruned)


def test_paired_seeds_under_joblib_average_and_a_diverging_seed_scores_inf(tmp_path):
    proc = run_cli(["-m", "sweep=optuna", "hydra/launcher=joblib", "hydra.sweeper.seeds=2", "hydra.sweeper.n_trials=4",
                    "hydra.sweeper.pruner=none", "hydra.sweeper.sampler=random", "seed=3",
                    "algorithm.inner_lr=choice(0.1, 50)", "optimizer.lr=0.01", "algorithm.inner_steps=1", *TINY,
                    "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = trials(tmp_path / "sweep")
    assert len(study) == 4 and {t.params["algorithm.inner_lr"] for t in study} == {0.1, 50}
    for t in study:
        runs = [summary_of(tmp_path / "sweep" / str(2 * t.number + k)) for k in (0, 1)]
        assert [r["seed"] for r in runs] == [3, 4] and t.user_attrs["seeds"] == [3, 4]
        if t.params["algorithm.inner_lr"] == 50:
            assert "diverged" in {r["status"] for r in runs} and t.value == math.inf
        else:
            assert t.value == pytest.approx((runs[0]["val_mse"] + runs[1]["val_mse"]) / 2)


def test_bad_search_settings_are_refused_in_one_line_before_any_study(tmp_path):
    proc = run_cli(["-m", "sweep=optuna", "hydra.sweeper.pruner=early", "+hydra.sweeper.direction=maximize",
                    "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "maml-sweep: error: hydra.sweeper.direction is not a setting of the search: use study_name, storage, "
        "sampler, seed, pruner, n_trials, n_jobs, seeds, params",
        "maml-sweep: error: hydra.sweeper.pruner=early: choose one of none, median, successive_halving, hyperband, "
        "wilcoxon"]
    assert not (tmp_path / "sweep" / "optuna.db").exists() and not (tmp_path / "sweep" / "0").exists()
