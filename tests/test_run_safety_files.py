"""A run reads and writes only regular files inside its own directory: a symbolic link, FIFO or
device in the place of any file a run opens is refused in one line naming it, nothing outside the
directory (nor inside it) changes, no read blocks, and ``maml-sweep-aside`` moves only a run's files."""
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY, compose, deadline, run_stopped_at

from maml_sweep import aside, checkpoint, components, metrics_csv, rundir, rundir_read, runlock, sweep, train

# Every name a run opens (its own files, Hydra's record and job log), with the reason it can be opened.
OPENED = [rundir.LOCK, ".hydra", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml",
          rundir.SUMMARY, rundir.METRICS, rundir.CHECKPOINT, rundir.PARAMS, rundir.TEST_MSE, rundir.ADAPTATION,
          rundir.FITS, "maml_sweep.log", rundir.ASIDE]


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose(TINY)


@pytest.fixture(scope="module")
def stopped(tiny_cfg, tmp_path_factory):
    """A TINY run stopped by SIGTERM at step 16 (resumable: a rerun would write every file)."""
    run_dir = run_stopped_at(tiny_cfg, tmp_path_factory.mktemp("stopped") / "run")
    (run_dir / ".hydra").mkdir()
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        (run_dir / ".hydra" / name).write_text("{}\n" if name != "overrides.yaml" else "[]\n")
    return run_dir


def tree(folder: Path) -> dict:
    """Every entry under ``folder``, links not followed: relative path -> bytes, link target or kind."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            key = p.relative_to(folder)
            out[key] = (("link", os.readlink(p)) if p.is_symlink() else ("dir",) if p.is_dir()
                        else p.read_bytes() if p.is_file() else ("special",))
    return out




def plant(run_dir: Path, name: str, kind: str, victim: Path) -> Path:
    """Put a ``kind`` (link to ``victim``, dangling link, FIFO) where ``run_dir/name`` is."""
    path = run_dir / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if kind == "link":
        path.symlink_to(victim)
    elif kind == "dangling":
        path.symlink_to(victim.parent / "nothing-here")
    else:
        os.mkfifo(path)
    return path


@pytest.mark.parametrize("name,kind", [(name, kind) for name in OPENED for kind in ("link", "dangling", "fifo")
                                       if not (kind == "fifo" and name in (".hydra", rundir.ASIDE))])  # folders
def test_a_link_or_fifo_in_place_of_any_run_file_is_refused_naming_it_and_nothing_changes(
        tiny_cfg, stopped, tmp_path, name, kind):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("dir" if name in (".hydra", rundir.ASIDE) else "file")
    if victim.name == "dir":
        victim.mkdir()
        (victim / "config.yaml").write_text("mine\n")
    else:
        victim.write_text("mine\n")
    path = plant(run_dir, name, kind, victim)
    before, outside_before = tree(run_dir), tree(outside)
    with deadline(20), pytest.raises(rundir.RunDirError) as err:
        train.run(tiny_cfg, run_dir)
    message = str(err.value)
    way_out = f"maml-sweep-aside {path}" if name != rundir.ASIDE else f"mv {path} "
    assert "\n" not in message and str(path) in message and way_out in message
    assert ("symbolic link" if kind != "fifo" else "FIFO") in message
    assert tree(run_dir) == before and tree(outside) == outside_before
    if name != rundir.ASIDE:  # the way out the message names: the link itself moves into .aside/
        assert aside.main([str(path)]) == 0
        assert tree(outside) == outside_before


def test_a_linked_lock_in_an_empty_directory_is_refused_and_its_target_kept(tiny_cfg, tmp_path):
    """The issue's case: ``mkdir d; ln -s /some/file d/.run.lock; maml-sweep hydra.run.dir=d``."""
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    run_dir = tmp_path / "d"
    run_dir.mkdir()
    (run_dir / rundir.LOCK).symlink_to(victim)
    with pytest.raises(rundir.RunDirError, match="symbolic link"):
        train.run(tiny_cfg, run_dir)
    assert victim.read_text() == "precious\n" and sorted(os.listdir(run_dir)) == [rundir.LOCK]


