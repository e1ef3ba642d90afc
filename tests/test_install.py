"""A non-editable install finds its configs from any directory (conf/ ships as package data)."""
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import REPO

TOP_LEVEL_ONLY = {".git", ".venv", "build", "dist", "outputs", "analysis"}  # not maml_sweep/analysis


def ignore(folder, names):
    skip = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache")(folder, names)
    return skip | (TOP_LEVEL_ONLY & set(names) if Path(folder) == REPO else set())


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_a_tiny_experiment_and_a_report(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=ignore)  # a clean copy: no stale build/ can hide a mistake
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src],
                   check=True)
    wheel = next((tmp_path / "dist").glob("maml_sweep-*.whl"))
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    subprocess.run([bin_dir / "pip", "install", "-q", wheel], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cmd in ([bin_dir / "maml-sweep"], [bin_dir / "python", "-m", "maml_sweep"]):
        name = Path(cmd[-1]).name
        proc = subprocess.run([*cmd, "train.outer_steps=10", "train.eval_every=5", "model.hidden=[4]",
                               f"hydra.run.dir=run-{name}"], cwd=elsewhere, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((elsewhere / f"run-{name}" / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 10
    proc = subprocess.run([bin_dir / "maml-sweep-report", "run-maml-sweep", "--out", "report"], cwd=elsewhere,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "report" / "report.html").stat().st_size > 0
