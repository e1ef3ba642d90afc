"""Resource bounds: runs too big for the caps are refused from the config alone, before any work."""
import json
import tracemalloc

import pytest
from conftest import TINY, run_cli

from maml_sweep.bounds import GB, param_count
from maml_sweep.config import ConfigError, check_values, resource_estimates
from maml_sweep.rundir import run_hash
from maml_sweep.train import run

TOO_BIG = [  # issue 10's cases: each would exhaust memory or run for hours
    ("task.num_points=1000000000", "task.num_points"),
    ("model.hidden=[100000,100000]", "model.hidden"),
    ("algorithm.inner_steps=1000000", "algorithm.inner_steps"),
    ("train.meta_batch_size=10000000", "train.meta_batch_size"),
    ("eval.val_tasks=1000000000", "eval.val_tasks"),
    ("eval.num_tasks=1000000000", "eval.num_tasks"),
    ("eval.support_size=1000000000", "eval.support_size"),
    ("eval.max_steps=1000000", "eval.max_steps"),
    ("train.outer_steps=1000000000", "train.outer_steps"),
]


@pytest.mark.parametrize("override,key", TOO_BIG)
def test_each_bound_is_refused_in_one_line_naming_the_key_and_the_estimate(compose_cfg, override, key):
    cfg = compose_cfg([override])
    tracemalloc.start()
    errors = check_values(cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(errors) == 1 and errors[0].startswith(f"{key}=")
    assert ((" GB of memory, above train.max_memory_gb=8 " in errors[0])
            or (" h), above train.max_hours=24 " in errors[0]))
    assert peak < 1e6  # the check allocates nothing of the size it estimates


@pytest.mark.parametrize("override,key", TOO_BIG[:2] + TOO_BIG[-2:])
def test_raising_the_caps_lets_a_big_run_through(compose_cfg, override, key):
    assert check_values(compose_cfg([override, "train.max_memory_gb=1e12", "train.max_hours=1e12"])) == []


@pytest.mark.parametrize("override", ["eval.num_tasks=100000", "eval.val_tasks=10000", "train.meta_batch_size=100",
                                      # [900,900]: ~21 h with the 1,500-task bank
                                      "model.hidden=[900,900]", "train.outer_steps=1000000"])
def test_big_but_feasible_runs_are_not_refused(compose_cfg, override):
    assert check_values(compose_cfg([override])) == []


def test_the_default_and_the_paper_experiment_are_far_below_the_caps(compose_cfg):
    for overrides in ([], ["experiment=maml2017_sine"], ["algorithm=metasgd", "task=sine"]):
        for e in resource_estimates(compose_cfg(overrides)):
            assert e.bytes < 0.1 * 8 * GB and e.seconds < 0.1 * 24 * 3600, (overrides, e)


def test_estimates_grow_with_what_drives_them(compose_cfg):
    """Memory of the training step doubles with the meta-batch; evaluation time with max_steps."""
    base = {e.phase: e for e in resource_estimates(compose_cfg())}
    batch = {e.phase: e for e in resource_estimates(compose_cfg(["train.meta_batch_size=2"]))}
    steps = {e.phase: e for e in resource_estimates(compose_cfg(["eval.max_steps=20"]))}
    assert batch["training"].bytes == pytest.approx(2 * base["training"].bytes, rel=0.05)
    assert steps["evaluation"].seconds == pytest.approx(2 * base["evaluation"].seconds, rel=0.1)
    assert param_count([50, 50]) == 2 * 50 + 51 * 50 + 51  # the notebook's 2,751 parameters


@pytest.mark.parametrize("override", ["eval.num_tasks=1000000000", "eval.max_steps=1000000"])
def test_evaluation_bounds_are_checked_before_training(compose_cfg, tmp_path, override):
    """The eval config would fail only after training; it is refused before the first step."""
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        run(compose_cfg(["train.outer_steps=24", override]), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
    assert not (tmp_path / "metrics.csv").exists() and not list(tmp_path.glob("checkpoint*"))


@pytest.mark.slow
@pytest.mark.parametrize("override", ["eval.num_tasks=1000000000", "seed=4294967296", "+optimizer.beta=0.9"])
def test_the_command_refuses_in_one_line_without_a_traceback(tmp_path, override):
    proc = run_cli([*TINY, override, "hydra.run.dir=run"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maml-sweep: error: {override.lstrip('+').split('=')[0]}=")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_raising_a_cap_keeps_the_runs_identity(compose_cfg):
    """A run refused or stopped under one cap resumes in the same directory under a raised one."""
    base = run_hash(compose_cfg())
    assert run_hash(compose_cfg(["train.max_memory_gb=100", "train.max_hours=1000"])) == base
    assert run_hash(compose_cfg(["train.outer_steps=10"])) != base
