"""Shared test infrastructure: composing configs in-process, and the one way to start a command in a
subprocess.

- :func:`compose` initialises Hydra for each call and leaves no global state behind, so no test
  depends on another one (or a fixture) having initialised Hydra. ``compose_cfg`` is the same
  function as a fixture.
- :func:`run_module` / :func:`run_cli` start ``python -m MODULE`` with one path policy: this
  checkout's code (``PYTHONPATH``) and its ``conf/`` (``-cp``), whatever an installed copy points
  at. Tests that start a subprocess are ``@pytest.mark.slow`` unless they are the one test of a
  command-line path that nothing in-process covers.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module

from maml_sweep import rundir
from maml_sweep.config import register_configs
from maml_sweep.sweep import SWEEP_SUMMARY

pytest_plugins = ["analysis_fixtures"]  # real_sweep, sweep_copy

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
TINY = ["train.outer_steps=24", "train.eval_every=8", "model.hidden=[8,8]", "task.num_points=20", "eval.num_tasks=20",
        "train.figures=false"]  # the figure (~1 s a run) only where a test looks at it
# A run long enough (3000 steps, some seconds) to be signalled or killed part-way through.
LONG = ["train.outer_steps=3000", "train.eval_every=100", "model.hidden=[16,16]", "task.num_points=30"]


def compose(overrides=(), hydra: bool = False):
    """The composed DictConfig for ``overrides``, exactly as the CLI sees it (``hydra=True``: with
    the ``hydra`` node, e.g. the sweeper's search space). Hydra is initialised for this call only."""
    register_configs()
    with initialize_config_module("maml_sweep.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=hydra)


@pytest.fixture
def compose_cfg():
    """:func:`compose` as a fixture: ``compose_cfg(overrides, hydra=False)``."""
    return compose


def subprocess_env() -> dict:
    """The environment of every subprocess a test starts: this checkout first on the path."""
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def command(module: str, args=()) -> list[str]:
    """The argv that runs ``python -m module args`` (``maml_sweep`` gets this checkout's ``conf/``)."""
    cp = ["-cp", str(REPO / "conf")] if module == "maml_sweep" else []
    return [sys.executable, "-m", module, *cp, *map(str, args)]


def run_module(module: str, args, cwd, timeout=300, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m module ARGS`` in ``cwd`` to the end; returns the completed process (text output)."""
    return subprocess.run(command(module, args), cwd=cwd, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout, **popen)


def run_cli(args, cwd, timeout=300, **popen) -> subprocess.CompletedProcess:
    """Run ``maml-sweep ARGS`` (as ``python -m maml_sweep``) in ``cwd``."""
    return run_module("maml_sweep", args, cwd, timeout, **popen)


def start_cli(args, cwd, **popen) -> subprocess.Popen:
    """Start ``maml-sweep ARGS`` in ``cwd`` without waiting (to signal it); output discarded unless
    ``popen`` says otherwise (``stdout=subprocess.PIPE, ...``; ``env=`` replaces :func:`subprocess_env`)."""
    popen = {"env": subprocess_env(), "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen}
    return subprocess.Popen(command("maml_sweep", args), cwd=cwd, **popen)


def wait_for(predicate, timeout: float = 120, what: str = "a condition", interval: float = 0.02):
    """Poll ``predicate`` every ``interval`` s until it returns something true, and return that;
    fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def summary_of(run_dir) -> dict:
    """The run's summary.json as written (read raw: no checks of the code under test)."""
    return json.loads((Path(run_dir) / rundir.SUMMARY).read_text())


def set_summary(run_dir, **changes) -> None:
    """Rewrite the run's summary.json with ``changes`` (a test's way to age or break a run)."""
    path = Path(run_dir) / rundir.SUMMARY
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def curve(run_dir) -> list[tuple[str, str, str]]:
    """The run's metrics.csv as text (step, val_meta_objective, train_meta_objective), to compare exactly."""
    with open(Path(run_dir) / rundir.METRICS) as f:
        return [(r["step"], r["val_meta_objective"], r["train_meta_objective"]) for r in csv.DictReader(f)]


def sweep_table(sweep_dir) -> list[dict]:
    """The sweep's sweep_summary.csv rows (text values)."""
    with open(Path(sweep_dir) / SWEEP_SUMMARY) as f:
        return list(csv.DictReader(f))


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


@contextmanager
def deadline(seconds: int):
    """Fail with TimeoutError (instead of hanging) when the block takes longer than ``seconds``."""
    def fire(*_):
        raise TimeoutError(f"blocked for more than {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_stopped_at(cfg, run_dir, step: int = 16):
    """Run ``cfg`` in-process into ``run_dir``, stopped by SIGTERM at validation step ``step`` (status
    interrupted, its checkpoint at that step)."""
    from maml_sweep import train

    original = train.Trainer.validate

    def validate(self, state):
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, state)
    train.Trainer.validate = validate
    try:
        assert train.run(cfg, run_dir)["status"] == "interrupted"
    finally:
        train.Trainer.validate = original
    return run_dir

