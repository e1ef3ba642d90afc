"""``hydra/launcher=lockstep``: configs composed once per group give Hydra's very configs; a lockstep
sweep gives the files of the same sweep under joblib (runs one by one in their own workers); a diverged
run stops alone; Ctrl-C/SIGTERM stop it like a joblib sweep (exit 130/143, true statuses, no worker
left after 10 s) and the resume command finishes every run to the numbers of an uninterrupted run.
The sweeps are subprocesses: ``slow``."""
import csv
import json
import os
import shlex
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import LONG, TINY, curve, run_cli, start_cli, summary_of, sweep_table, wait_for
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf
from test_sweep_stops import alive, holders

from maml_sweep import rundir
from maml_sweep.config import register_configs
from maml_sweep.lockstep import GroupComposer, check_n_jobs

TIMINGS = ("wall_s", "ms_per_step", "setup_s", "eval_s", "writes_s")  # summary.json keys that are clock readings


@pytest.fixture(scope="module")
def loader():
    """Hydra's config loader and the master config of a multirun, as the sweeper has them."""
    register_configs()
    with initialize_config_module("maml_sweep.conf", version_base="1.3"):
        inner = GlobalHydra.instance().config_loader()
        yield inner, inner.load_configuration("config", ["hydra.sweep.dir=sw"], run_mode=RunMode.MULTIRUN)


JOBS = [  # two groups (maml, anil), values of every kind, a null and a list; then a job of the first group again
    ["seed=0", "optimizer.lr=0.01", "train.figures=false", "model.hidden=[8,8]", "algorithm=maml"],
    ["seed=7", "optimizer.lr=1e-3", "train.figures=null", "model.hidden=[4,4,4]", "algorithm=maml"],
    ["seed=1", "optimizer.lr=0.5", "train.figures=true", "model.hidden=[8,8]", "algorithm=anil"],
    ["seed=2", "optimizer.lr=0.01", "train.figures=false", "model.hidden=[8,8]", "algorithm=anil"],
    ["seed=3", "optimizer.lr=2", "train.figures=false", "model.hidden=[16]", "algorithm=maml"],
]


def test_configs_composed_once_per_group_are_hydras_own(loader):
    inner, master = loader
    composer = GroupComposer(inner)
    for job in JOBS:
        ours = composer.load_sweep_config(master, job)
        theirs = inner.load_sweep_config(master, job)
        assert OmegaConf.to_container(ours) == OmegaConf.to_container(theirs), job
        assert OmegaConf.to_yaml(ours.hydra.overrides) == OmegaConf.to_yaml(theirs.hydra.overrides)
        resolved = lambda c: {k: OmegaConf.select(c, k) if not OmegaConf.is_config(c[k])
                              else OmegaConf.to_container(c[k], resolve=True) for k in c if k != "hydra"}
        assert resolved(ours) == resolved(theirs)  # (hydra's own node needs the job number the launcher sets)
        OmegaConf.set_readonly(ours, True)  # as run_job leaves a job's config: the next copies are not
    assert composer.composed == 2  # one per group


@pytest.mark.parametrize("first,bad", [("seed=0", "seed=abc"), ("optimizer.lr=0.1", "optimizer.lr=[1,2]"),
                                       ("train.figures=false", "train.figures=maybe"), ("seed=0", "algorithm=nosuch")])
def test_a_job_the_copy_cannot_make_gets_hydras_own_error(loader, first, bad):
    inner, master = loader
    composer = GroupComposer(inner)
    composer.load_sweep_config(master, [first])  # the group's template
    with pytest.raises(Exception) as ours:
        composer.load_sweep_config(master, [bad])
    with pytest.raises(Exception) as theirs:
        inner.load_sweep_config(master, [bad])
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


@pytest.mark.parametrize("value,ok", [(-1, True), (1, True), (4, True), (0, False), (-2, False), (1.5, False),
                                      (True, False), ("2", False)])
def test_n_jobs_is_a_count_or_minus_one(value, ok):
    assert (check_n_jobs(value) is None) == ok
    if not ok:
        assert f"hydra.launcher.n_jobs={value}" in check_n_jobs(value)


def job_dirs(sweep):
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def metrics_without_clock(run):
    with open(run / rundir.METRICS) as f:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(f)]


def summary_without_clock(run):
    return {k: v for k, v in summary_of(run).items() if k not in TIMINGS}


def arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_a_lockstep_sweep_gives_the_files_of_the_same_sweep_run_one_by_one(tmp_path):
    grid = ["-m", "seed=0,1,2", "optimizer.lr=0.001,0.01", "algorithm=maml,anil", *TINY]
    one_by_one = run_cli([*grid, "hydra/launcher=joblib", "hydra.sweep.dir=joblib"], cwd=tmp_path)
    lockstep = run_cli([*grid, "hydra/launcher=lockstep", "hydra.sweep.dir=lockstep"], cwd=tmp_path)
    assert one_by_one.returncode == 0 and lockstep.returncode == 0, lockstep.stderr
    a, b = job_dirs(tmp_path / "joblib"), job_dirs(tmp_path / "lockstep")
    assert [p.name for p in a] == [p.name for p in b] == [str(i) for i in range(12)]
    for x, y in zip(a, b):
        assert sorted(p.name for p in x.iterdir()) == sorted(p.name for p in y.iterdir())
        assert summary_without_clock(x) == summary_without_clock(y)
        assert summary_of(y)["status"] == "completed"
        assert metrics_without_clock(x) == metrics_without_clock(y)
        for name in (rundir.PARAMS, rundir.TEST_MSE):  # bit-identical: the same code on the same numbers
            p, q = arrays(x / name), arrays(y / name)
            assert p.keys() == q.keys() and all(np.array_equal(p[k], q[k]) for k in p)
        for record in ("config.yaml", "overrides.yaml"):
            assert (x / ".hydra" / record).read_text() == (y / ".hydra" / record).read_text()
    clockless = lambda rows: [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]
    assert clockless(sweep_table(tmp_path / "joblib")) == clockless(sweep_table(tmp_path / "lockstep"))
    jobs = lambda out: sorted(ln.split("] ", 1)[1] for ln in out.splitlines() if ln.startswith("["))
    assert jobs(one_by_one.stdout) == jobs(lockstep.stdout) and len(jobs(lockstep.stdout)) == 12
    assert "report: maml-sweep-report lockstep" in lockstep.stdout


@pytest.mark.slow
def test_a_diverging_run_stops_alone_and_the_lockstep_sweep_exits_0(tmp_path):
    proc = run_cli(["-m", "algorithm.inner_lr=0.1,50,0.2", *TINY, "hydra/launcher=lockstep",
                    "hydra.launcher.n_jobs=1", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ok, bad, ok2 = (summary_of(p) for p in job_dirs(tmp_path / "sweep"))
    assert ok["status"] == ok2["status"] == "completed" and ok2["steps"] == ok2["outer_steps"]
    assert bad["status"] == "diverged" and bad["diverged_step"] >= 1
    assert [r["status"] for r in sweep_table(tmp_path / "sweep")] == ["completed", "diverged", "completed"]
    pids = {json.loads((p / rundir.LOCK).read_text())["pid"] for p in job_dirs(tmp_path / "sweep")}
    assert len(pids) == 1  # the three runs, one after another, in one worker process (n_jobs=1)


@pytest.mark.slow
def test_a_bad_n_jobs_is_one_line_and_exit_2(tmp_path):
    proc = run_cli(["-m", "seed=0,1", *TINY, "hydra/launcher=lockstep", "hydra.launcher.n_jobs=0",
                    "hydra.sweep.dir=sweep"], cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("maml-sweep: error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines == ["maml-sweep: error: hydra.launcher.n_jobs=0: a whole number >= 1, or -1 for every core"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted LONG runs of seeds 0 and 1, each alone."""
    root = tmp_path_factory.mktemp("straight")
    for seed in (0, 1):
        assert run_cli([*LONG, f"seed={seed}", f"hydra.run.dir=run{seed}"], cwd=root).returncode == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("how,code", [("SIGINT to the group", 130), ("SIGTERM to the parent", 143)])
def test_a_stopped_lockstep_sweep_leaves_true_statuses_no_worker_and_resumes_per_run(tmp_path, straight, how, code):
    args = ["-m", "seed=0,1,2,3", *LONG, "hydra/launcher=lockstep", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    proc = start_cli(args, tmp_path, start_new_session=True, stderr=subprocess.PIPE, text=True)
    sweep = tmp_path / "sweep"
    wait_for(lambda: all((sweep / j / rundir.CHECKPOINT).exists() for j in ("0", "1")), what="two jobs running")
    workers = holders(sweep)
    sig = signal.SIGINT if "SIGINT" in how else signal.SIGTERM
    os.killpg(proc.pid, sig) if "group" in how else os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.startswith("maml-sweep:")]
    assert proc.returncode == code and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].endswith("hydra.sweep.dir=sweep"), err
    rows = sweep_table(sweep)
    assert [r["job"] for r in rows] == sorted(p.name for p in job_dirs(sweep))
    assert {r["status"] for r in rows} <= {"interrupted", "completed"} and "interrupted" in {r["status"] for r in rows}
    assert len(rows) <= 3  # no job started after the stop (a third only if one ended just before)
    for r in rows:  # each status is what its directory holds, and a checkpoint backs every interrupted one
        assert summary_of(sweep / r["job"])["status"] == r["status"]
        assert r["status"] == "completed" or (sweep / r["job"] / rundir.CHECKPOINT).exists()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not [p for p in workers if alive(p)], "workers outlived the sweep by more than 10 s"
    argv = shlex.split(lines[0].split(" with: ", 1)[1])
    rerun = run_cli(argv[3:] if argv[:3] == ["python", "-m", "maml_sweep"] else argv[1:], cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert [r["status"] for r in sweep_table(sweep)] == ["completed"] * 4
    for seed in (0, 1):
        assert curve(sweep / str(seed)) == curve(straight / f"run{seed}")
        p, q = arrays(sweep / str(seed) / rundir.PARAMS), arrays(straight / f"run{seed}" / rundir.PARAMS)
        assert all(np.array_equal(p[k], q[k]) for k in p)
