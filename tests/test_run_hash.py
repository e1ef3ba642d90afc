"""One run hash (rundir.run_hash): what leaves it, and the migration of runs recorded under the
older hash (which still held train.figures)."""
import json

from conftest import TINY, summary_of

from maml_sweep import checkpoint, rundir
from maml_sweep.train import run


def test_figures_and_caps_leave_the_hash_and_nothing_else_does(compose_cfg):
    base = rundir.run_hash(compose_cfg(TINY))
    assert rundir.run_hash(compose_cfg([*TINY, "train.figures=false"])) == base  # a multirun job's config
    assert rundir.run_hash(compose_cfg([*TINY, "train.figures=true", "train.max_hours=99"])) == base
    assert rundir.run_hash(compose_cfg([*TINY, "seed=1"])) != base
    new, old = rundir.accepted_hashes(compose_cfg([*TINY, "train.figures=false"]))
    assert new == base and old != base


def test_a_run_recorded_under_the_older_hash_resumes_and_takes_the_new_one(compose_cfg, tmp_path):
    cfg = compose_cfg([*TINY, "train.figures=false"])
    first = run(cfg, tmp_path)
    _, old = rundir.accepted_hashes(cfg)
    state = checkpoint.load_checkpoint(tmp_path)
    state["config_hash"] = old
    checkpoint.save_checkpoint(tmp_path, state)
    summary = json.loads((tmp_path / rundir.SUMMARY).read_text())
    (tmp_path / rundir.SUMMARY).write_text(json.dumps({**summary, "status": "interrupted", "config_hash": old}))
    again = run(cfg, tmp_path)
    assert again["status"] == first["status"] and again["config_hash"] == rundir.run_hash(cfg) != old
    assert summary_of(tmp_path)["test_mse_k5"] == first["test_mse_k5"]
    assert checkpoint.load_checkpoint(tmp_path)["config_hash"] == rundir.run_hash(cfg)
