"""The run directory's safety contract, in-process: the lock, refusal of foreign or damaged
directories before any write, pickle-free checkpoints, a final status on every exit (exceptions and
real signals at each phase), temp-file cleanup, resume after an interrupt."""
import json
import os
import pickle
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY, compose, curve, summary_of

from maml_sweep import aside, checkpoint, console, rundir, rundir_read, runlock, sweep, train
from maml_sweep.config import ConfigError


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose(TINY)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def straight(tiny_cfg, tmp_path_factory):
    """A completed TINY run, never interrupted: the reference for resumes."""
    run_dir = tmp_path_factory.mktemp("straight")
    assert train.run(tiny_cfg, run_dir)["status"] == "completed"
    return run_dir


@pytest.fixture
def straight_copy(straight, tmp_path) -> Path:
    """A private copy of the straight run (``tmp_path/run``), to refuse, lock or skip."""
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    return run_dir


def interrupted_run(cfg, run_dir, monkeypatch):
    """A run stopped by a real SIGTERM during outer step 16 (checkpoint at that step)."""
    validate = train.Trainer.validate
    phase_hook(monkeypatch, "training", lambda: os.kill(os.getpid(), signal.SIGTERM))
    result = train.run(cfg, run_dir)
    monkeypatch.setattr(train.Trainer, "validate", validate)
    assert result["status"] == "interrupted" and result["steps"] == 16
    return run_dir


# --- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_round_trip_is_exact_and_loads_without_pickle(tmp_path):
    legacy = np.random.RandomState(3)
    legacy.normal()  # cached gaussian in the state
    pcg = np.random.Generator(np.random.PCG64(2**100))
    tree = {"step": 7, "params": {"W1": np.arange(6.0).reshape(2, 3), "b3": np.float64(0.5)},
            "opt_state": {"m": {"W1": np.ones((2, 3), np.float32)}, "step": 3}, "train_s": 1.25,
            "legacy": legacy.get_state(), "pcg": pcg.bit_generator.state, "none": None,
            "snapshots": [(1, {"W1": np.zeros(2)})], "name": "x"}
    checkpoint.save_checkpoint(tmp_path, tree)
    back = checkpoint.load_checkpoint(tmp_path)
    with np.load(tmp_path / rundir.CHECKPOINT, allow_pickle=False) as data:
        assert "__meta__" in data.files
    assert back["params"]["b3"].dtype == np.float64 and isinstance(back["params"]["b3"], np.float64)
    assert back["opt_state"]["m"]["W1"].dtype == np.float32 and back["snapshots"][0][0] == 1
    restored = np.random.RandomState()
    restored.set_state(back["legacy"])
    assert restored.normal() == legacy.normal() and back["pcg"] == pcg.bit_generator.state
    assert back["name"] == "x" and back["none"] is None and back["train_s"] == 1.25 and back["step"] == 7


