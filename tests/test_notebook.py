"""The default config replays the notebook's printed trajectory (tests/data/notebook_trajectory.csv)."""
import csv

import pytest
from conftest import DATA

from maml_sweep.train import run


def expected(until_step):
    with open(DATA / "notebook_trajectory.csv") as f:
        rows = [(int(r["iteration"]), r["meta_objective"]) for r in csv.DictReader(f)]
    return [r for r in rows if r[0] <= until_step]


def logged(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(int(r["step"]), "%1.3f" % float(r["val_meta_objective"])) for r in csv.DictReader(f)]


def check_replay(compose_cfg, tmp_path, steps, *overrides):
    cfg = compose_cfg([f"train.outer_steps={steps}", *overrides])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == steps
    want = expected(steps)
    assert len(want) == steps // 100
    assert logged(tmp_path) == want


def test_first_1000_steps_give_the_notebooks_first_10_values(compose_cfg, tmp_path):
    # the test bank, the shared validation and the figure do not touch the trajectory: small here, default below
    check_replay(compose_cfg, tmp_path, 1000, "eval.num_tasks=20", "eval.val_tasks=20", "train.figures=false")


@pytest.mark.slow
def test_all_12000_steps_give_all_120_values(compose_cfg, tmp_path):
    check_replay(compose_cfg, tmp_path, 12000)
