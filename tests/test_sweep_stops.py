"""Ctrl-C or SIGTERM to a joblib sweep (the process group, or the sweep's process alone) stops every
job, starts no new one, leaves true statuses and sweep_summary.csv, prints the resume line and exits
130/143; after a SIGKILL of the sweep's process its workers stop their jobs and exit. No worker
outlives the sweep's process by more than 10 s. Slow: real sweeps in subprocesses."""
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import LONG, run_cli, start_cli, sweep_table, wait_for

from maml_sweep import rundir, rundir_read

pytestmark = pytest.mark.slow

JOBS = "seed=0,1,2,3,4,5"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def holders(sweep: Path) -> list[int]:
    """The PIDs that took the jobs' run locks (the joblib workers)."""
    import json
    pids = []
    for lock in sweep.glob(f"*/{rundir.LOCK}"):
        try:
            pids.append(json.loads(lock.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pass
    return sorted(set(pids))


@pytest.mark.parametrize("how,code", [("SIGINT to the group", 130), ("SIGTERM to the group", 143),
                                      ("SIGTERM to the parent", 143), ("SIGINT to the parent", 130)])
def test_a_stopped_joblib_sweep_stops_every_job_starts_none_and_leaves_no_worker(tmp_path, how, code):
    args = ["-m", JOBS, *LONG, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    proc = start_cli(args, tmp_path, start_new_session=True, stderr=subprocess.PIPE, text=True)
    sweep = tmp_path / "sweep"
    wait_for(lambda: all((sweep / j / rundir.CHECKPOINT).exists() for j in ("0", "1")), what="two jobs running")
    workers = holders(sweep)
    sig = signal.SIGINT if "SIGINT" in how else signal.SIGTERM
    t0 = time.monotonic()
    os.killpg(proc.pid, sig) if "group" in how else os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    stopped_s = time.monotonic() - t0
    lines = [ln for ln in err.splitlines() if ln.startswith("maml-sweep:")]
    assert proc.returncode == code and "Traceback" not in err, err
    assert len(lines) == 1 and "resume the sweep with: " in lines[0] and lines[0].endswith("hydra.sweep.dir=sweep")
    rows = sweep_table(sweep)
    started = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert started == [r["job"] for r in rows]  # every job directory there is in the table...
    assert len(started) <= 3  # ...and none started after the stop (a third only if one ended just before)
    assert {r["status"] for r in rows} <= {"interrupted", "completed"}, rows
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if alive(p)], "workers outlived the sweep by more than 10 s"
    print(f"{how}: exit {proc.returncode} {stopped_s:.1f} s after the signal; jobs {started}")
    argv = shlex.split(lines[0].split(" with: ", 1)[1])
    rerun = run_cli(argv[3:] if argv[:3] == ["python", "-m", "maml_sweep"] else argv[1:], cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert [r["status"] for r in sweep_table(sweep)] == ["completed"] * 6


@pytest.mark.parametrize("launcher", ["joblib", "lockstep"])
def test_workers_of_a_killed_sweep_process_stop_their_jobs_and_exit_within_10_s(tmp_path, launcher):
    args = ["-m", JOBS, *LONG, f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    proc = start_cli(args, tmp_path, start_new_session=True)
    sweep = tmp_path / "sweep"
    wait_for(lambda: all((sweep / j / rundir.CHECKPOINT).exists() for j in ("0", "1")), what="two jobs running")
    workers = holders(sweep)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    t0 = time.monotonic()
    while any(alive(p) for p in workers) and time.monotonic() < t0 + 10:
        time.sleep(0.1)
    assert workers and not [p for p in workers if alive(p)], "workers outlived the killed sweep by more than 10 s"
    print(f"SIGKILL of the sweep's process: {len(workers)} workers gone {time.monotonic() - t0:.1f} s later")
    for job in ("0", "1"):  # each job wrote its final word before its worker went
        assert rundir_read.read_state(sweep / job).status in ("interrupted", "completed")