class Planted:
    """Unpickling this creates ``path`` (what a crafted checkpoint would do with os.system)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name,status", [("checkpoint.pkl", None), ("checkpoint.pkl", "interrupted"),
                                         ("checkpoint.npz", "interrupted"), ("checkpoint.npz", None)])
def test_a_crafted_pickle_in_a_run_directory_is_never_unpickled(tiny_cfg, tmp_path, monkeypatch, name, status):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if status:  # a run of this config interrupted, then its checkpoint replaced
        interrupted_run(tiny_cfg, run_dir, monkeypatch)
        (run_dir / rundir.CHECKPOINT).unlink()
    else:  # a run's lock and nothing else
        (run_dir / rundir.LOCK).touch()
    sentinel = tmp_path / "pwned"
    (run_dir / name).write_bytes(pickle.dumps(Planted(sentinel)))
    with pytest.raises(rundir.RunDirError) as err:
        train.run(tiny_cfg, run_dir)
    assert not sentinel.exists()
    assert name in str(err.value) and len(str(err.value).splitlines()) == 1


# --- refusal before any write ------------------------------------------------------------------

@pytest.mark.parametrize("files", [
    {"metrics.csv": b"my,own\n1,2\n"},  # a user's file with one of our names, no run lock
    {"notes.txt": b"hello"},
    {"summary.json": b'{"foo": 1}'},  # a foreign summary without status
    {".run.lock": b"", "summary.json": b'{"config_hash": "x"}', "data.bin": b"\x00\x01"},
])
def test_a_foreign_directory_is_refused_and_left_byte_identical(tiny_cfg, tmp_path, files):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    before = snapshot(tmp_path)
    with pytest.raises(rundir.RunDirError) as err:
        train.run(tiny_cfg, tmp_path, on_accept=lambda: pytest.fail("accepted a foreign directory"))
    assert "not a maml-sweep run" in str(err.value) and "\n" not in str(err.value)
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_another_configs_run_is_refused_untouched(tiny_cfg, compose_cfg, straight_copy):
    run_dir = straight_copy
    before = snapshot(run_dir)
    with pytest.raises(rundir.RunDirError, match="holds a run of another config"):
        train.run(compose_cfg([*TINY, "seed=1"]), run_dir)
    assert snapshot(run_dir) == before


# --- the lock ----------------------------------------------------------------------------------

def test_a_live_run_is_refused_naming_its_holder_and_readers_tell_live_from_dead(tiny_cfg, straight_copy):
    run_dir = straight_copy
    data = summary_of(run_dir)
    rundir.write_json(run_dir / rundir.SUMMARY, {**data, "status": "running"})
    before = snapshot(run_dir)
    assert rundir_read.read_state(run_dir).status == rundir.KILLED  # says running, lock free
    with runlock.RunLock(run_dir):
        assert runlock.is_live(run_dir) and rundir_read.read_state(run_dir).status == "running"
        with pytest.raises(rundir.RunDirBusy, match=f"in use by PID {os.getpid()} on host "):
            train.run(tiny_cfg, run_dir)
        with pytest.raises(rundir.RunDirBusy):
            aside.set_aside(run_dir / rundir.SUMMARY)
    assert not runlock.is_live(run_dir)
    assert snapshot(run_dir) == {**before, Path(rundir.LOCK): snapshot(run_dir)[Path(rundir.LOCK)]}


def test_sweep_rows_show_killed_refused_and_vanished_jobs_as_ended(straight, tmp_path):
    for job in ("0", "1", "2", "3"):
        shutil.copytree(straight, tmp_path / job)
    data = summary_of(straight)
    rundir.write_json(tmp_path / "0" / rundir.SUMMARY, {**data, "status": "running"})  # died
    (tmp_path / "1" / rundir.SUMMARY).unlink()  # died before its first summary
    sweep.record_refusal(tmp_path, 2, "holds a run of another config")
    with runlock.RunLock(tmp_path / "3"):
        rundir.write_json(tmp_path / "3" / rundir.SUMMARY, {**data, "status": "running"})
        during = [r["status"] for r in sweep.summary_rows(tmp_path)]
        rows = sweep.summary_rows(tmp_path, ended=True)
    ended = [r["status"] for r in rows]
    assert during == ["killed", "no_summary", "failed", "running"]
    assert ended == ["killed", "failed", "failed", "running"]
    plan = {"planned": 4, "started": 0.0}
    p = console.progress(rows, plan, 60.0)
    assert (p["ended"], p["counts"]) == (3, {"failed": 2, "killed": 1})


def test_a_search_worker_that_ends_fails_only_its_own_jobs_without_a_summary(straight, tmp_path):
    """Two search workers share a sweep directory: when one ends, the other's job whose directory
    Hydra just made (no lock, no summary yet) is still starting, not failed."""
    for job in ("0", "1"):
        shutil.copytree(straight, tmp_path / job)
        (tmp_path / job / rundir.SUMMARY).unlink()
    rows = sweep.summary_rows(tmp_path, ended={0})
    assert [r["status"] for r in rows] == ["failed", "no_summary"]


# --- damaged files -----------------------------------------------------------------------------

def damage_summary(run_dir, how):
    path = run_dir / rundir.SUMMARY
    text = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": text[: len(text) // 2], "garbage": b"\x89\xff\x00garbage",
                      "wrong type": b"[1, 2, 3]", "no status": json.dumps({"steps": 3}).encode()}[how])


def damage_checkpoint(run_dir, how, compose_cfg):
    path = run_dir / rundir.CHECKPOINT
    data = path.read_bytes()
    if how == "wrong shape":  # a sound file whose params do not fit the config
        tree = checkpoint.load_checkpoint(run_dir)
        tree["params"]["W1"] = np.zeros(3)
        checkpoint.save_checkpoint(run_dir, tree)
        return
    if how == "other version":
        tree = checkpoint.load_checkpoint(run_dir)
        arrays = {}
        header = {"format": checkpoint.CHECKPOINT_FORMAT, "version": 99, "state": checkpoint._encode(tree, arrays)}
        np.savez(path, __meta__=np.array(json.dumps(header)), **arrays)
        return
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(200)}[how])


@pytest.mark.parametrize("file,how", [  # two in the default suite, every case in .ci/run
    ("summary", "garbage"), ("checkpoint", "garbage"),
    *[pytest.param(f, h, marks=pytest.mark.slow) for f, h in [
        ("summary", "empty"), ("summary", "truncated"), ("summary", "wrong type"), ("summary", "no status"),
        ("checkpoint", "empty"), ("checkpoint", "truncated"), ("checkpoint", "wrong shape"),
        ("checkpoint", "other version")]],
])
def test_a_damaged_file_is_named_in_one_line_and_set_aside_starts_over(
        tiny_cfg, compose_cfg, straight, tmp_path, monkeypatch, file, how):
    run_dir = interrupted_run(tiny_cfg, tmp_path / "run", monkeypatch)
    (damage_summary if file == "summary" else lambda d, h: damage_checkpoint(d, h, compose_cfg))(run_dir, how)
    damaged = run_dir / (rundir.SUMMARY if file == "summary" else rundir.CHECKPOINT)
    content = damaged.read_bytes()
    for _ in range(2):  # the same clear message every time, not a crash
        with pytest.raises(rundir.RunDirError) as err:
            train.run(tiny_cfg, run_dir)
        message = str(err.value)
        assert "\n" not in message and f"{damaged} is damaged" in message
        assert f"maml-sweep-aside {damaged}" in message
    if how != "wrong shape":  # refused before acceptance: nothing written
        assert damaged.read_bytes() == content
    from maml_sweep.aside import main as aside
    assert aside([str(damaged)]) == 0
    kept = list((run_dir / rundir.ASIDE).iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == content and kept[0].name.endswith(damaged.name)
    assert train.run(tiny_cfg, run_dir)["status"] == "completed"
    assert curve(run_dir) == curve(straight)


# --- a final status on every exit --------------------------------------------------------------

class Boom(RuntimeError):
    pass


def phase_hook(monkeypatch, phase, action):
    """Make ``action()`` happen in ``phase``: start (building the trainer), training (step 16),
    evaluation (test bank) or final writes (params.npz)."""
    if phase == "start":
        original = train.Trainer.__init__

        def hooked(self, *a, **k):
            action()
            original(self, *a, **k)
        monkeypatch.setattr(train.Trainer, "__init__", hooked)
    elif phase == "training":
        original_direction = train.Trainer.validate

        def hooked(self, state):
            if state.step == 16:
                action()
            return original_direction(self, state)
        monkeypatch.setattr(train.Trainer, "validate", hooked)
    elif phase == "evaluation":
        monkeypatch.setattr(train.Trainer, "evaluate", lambda self, params: action())
    elif phase == "final writes":
        monkeypatch.setattr(rundir, "save_params", lambda *a, **k: action())


def raise_boom():
    raise Boom("disk on fire")


def send(sig):
    def action():
        os.kill(os.getpid(), sig)
        raise AssertionError("the signal should have stopped the run at once")
    return action


PHASE_STEPS = {"start": 0, "training": 16, "evaluation": 24, "final writes": 24}


@pytest.mark.parametrize("phase", list(PHASE_STEPS))
def test_an_exception_in_any_phase_leaves_status_failed_with_its_text(tiny_cfg, tmp_path, monkeypatch, phase):
    phase_hook(monkeypatch, phase, raise_boom)
    with pytest.raises(Boom):
        train.run(tiny_cfg, tmp_path)
    s = summary_of(tmp_path)
    assert s["status"] == "failed" and s["error"] == "Boom: disk on fire"
    # steps is the resume point, never ahead of the checkpoint: failing at step 16 leaves step 8's
    assert s["steps"] == (PHASE_STEPS[phase] if phase != "training" else 8)
    assert s["steps"] == checkpoint.load_checkpoint(tmp_path)["step"] if s["steps"] else True
    assert not runlock.is_live(tmp_path)


@pytest.mark.parametrize("phase,sig", [("start", signal.SIGTERM), ("training", signal.SIGINT),
                                       ("evaluation", signal.SIGINT), ("final writes", signal.SIGTERM)])
def test_a_signal_in_any_phase_leaves_status_interrupted_and_the_rerun_completes_identically(
        tiny_cfg, straight, tmp_path, monkeypatch, phase, sig):
    if phase == "training":  # inside the loop a first signal stops after the step, with a checkpoint
        phase_hook(monkeypatch, phase, lambda: os.kill(os.getpid(), sig))
    else:
        phase_hook(monkeypatch, phase, send(sig))
    returned = train.run(tiny_cfg, tmp_path)["status"]
    result = summary_of(tmp_path)
    assert returned == result["status"]
    assert result["status"] == "interrupted" and signal.Signals(sig).name in result["error"]
    assert result["steps"] == PHASE_STEPS[phase]
    monkeypatch.undo()
    resumed = train.run(tiny_cfg, tmp_path)
    assert resumed["status"] == "completed" and resumed["steps"] == 24
    assert resumed["ms_per_step"] and resumed["ms_per_step"] > 0  # also when no step was left to run
    assert curve(tmp_path) == curve(straight)
    with np.load(tmp_path / rundir.PARAMS) as a, np.load(straight / rundir.PARAMS) as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    # every summary value equals the uninterrupted run's (train_meta_objective included), times aside
    timing = {"wall_s", "ms_per_step", "setup_s", "eval_s", "writes_s"}
    expected = {k: v for k, v in summary_of(straight).items() if k not in timing}
    assert {k: v for k, v in summary_of(tmp_path).items() if k not in timing} == expected
    assert expected["train_meta_objective"] is not None


def test_a_second_signal_stops_at_once_and_the_last_checkpoint_is_the_resume_point(
        tiny_cfg, straight, tmp_path, monkeypatch):
    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    phase_hook(monkeypatch, "training", twice)
    result = train.run(tiny_cfg, tmp_path)
    assert result["status"] == "interrupted" and "at once" in result["error"] and result["steps"] == 8
    monkeypatch.undo()
    assert train.run(tiny_cfg, tmp_path)["status"] == "completed"
    assert curve(tmp_path) == curve(straight)


def test_a_second_signal_inside_a_checkpoint_write_stops_right_after_it(tiny_cfg, straight, tmp_path, monkeypatch):
    """Ctrl-C twice while the checkpoint's arrays are being written (inside numpy's zip writer): the
    write finishes, then the run stops at once, interrupted (not failed), and resumes to the same run."""
    original, calls = np.lib.format.write_array, []

    def write_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first checkpoint, mid-file
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)
    monkeypatch.setattr(np.lib.format, "write_array", write_array)
    result = train.run(tiny_cfg, tmp_path)
    assert result["status"] == "interrupted" and "at once" in result["error"] and result["steps"] == 8
    monkeypatch.undo()
    assert train.run(tiny_cfg, tmp_path)["status"] == "completed"
    assert curve(tmp_path) == curve(straight)


def test_summary_steps_are_current_at_every_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    seen = []
    original = train.Trainer.validate

    def spying(self, state):
        seen.append((state.step, summary_of(tmp_path)["steps"], summary_of(tmp_path)["status"]))
        return original(self, state)
    monkeypatch.setattr(train.Trainer, "validate", spying)
    train.run(tiny_cfg, tmp_path)
    assert seen[:3] == [(8, 0, "running"), (16, 8, "running"), (24, 16, "running")]


def test_summary_puts_each_phase_s_seconds_in_its_own_key(tmp_path, monkeypatch):
    """With a clock that moves only after hooked calls, set-up, loop, evaluation and final writes
    each get exactly their own seconds (what bench_sweep's per-job breakdown reads)."""
    now = [0.0]
    monkeypatch.setattr(train, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def then_wait(owner, name, seconds):
        original = getattr(owner, name)

        def hooked(*args, **kwargs):
            out = original(*args, **kwargs)
            now[0] += seconds
            return out
        monkeypatch.setattr(owner, name, hooked)
    then_wait(train.Trainer, "fresh_state", 2.0)
    then_wait(train.Trainer, "validate", 1.0)  # at steps 8, 16 and 24
    then_wait(train.Trainer, "evaluate", 5.0)
    then_wait(rundir, "save_params", 7.0)
    result = train.run(compose([*TINY, "train.figures=false"]), tmp_path)
    assert result == summary_of(tmp_path) and result["status"] == "completed"
    assert (result["setup_s"], result["wall_s"], result["eval_s"], result["writes_s"]) == (2.0, 3.0, 5.0, 7.0)


def test_a_bad_value_is_recorded_as_failed_after_acceptance(compose_cfg, tmp_path):
    with pytest.raises(ConfigError):
        train.run(compose_cfg([*TINY, "optimizer.lr=0"]), tmp_path)
    s = summary_of(tmp_path)
    assert s["status"] == "failed" and s["error"].startswith("optimizer.lr=") and s["config_hash"]


def test_temp_files_of_a_killed_write_are_removed_by_the_next_run(tiny_cfg, tmp_path, monkeypatch):
    run_dir = interrupted_run(tiny_cfg, tmp_path / "run", monkeypatch)
    orphans = [".checkpoint.tmp-k2j4h5g6.npz", ".validation_fits.tmp-abc_1234.png", ".summary.tmp-zzzzzzzz.json"]
    for name in orphans:
        (run_dir / name).write_bytes(b"half")
    assert train.run(tiny_cfg, run_dir)["status"] == "completed"
    assert not [n for n in orphans if (run_dir / n).exists()]
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_a_completed_run_is_skipped_without_writing(tiny_cfg, straight_copy):
    run_dir = straight_copy
    before = snapshot(run_dir)
    os.chmod(run_dir, 0o555)
    try:
        assert train.run(tiny_cfg, run_dir, on_accept=lambda: pytest.fail("skip must not record"))["status"] == \
            "completed"
    finally:
        os.chmod(run_dir, 0o755)
    assert snapshot(run_dir) == before


def test_the_resume_command_names_the_run_directory(tmp_path, monkeypatch):
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from maml_sweep.cli import resume_command
    monkeypatch.chdir(tmp_path)
    hc = OmegaConf.create({"mode": RunMode.RUN, "runtime": {"output_dir": str(tmp_path / "outputs/runs/d/t")},
                           "overrides": {"task": ["model.hidden=[8,8]", "seed=3"],
                                         "hydra": ["hydra.mode=RUN", "hydra/launcher=joblib"]}})
    monkeypatch.setattr("sys.argv", ["/somewhere/bin/maml-sweep"])
    assert resume_command(hc) == \
        "maml-sweep 'model.hidden=[8,8]' seed=3 hydra/launcher=joblib hydra.run.dir=outputs/runs/d/t"


def _hydra_dirs(run_dir, sweep_dir="unused", overrides=TINY):
    """The composed config of ``overrides`` with a ``hydra`` node naming these directories."""
    return compose([*overrides, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={sweep_dir}"], hydra=True)


@pytest.mark.parametrize("where, says", [("afile", "is a file"), ("afile/sub", "lies under the file"),
                                         ("ro/new", "is not writable")])
def test_a_run_dir_that_cannot_be_one_is_refused_in_one_line_before_hydra_creates_it(tmp_path, monkeypatch, capsys,
                                                                                      where, says):
    (tmp_path / "afile").write_text("mine\n")
    (tmp_path / "ro").mkdir()
    real_access = os.access  # root writes anywhere, so an unwritable folder is simulated
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("/ro") else real_access(p, mode))
    with pytest.raises(SystemExit) as stop:
        sweep.SweepSummary().on_run_start(_hydra_dirs(tmp_path / where))
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "hydra.run.dir=" in err[0] and says in err[0]
    assert (tmp_path / "afile").read_text() == "mine\n" and not (tmp_path / "ro" / "new").exists()
    with pytest.raises(SystemExit):
        sweep.SweepSummary().on_multirun_start(_hydra_dirs("unused", tmp_path / where))
    assert "hydra.sweep.dir=" in capsys.readouterr().err
    sweep.SweepSummary().on_run_start(_hydra_dirs(tmp_path / "fine" / "run"))  # a new directory is fine
