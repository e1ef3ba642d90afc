"""Damaged and hostile inputs give one line naming the file and the way out, never a traceback or
a hang: checkpoints whose RNG state, validation tasks or header are wrong, an alias bomb or a FIFO
among the YAML records, and reevaluate on runs it must leave alone."""
import json
import os
import shutil

import numpy as np
import pytest
import yaml
from conftest import TINY, compose, deadline, run_stopped_at

from maml_sweep import aside, checkpoint, rundir, rundir_read, train
from maml_sweep.tools import reevaluate


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose(TINY)


@pytest.fixture(scope="module")
def stopped(tiny_cfg, tmp_path_factory):
    """A TINY run stopped by SIGTERM at step 16, its checkpoint at that step."""
    run_dir = run_stopped_at(tiny_cfg, tmp_path_factory.mktemp("stopped") / "run")
    return run_dir


@pytest.fixture(scope="module")
def completed(tiny_cfg, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    assert train.run(tiny_cfg, run_dir)["status"] == "completed"
    (run_dir / ".hydra").mkdir()
    (run_dir / rundir.HYDRA_CONFIG).write_text(yaml.safe_dump(json.loads(json.dumps(dict(
        __import__("omegaconf").OmegaConf.to_container(tiny_cfg, resolve=True))))))
    return run_dir




def _rewrite(run_dir, change):
    state = checkpoint.load_checkpoint(run_dir)
    change(state)
    checkpoint.save_checkpoint(run_dir, state)


def _deep_header(run_dir):
    path = run_dir / rundir.CHECKPOINT
    depth = 50_000
    header = '{"format": "%s", "version": 1, "state": %s1%s}' % (checkpoint.CHECKPOINT_FORMAT, "[" * depth, "]" * depth)
    path.unlink()
    with open(path, "wb") as f:
        np.savez(f, __meta__=np.array(header))


DAMAGE = {
    "wrong RNG kind": lambda d: _rewrite(d, lambda s: s.update(
        rng_state=np.random.Generator(np.random.PCG64(0)).bit_generator.state)),
    "3-element RNG state": lambda d: _rewrite(d, lambda s: s.update(rng_state=tuple(s["rng_state"][:3]))),
    "RNG position out of range": lambda d: _rewrite(d, lambda s: s.update(
        rng_state=(s["rng_state"][0], s["rng_state"][1], 10**6, *s["rng_state"][3:]))),
    "wrong-shape validation array": lambda d: _rewrite(d, lambda s: s["val_tasks"][0].update(
        x=np.zeros((3, 2)))),
    "header nested 50,000 deep": _deep_header,
    "a pickled entry": lambda d: np.savez(d / rundir.CHECKPOINT, __meta__=np.array([{"a": 1}], dtype=object)),
    "compressed (a zip bomb's form)": lambda d: _compress(d / rundir.CHECKPOINT),
}


def _compress(path):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    path.unlink()
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_checkpoint_is_named_in_one_line_twice_and_set_aside_starts_over(tiny_cfg, stopped, tmp_path, how):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir)
    DAMAGE[how](run_dir)
    path = run_dir / rundir.CHECKPOINT
    content = path.read_bytes()
    for _ in range(2):  # the rerun gives the same line, not "run failed: ValueError"
        with deadline(30), pytest.raises(rundir.DamagedRunFile) as err:
            train.run(tiny_cfg, run_dir)
        message = str(err.value)
        assert "\n" not in message and f"{path} is damaged" in message and f"maml-sweep-aside {path}" in message
    assert path.read_bytes() == content
    assert aside.main([str(path)]) == 0
    if how == "wrong RNG kind":  # the way out works (once is enough: each rerun trains the run whole)
        assert train.run(tiny_cfg, run_dir)["status"] == "completed"


def _alias_bomb(levels: int = 12) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_and_small_aliases_still_read(stopped, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir)
    (run_dir / ".hydra").mkdir()
    (run_dir / rundir.HYDRA_CONFIG).write_text(_alias_bomb())
    (run_dir / rundir.HYDRA_OVERRIDES).write_text("- &x seed=1\n- *x\n" + "\n".join(["- *x"] * 10) + "\n")
    with deadline(10):
        with pytest.raises(rundir.DamagedFile, match="config.yaml unreadable"):
            rundir_read.read_config(run_dir)
        assert [o.text for o in rundir_read.read_overrides(run_dir)] == ["seed=1"] * 12  # a few aliases are fine


def test_a_yaml_record_larger_than_the_bound_is_refused_without_reading_it_all(stopped, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir)
    (run_dir / ".hydra").mkdir()
    with open(run_dir / rundir.HYDRA_CONFIG, "w") as f:
        f.truncate(rundir.MAX_TEXT_BYTES + 10)
    with pytest.raises(rundir.DamagedFile, match="larger than"):
        rundir_read.read_config(run_dir)


# --- reevaluate -----------------------------------------------------------------------------------

def _reevaluate_one_line(run_dir, capsys) -> str:
    before = {p: p.read_bytes() for p in run_dir.rglob("*")  # the lock's holder record aside
              if p.is_file() and not p.is_symlink() and p.name != rundir.LOCK}
    with deadline(30):
        assert reevaluate.main([str(run_dir)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("skipped ") and err[1] == "re-evaluated 0 of 1 runs", err
    assert {p: p.read_bytes() for p in before} == before
    return err[0]


@pytest.mark.parametrize("damage,says", [
    ("truncated params", "params.npz is damaged"),
    ("pickled params", "params.npz is damaged"),
    ("duplicate YAML key", "train.outer_steps"),
    ("caps exceeded", "eval.num_tasks=2000000000 is not allowed"),
    ("alias bomb", "config.yaml unreadable"),
    ("FIFO summary", "a FIFO"),
    ("read-only", "not writable"),
])
def test_reevaluate_leaves_a_run_it_cannot_use_alone_in_one_line(completed, tmp_path, capsys, monkeypatch,
                                                               damage, says):
    run_dir = tmp_path / "run"
    shutil.copytree(completed, run_dir)
    config = run_dir / rundir.HYDRA_CONFIG
    if damage == "truncated params":
        (run_dir / rundir.PARAMS).write_bytes((run_dir / rundir.PARAMS).read_bytes()[:100])
    elif damage == "pickled params":
        np.savez(run_dir / rundir.PARAMS, W1=np.array([{"x": 1}], dtype=object))
    elif damage == "duplicate YAML key":  # the last value wins, as YAML readers read it; here a bad one
        config.write_text(config.read_text() + "train:\n  outer_steps: -3\n")
    elif damage == "caps exceeded":
        cfg = yaml.safe_load(config.read_text())
        cfg["eval"]["num_tasks"] = 2_000_000_000
        config.write_text(yaml.safe_dump(cfg))
    elif damage == "alias bomb":
        config.write_text(_alias_bomb())
    elif damage == "FIFO summary":
        (run_dir / rundir.SUMMARY).unlink()
        os.mkfifo(run_dir / rundir.SUMMARY)
    else:
        real_access = os.access  # root writes anywhere, so a read-only directory is simulated
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(run_dir) else real_access(p, mode))
    assert says in _reevaluate_one_line(run_dir, capsys)


def test_reevaluate_on_a_read_only_disk_says_so_in_one_line(completed, tmp_path, capsys, monkeypatch):
    """A write refused by the file system (EROFS, full disk) after the checks: one line, files whole."""
    run_dir = tmp_path / "run"
    shutil.copytree(completed, run_dir)

    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(rundir, "save_arrays", refuse)
    assert "cannot write there (Read-only file system)" in _reevaluate_one_line(run_dir, capsys)
