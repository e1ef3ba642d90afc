"""The run-directory contract through the real command (subprocesses, so all slow): two processes
racing for one directory, interrupts at evaluation with the printed resume command, a default
DATE/TIME run resumed by that command, refused and failed jobs in a multirun, a full disk, a killed
joblib worker."""
import csv
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import LONG, TINY, run_cli, start_cli, sweep_table, wait_for

pytestmark = pytest.mark.slow

SMALL = [o for o in TINY if not o.startswith("train.outer_steps=")]  # each test sets its own length


def start(args, cwd, **popen):
    """:func:`conftest.start_cli` with the output kept (text), for ``communicate()``."""
    return start_cli(args, cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def resume_args(stderr: str) -> list[str]:
    """The arguments of the resume command printed on the interrupt line (after the program name)."""
    line = [ln for ln in stderr.splitlines() if " with: " in ln][-1]
    argv = shlex.split(line.split(" with: ", 1)[1])
    return argv[3:] if argv[:3] == ["python", "-m", "maml_sweep"] else argv[1:]


def test_two_processes_racing_for_one_directory_never_mix_files(tmp_path):
    """Two configs started at once into one hydra.run.dir, many times: one runs, the other is
    refused in one line, and every file in the directory belongs to the one that ran."""
    tries, refusals = 8, {}
    for i in range(tries):
        run_dir = tmp_path / f"race{i}"
        procs = [start([*SMALL, "seed=0", "train.outer_steps=24", f"hydra.run.dir={run_dir}"], tmp_path),
                 start([*SMALL, "seed=1", "train.outer_steps=48", f"hydra.run.dir={run_dir}"], tmp_path)]
        outs = [p.communicate(timeout=300) for p in procs]
        codes = [p.returncode for p in procs]
        assert sorted(codes) == [0, 2], outs
        err = outs[codes.index(2)][1].strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        kind = "in use" if " is in use by " in err else "other config" if "another config" in err else err
        refusals[kind] = refusals.get(kind, 0) + 1
        cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        summary = read_json(run_dir / "summary.json")
        with open(run_dir / "metrics.csv") as f:
            steps = [int(r["step"]) for r in csv.DictReader(f)]
        assert summary["status"] == "completed" and summary["seed"] == cfg["seed"]
        assert summary["outer_steps"] == cfg["train"]["outer_steps"] == steps[-1] == summary["steps"]
        assert steps == list(range(8, steps[-1] + 1, 8))
        assert f"seed={cfg['seed']}" in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    print(f"race: {tries} tries, refusals {refusals}")
    assert set(refusals) <= {"in use", "other config"}


def test_ctrl_c_during_evaluation_prints_one_line_with_the_resume_command(tmp_path):
    args = [*SMALL, "train.outer_steps=24", "eval.num_tasks=5000", "eval.max_steps=20", "hydra.run.dir=run"]
    proc = start(args, tmp_path)
    wait_for(lambda: (read_json(tmp_path / "run" / "summary.json") or {}).get("steps") == 24)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    summary = read_json(tmp_path / "run" / "summary.json")
    assert proc.returncode == 130 and summary["status"] == "interrupted" and summary["steps"] == 24
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
    assert "stopped at once by SIGINT at step 24/24" in err and "hydra.run.dir=run" in err
    rerun = run_cli(resume_args(err), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "completed" and summary["ms_per_step"] > 0


def test_ctrl_c_held_down_until_exit_prints_one_line(tmp_path):
    """A Ctrl-C every half millisecond until the process is gone: a second one during the stop, the
    goodbye or the interpreter's shutdown (where Python resets handlers to the default) changes nothing."""
    proc = start([*LONG, "hydra.run.dir=run"], tmp_path)
    wait_for(lambda: (tmp_path / "run" / "checkpoint.npz").exists())
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.0005)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err and "KeyboardInterrupt" not in err
    assert len(err.strip().splitlines()) == 1 and "resume with: " in err and "hydra.run.dir=run" in err
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "interrupted"


def test_a_default_date_time_run_resumes_in_its_own_directory_by_the_printed_command(tmp_path):
    proc = start(LONG, tmp_path)
    wait_for(lambda: list(tmp_path.glob("outputs/runs/*/*/checkpoint.npz")))
    run_dir = list(tmp_path.glob("outputs/runs/*/*"))[0]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143  # 128 + SIGTERM
    assert f"hydra.run.dir={run_dir.relative_to(tmp_path)}" in err
    rerun = run_cli(resume_args(err), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert list(tmp_path.glob("outputs/runs/*/*")) == [run_dir]  # no new directory
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["ms_per_step"] > 0


def test_refused_and_failed_jobs_in_a_multirun_print_one_line_and_count_as_failed(tmp_path):
    assert run_cli(["-m", "seed=0", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path).returncode == 0
    (tmp_path / "sweep" / "multirun.yaml").unlink()  # no sweep record: each job is checked by itself
    before = (tmp_path / "sweep" / "0" / "summary.json").read_bytes()
    proc = run_cli(["-m", "seed=5,6", "optimizer.lr=0.01,-1", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("maml-sweep: error: ")]
    assert len(errors) == 3  # job 0 refused, jobs 1 and 3 bad lr
    assert "job 0 (seed=5 optimizer.lr=0.01 " in errors[0] and "holds a run of another config" in errors[0]
    assert "3 of 4 runs failed (jobs 0, 1, 3" in proc.stderr
    assert (tmp_path / "sweep" / "0" / "summary.json").read_bytes() == before
    assert [r["status"] for r in sweep_table(tmp_path / "sweep")] == ["failed", "failed", "completed", "failed"]
    assert "sweep: 4 runs (1 completed, 3 failed)" in proc.stdout + proc.stderr


def test_a_completed_run_is_skipped_on_a_full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mount.stderr.strip()}")
    try:
        assert run_cli([*TINY, f"hydra.run.dir={disk / 'run'}"], cwd=tmp_path).returncode == 0
        with open(disk / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        before = {p: p.read_bytes() for p in (disk / "run").rglob("*") if p.is_file() and p.suffix != ".log"}
        proc = run_cli([*TINY, f"hydra.run.dir={disk / 'run'}"], cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert {p: p.read_bytes() for p in before} == before
        fresh = run_cli([*TINY, f"hydra.run.dir={disk / 'new'}"], cwd=tmp_path)  # needs to write: fails cleanly
        assert fresh.returncode != 0 and "Traceback" not in fresh.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_killed_joblib_worker_leaves_true_states_and_the_rerun_finishes_the_sweep(tmp_path):
    args = ["-m", "seed=0,1", *LONG, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    proc = start(args, tmp_path)
    sweep = tmp_path / "sweep"
    wait_for(lambda: all((sweep / j / "checkpoint.npz").exists() for j in ("0", "1")))
    victim = read_json(sweep / "1" / ".run.lock")["pid"]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "the sweep stopped early" in err and "resume the sweep with: " in err
    statuses = {r["job"]: r["status"] for r in sweep_table(sweep)}
    assert statuses["1"] == "killed" and statuses["0"] in ("completed", "interrupted", "killed")
    rerun = run_cli(resume_args(err), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert [r["status"] for r in sweep_table(sweep)] == ["completed", "completed"]


def test_ctrl_c_in_a_joblib_sweep_prints_one_line_that_resumes_the_sweep(tmp_path):
    args = ["-m", "seed=0,1", *LONG, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    proc = start(args, tmp_path, start_new_session=True)
    sweep = tmp_path / "sweep"
    wait_for(lambda: all((sweep / j / "checkpoint.npz").exists() for j in ("0", "1")))
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if not ln.startswith("[")]  # log lines aside
    assert proc.returncode == 130 and "Traceback" not in err and len(lines) == 1
    # the jobs stop first (one line from the sweep's end) or the launcher does (one line at exit)
    assert "resume the sweep with: " in lines[0] and lines[0].endswith("hydra.sweep.dir=sweep")
    assert {r["status"] for r in sweep_table(sweep)} <= {"interrupted", "completed", "killed"}
    rerun = run_cli(resume_args(lines[0]), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert [r["status"] for r in sweep_table(sweep)] == ["completed", "completed"]
