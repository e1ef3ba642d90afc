"""Bad input gets one line naming the key or override and what is allowed, never a traceback, and
nothing written: missing groups, integers that overflow, sweep overrides no sweeper can run, Ctrl-C
while the command is still importing, a killed joblib worker (issue 18, item 8)."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import LONG, compose, run_cli, start_cli, wait_for
from omegaconf import open_dict

from maml_sweep.config import SCHEMAS, check_values
from maml_sweep.sweep import sweep_problems


@pytest.mark.parametrize("group, some", [("model", "model=mlp"), ("task", "task=sine, task=steps"),
                                         ("optimizer", "optimizer=adam, optimizer=momentum, optimizer=sgd")])
def test_a_removed_group_is_named_with_its_options(group, some):
    errors = check_values(compose([f"~{group}"]))
    options = ", ".join(f"{group}={o}" for g, o in sorted(SCHEMAS) if g == group)  # registered ones included
    assert errors == [f"{group} is missing: choose one of {options}"] and all(o in options for o in some.split(", "))


def test_a_removed_top_level_key_is_named():
    assert check_values(compose(["~seed"])) == ["seed is missing: Config needs it"]


@pytest.mark.parametrize("override, key", [(f"train.outer_steps={10**400}", "train.outer_steps"),
                                           (f"model.hidden=[8,{10**30}]", "model.hidden[1]"),
                                           (f"eval.num_tasks=-{2**63}", "eval.num_tasks")])
def test_integers_beyond_64_bits_are_named_not_overflowed(override, key):
    errors = check_values(compose([override]))
    assert len(errors) == 1 and errors[0].startswith(f"{key}=") and "below 2**63" in errors[0]


def with_command_line(cfg, overrides):
    """``cfg`` (composed with its hydra node) as if ``overrides`` had been given to ``maml-sweep -m``."""
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(overrides)
    return cfg


@pytest.mark.parametrize("override, says", [
    ("seed=range(0,3,0)", "seed=range(0,3,0) is not allowed: range() arg 3 must not be zero"),
    ("seed=interval(0,3)", "seed=interval(0,3) is not allowed: the basic sweeper expands lists"),
    ("algorithm.inner_lr=tag(log,choice(0.1,0.2))", None),
    ("seed=0,1,2", None), ("seed=range(3)", None),
])
def test_the_basic_sweepers_overrides_are_checked_before_the_sweep_starts(override, says):
    problems = sweep_problems(with_command_line(compose([], hydra=True), [override]))
    assert (problems == []) if says is None else (len(problems) == 1 and problems[0].startswith(says))


@pytest.mark.parametrize("override, says", [
    ("algorithm.inner_lr=interval(1,0)", "algorithm.inner_lr: interval(1.0, 0.0) needs start < end"),
    ("algorithm.inner_steps=range(0,3,0)", "algorithm.inner_steps: range(0, 3, 0): range() arg 3 must not be zero"),
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0: a whole number >= 1"),
])
def test_a_searchs_settings_and_space_are_checked_before_the_sweep_starts(override, says):
    pytest.importorskip("optuna", reason="the search needs the [hpo] extra (optuna)")
    hydra_key = override.startswith("hydra.")
    cfg = compose(["sweep=optuna", *([override] if hydra_key else [])], hydra=True)
    problems = sweep_problems(with_command_line(cfg, [] if hydra_key else [override]))
    assert len(problems) == 1 and problems[0].startswith(says)


def test_ctrl_c_while_importing_is_one_line_and_exit_130(tmp_path):
    """SIGINT once numpy's library is mapped: the command is importing (Hydra, numpy, autograd take
    most of a second), past Python's own start-up, and the run has not begun."""
    proc = start_cli(["train.outer_steps=5", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    wait_for(lambda: "numpy" in maps.read_text() or proc.poll() is not None, what="the imports", interval=0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    assert err.strip() == "maml-sweep: interrupted before anything started"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["seed=range(0,3,0)"], ["seed=interval(0,3)"],
                                  ["sweep=optuna", "algorithm.inner_lr=interval(1,0)"]])
def test_a_sweep_refused_for_its_syntax_writes_nothing_and_prints_no_resume_line(tmp_path, args):
    if "sweep=optuna" in args:
        pytest.importorskip("optuna", reason="the search needs the [hpo] extra (optuna)")
    done = run_cli(["-m", *args, "train.outer_steps=5", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maml-sweep: error: "), done.stderr
    assert "resume" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_killed_joblib_worker_is_one_line_not_a_traceback(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = start_cli(["-m", "seed=0,1,2,3", *LONG, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                      f"hydra.sweep.dir={sweep_dir}"], tmp_path, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: (sweep_dir / "0" / "metrics.csv").exists(), what="job 0 training")
        workers = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        os.kill(int([w for w in workers if int(w) != proc.pid][-1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "Traceback" not in err and "TerminatedWorkerError" not in err, err
    assert "maml-sweep: error: a joblib worker process died (exit codes {SIGKILL(-9)}" in err
    assert "resume the sweep with:" in err