def test_the_lock_itself_is_opened_without_following_a_link(tmp_path):
    """Even when the directory check is raced: the lock's own open refuses a link (O_NOFOLLOW)."""
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / rundir.LOCK).symlink_to(victim)
    with pytest.raises(rundir.DamagedRunFile, match="symbolic link"):
        runlock.RunLock(tmp_path / "run").acquire()
    assert victim.read_text() == "keep\n"
    (tmp_path / "run" / rundir.LOCK).unlink()
    os.mkfifo(tmp_path / "run" / rundir.LOCK)
    with deadline(20), pytest.raises(rundir.DamagedRunFile, match="FIFO"):
        runlock.RunLock(tmp_path / "run").acquire()


def test_hydra_record_is_never_written_through_a_linked_folder(tmp_path):
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".hydra").symlink_to(victim)
    with pytest.raises(rundir.DamagedRunFile, match="symbolic link"):
        rundir.save_hydra_record(tmp_path / "run", {"config.yaml": "seed: 5\n"})
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("name", [rundir.SUMMARY, rundir.METRICS, rundir.ADAPTATION, ".hydra/config.yaml",
                                  ".hydra/overrides.yaml", rundir.PARAMS, rundir.TEST_MSE, rundir.CHECKPOINT,
                                  rundir.LOCK])
def test_readers_never_block_on_a_fifo_nor_follow_a_link(stopped, tmp_path, name):
    """What the report, the sweep summary and reevaluate read: a FIFO or link gives a reason, at once."""
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir, symlinks=True)
    secret = tmp_path / "secret"
    secret.write_text('{"status": "completed", "config_hash": "x"}\n')
    for kind in ("fifo", "link"):
        path = plant(run_dir, name, kind, secret)
        with deadline(20):
            state = rundir_read.read_state(run_dir)
            metrics = metrics_csv.read_metrics(run_dir)
            rows, issue = metrics_csv.read_adaptation(run_dir)
            live = runlock.is_live(run_dir)
            for read in (rundir_read.read_config, rundir_read.read_overrides, checkpoint.load_checkpoint,
                         lambda d: rundir.load_params(d / name)):
                try:
                    read(run_dir)
                except (rundir.DamagedFile, FileNotFoundError, components.RestoreError) as exc:
                    assert "\n" not in str(exc)
        if name == rundir.SUMMARY:
            assert state.status == rundir.CORRUPT and str(path) in state.issue and not state.summary
        if name == rundir.METRICS:
            assert metrics.values.size == 0 and str(path) in metrics.issue
        if name == rundir.ADAPTATION:
            assert rows == [] and str(path) in issue
        if name == rundir.LOCK:
            assert live is False
        if name.startswith(".hydra/config"):
            with pytest.raises(rundir.DamagedFile, match="config.yaml"):
                rundir_read.read_config(run_dir)
        if name in (rundir.PARAMS, rundir.TEST_MSE, rundir.CHECKPOINT):
            with pytest.raises(rundir.DamagedFile, match=str(path)):
                rundir.load_params(path)


def test_a_dangling_link_as_run_dir_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "d").symlink_to(tmp_path / "nowhere")
    config = compose([*TINY, f"hydra.run.dir={tmp_path / 'd'}"], hydra=True)
    with pytest.raises(SystemExit) as stop:
        sweep.SweepSummary().on_run_start(config)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "dangling" in err[0] and "hydra.run.dir=" in err[0]
    assert not (tmp_path / "nowhere").exists()


def test_aside_moves_only_a_run_directorys_own_files(stopped, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir, symlinks=True)
    other = tmp_path / "notes.txt"
    other.write_text("mine\n")
    (run_dir / "foreign.txt").write_text("mine\n")
    for path in (other, run_dir / "foreign.txt", run_dir / ".hydra", run_dir, tmp_path):
        before = tree(tmp_path)
        assert aside.main([str(path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "moves only" in err[0]
        assert tree(tmp_path) == before
    assert aside.main([str(run_dir / ".hydra" / "config.yaml"), str(run_dir / rundir.CHECKPOINT)]) == 0
    moved = sorted(p.name for p in (run_dir / rundir.ASIDE).iterdir())
    assert len(moved) == 2 and moved[0].endswith(rundir.CHECKPOINT) and moved[1].endswith("hydra-config.yaml")
