"""Shared fixtures: compose configs in-process, run the CLI in a subprocess inside a temp dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from maml_sweep.config import register_configs

pytest_plugins = ["analysis_fixtures"]  # real_sweep, sweep_copy

DATA = Path(__file__).parent / "data"
TINY = ["train.outer_steps=24", "train.eval_every=8", "model.hidden=[8,8]", "task.num_points=20", "eval.num_tasks=20"]


@pytest.fixture(scope="session")
def compose_cfg():
    """compose_cfg(overrides) -> the composed DictConfig, exactly as the CLI would see it."""
    register_configs()
    with initialize_config_module("maml_sweep.conf", version_base="1.3"):
        yield lambda overrides=(): compose("config", overrides=list(overrides))


def run_cli(args, cwd, timeout=300, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m maml_sweep ARGS`` in ``cwd``; returns the completed process (text output)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "maml_sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


@pytest.fixture(autouse=True, scope="session")
def _scratch_cache_in_a_temp_dir(tmp_path_factory):
    """Runs started by the tests (in-process or by run_cli) cache into a temp dir, not ~/.cache."""
    old = os.environ.get("MAML_SWEEP_CACHE_DIR")
    os.environ["MAML_SWEEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("maml-sweep-cache"))
    yield
    if old is None:
        os.environ.pop("MAML_SWEEP_CACHE_DIR", None)
    else:
        os.environ["MAML_SWEEP_CACHE_DIR"] = old
