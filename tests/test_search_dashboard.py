"""optuna-dashboard opens a search's study (slow): a real search, the dashboard started on a free
localhost port (stopped by its PID), and the study's page rendered by Debian's headless Chromium."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("optuna_dashboard", reason="the test extra's optuna-dashboard is not installed")

from conftest import TINY, run_cli, wait_for  # noqa: E402
from services import chromium, free_port  # noqa: E402

pytestmark = pytest.mark.slow


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read(1 << 20))
    except OSError:
        return None


def test_optuna_dashboard_shows_the_study_of_a_search(tmp_path):
    proc = run_cli(["-m", "sweep=optuna", "hydra.sweeper.n_trials=3", *TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    port = free_port()
    dashboard = subprocess.Popen([Path(sys.executable).parent / "optuna-dashboard", "--host", "127.0.0.1",
                                  "--port", str(port), f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"],
                                 stdout=subprocess.DEVNULL, stderr=open(tmp_path / "dashboard.log", "w"))
    try:
        studies = wait_for(lambda: _get(f"http://127.0.0.1:{port}/api/studies") or dashboard.poll() is not None,
                           timeout=60, what="optuna-dashboard to answer")
        assert dashboard.poll() is None, (tmp_path / "dashboard.log").read_text()[-2000:]
        [study] = studies["study_summaries"]
        assert study["study_name"] == "maml_lr_search"
        page = chromium(f"http://127.0.0.1:{port}/dashboard/studies/{study['study_id']}", tmp_path / "profile",
                        "--virtual-time-budget=20000", "--dump-dom")
        assert "maml_lr_search" in page  # the page rendered the study, not just the app's shell
        assert "algorithm.inner_lr" in page or "Trial" in page
    finally:
        dashboard.terminate()  # by the PID we started
        try:
            dashboard.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            dashboard.wait()
