"""The ``maml-sweep`` command end to end, in a temp dir: run directories, bad input, sweeps, resume.

Each test starts the command in a subprocess; one case of each kind runs by default, the rest are
``slow`` (the checks themselves are tested in-process in test_config.py)."""
import csv
import json

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli

from maml_sweep.model import param_names


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_single_run_writes_the_whole_run_directory(tmp_path):
    default_figures = [o for o in TINY if not o.startswith("train.figures=")]  # a single run draws it by default
    proc = run_cli([*default_figures, "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 24 and summary["outer_steps"] == 24
    assert np.isfinite(summary["val_meta_objective"]) and summary["wall_s"] > 0 and summary["ms_per_step"] > 0
    assert summary["versions"]["numpy"] == np.__version__ and len(summary["config_hash"]) == 16

    rows = read_metrics(run_dir)
    assert list(rows[0]) == ["step", "val_meta_objective", "val_mse", "train_meta_objective", "elapsed_s"]
    assert [int(r["step"]) for r in rows] == [8, 16, 24]
    assert float(rows[-1]["val_meta_objective"]) == pytest.approx(summary["val_meta_objective"], rel=1e-9)
    assert all(float(a["elapsed_s"]) <= float(b["elapsed_s"]) for a, b in zip(rows, rows[1:]))

    with np.load(run_dir / "params.npz") as params:
        assert params.files == param_names((8, 8))
        assert params["W2"].shape == (8, 8) and params["b3"].shape == ()
    assert (run_dir / "checkpoint.npz").exists()
    assert (run_dir / "validation_fits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "train.outer_steps=24" in overrides


@pytest.mark.slow
def test_same_seed_and_config_give_the_same_numbers(tmp_path):
    for name in ("a", "b"):
        assert run_cli([*TINY, f"hydra.run.dir={name}"], cwd=tmp_path).returncode == 0
    assert [r["val_meta_objective"] for r in read_metrics(tmp_path / "a")] == \
           [r["val_meta_objective"] for r in read_metrics(tmp_path / "b")]


SLOW = pytest.mark.slow


@pytest.mark.parametrize("override,key", [
    ("optimizer.lr=0", "optimizer.lr"),
    pytest.param("algorithm.inner_steps=-1", "algorithm.inner_steps", marks=SLOW),
    pytest.param("task.xmin=5", "task.xmin", marks=SLOW),
    pytest.param("model.activation=gelu", "model.activation", marks=SLOW),
    pytest.param("seed=-3", "seed", marks=SLOW),
])
def test_bad_value_fails_with_one_clear_line_and_no_traceback(tmp_path, override, key):
    proc = run_cli([override, "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maml-sweep: error: {key}=")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("override,message", [
    ("algorithm.inner_steps=abc", "could not be converted to Integer"),
    pytest.param("train.nonsense=1", "Could not override 'train.nonsense'", marks=SLOW),
    pytest.param("task=nonsense", "Could not find 'task/nonsense'", marks=SLOW),
])
def test_wrong_type_unknown_key_or_option_fails_at_compose_time(tmp_path, override, message):
    proc = run_cli([override, "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_multirun_writes_one_directory_per_job(tmp_path):
    proc = run_cli(["-m", "task.bins=3,6", "seed=0,1", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert len(runs) == 4
    seen = set()
    for run_dir in runs:
        cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        seen.add((cfg["task"]["bins"], cfg["seed"]))
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
        assert cfg["train"]["figures"] is False and not (run_dir / "validation_fits.png").exists()
    assert seen == {(3, 0), (3, 1), (6, 0), (6, 1)}


@pytest.mark.slow
def test_rerun_skips_a_completed_run_and_refuses_another_config(tmp_path):
    assert run_cli([*TINY, "hydra.run.dir=run"], cwd=tmp_path).returncode == 0
    before = (tmp_path / "run" / "summary.json").read_text()
    assert run_cli([*TINY, "hydra.run.dir=run"], cwd=tmp_path).returncode == 0
    assert (tmp_path / "run" / "summary.json").read_text() == before
    proc = run_cli([*TINY, "seed=1", "hydra.run.dir=run"], cwd=tmp_path)
    assert proc.returncode == 2 and "holds a run of another config" in proc.stderr
    assert (tmp_path / "run" / "summary.json").read_text() == before
