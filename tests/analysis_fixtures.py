"""Fixtures for the analysis tests: a real small sweep made by the CLI, and synthetic awkward runs.

Its fixtures (real_sweep, sweep_copy) reach every test through ``pytest_plugins`` in conftest.py.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from maml_sweep.tools.synthetic import base_config, make_sweep, write_run  # noqa: F401

# 2 x 2 configurations x 2 seeds, tiny model: about 6 s once per session.
SWEEP_ARGS = ["-m", "task.bins=3,6", "algorithm.inner_lr=0.03,0.1", "seed=0,1", "train.outer_steps=24",
              "train.eval_every=8", "model.hidden=[8,8]", "task.num_points=20", "eval.num_tasks=100",
              "eval.val_tasks=50"]


_MADE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory) -> Path:
    """A multirun sweep directory written by ``python -m maml_sweep -m ...`` (8 runs), made once
    per session even though each test module imports this fixture (hence the module-level cache)."""
    if "sweep" not in _MADE:
        _MADE["sweep"] = _make_real_sweep(tmp_path_factory)
    return _MADE["sweep"]


def _make_real_sweep(tmp_path_factory) -> Path:
    """Made once for all pytest-xdist workers (under their shared base folder, behind a file lock);
    tests use it read-only or through ``sweep_copy``."""
    import fcntl

    from conftest import run_cli  # the one way tests start the command

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if "PYTEST_XDIST_WORKER" in os.environ else shared
    root, done = shared / "real_sweep", shared / "real_sweep.done"
    sweep = root / "multirun" / "2026-11-26" / "10-00-00"
    with open(shared / "real_sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            proc = run_cli([*SWEEP_ARGS, f"hydra.sweep.dir={sweep}"], cwd=root, timeout=600)
            assert proc.returncode == 0, proc.stderr[-2000:]
            done.touch()
    assert len(list(sweep.glob("*/summary.json"))) == 8
    return sweep


@pytest.fixture
def sweep_copy(real_sweep, tmp_path) -> Path:
    """A private copy of the real sweep, to damage."""
    dst = tmp_path / "multirun" / "2026-11-26" / "10-00-00"
    shutil.copytree(real_sweep, dst)
    return dst
