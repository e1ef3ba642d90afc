"""The evaluation protocol: keyed test bank, paired scratch baseline, adaptation.csv."""
import csv
import json

import numpy as np
import pytest

from conftest import TINY
from maml_sweep import evaluate
from maml_sweep.tasks import make_tasks
from maml_sweep.algorithms import MAML
from maml_sweep.train import build, run


def bank(compose_cfg, overrides):
    cfg = compose_cfg(overrides)
    return evaluate.test_bank(make_tasks(cfg.task, cfg.train.dtype), cfg.task, cfg.eval)


def same(a, b):
    return all(np.array_equal(s.x, t.x) and np.array_equal(s.y_query, t.y_query) for s, t in zip(a, b))


def test_test_bank_is_keyed_by_task_config_and_eval_seed_only(compose_cfg):
    base = bank(compose_cfg, ["eval.num_tasks=5"])
    assert len(base) == 5 and base[0].x.shape == (100,) and base[0].x_query.shape == (100,)
    assert same(base, bank(compose_cfg, ["eval.num_tasks=5", "seed=7", "algorithm=reptile", "train.rng=streams"]))
    assert not same(base, bank(compose_cfg, ["eval.num_tasks=5", "eval.seed=1"]))
    assert not same(base, bank(compose_cfg, ["eval.num_tasks=5", "task.bins=3"]))
    shots = bank(compose_cfg, ["eval.num_tasks=5", "task=sine", "eval.support_size=5"])
    assert shots[0].x.shape == (5,)


def read_adaptation(run_dir):
    with open(run_dir / "adaptation.csv") as f:
        return list(csv.DictReader(f))


def test_runs_write_adaptation_csv_and_share_the_scratch_baseline(compose_cfg, tmp_path):
    common = [*TINY, "eval.max_steps=4"]
    assert run(compose_cfg([*common, "seed=0"]), tmp_path / "a")["status"] == "completed"
    assert run(compose_cfg([*common, "seed=1", "algorithm=fomaml"]), tmp_path / "b")["status"] == "completed"
    a, b = read_adaptation(tmp_path / "a"), read_adaptation(tmp_path / "b")
    assert list(a[0]) == ["init", "k", "mse_mean", "mse_ci95", "n_tasks"]
    assert [(r["init"], r["k"]) for r in a] == [(i, str(k)) for i in ("trained", "scratch") for k in range(5)]
    assert all(r["n_tasks"] == "20" and float(r["mse_ci95"]) > 0 for r in a)
    assert [r for r in a if r["init"] == "scratch"] == [r for r in b if r["init"] == "scratch"]  # paired
    assert [r for r in a if r["init"] == "trained"] != [r for r in b if r["init"] == "trained"]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    trained = {int(r["k"]): float(r["mse_mean"]) for r in a if r["init"] == "trained"}
    assert summary["test_mse_k1"] == pytest.approx(trained[1]) and summary["test_mse_k4"] == pytest.approx(trained[4])
    assert summary["noise_floor"] == pytest.approx(0.01)


def test_pretrain_rows_are_labelled_pretrain(compose_cfg, tmp_path):
    cfg = compose_cfg([*TINY, "algorithm=pretrain", "eval.max_steps=2"])
    assert run(cfg, tmp_path)["status"] == "completed"
    assert {r["init"] for r in read_adaptation(tmp_path)} == {"pretrain", "scratch"}


def test_mse_is_plain_whatever_the_loss_scale(compose_cfg, tmp_path):
    rows = []
    for scale in (0.5, 1.0):
        cfg = compose_cfg([*TINY, "algorithm=scratch", f"algorithm.loss_scale={scale}",
                           f"algorithm.inner_lr={0.1 / scale}", "eval.max_steps=3"])
        run(cfg, tmp_path / str(scale))
        rows.append(read_adaptation(tmp_path / str(scale)))
    # inner_lr * scale is the same, so the adaptation steps and the plain MSE are the same
    assert [float(r["mse_mean"]) for r in rows[0]] == pytest.approx([float(r["mse_mean"]) for r in rows[1]], rel=1e-9)


def test_ci_shrinks_as_the_test_bank_grows(compose_cfg):
    widths = []
    for n in (20, 80, 320):
        cfg = compose_cfg(["model.hidden=[8,8]", f"eval.num_tasks={n}", "eval.max_steps=3"])
        model, tasks, _, _, inner = build(cfg)
        init = model.init(np.random.RandomState(0), 0.1)
        mse = MAML().adaptation_mse(model, init, evaluate.test_bank(tasks, cfg.task, cfg.eval),
                                    evaluate.eval_inner(inner, cfg.eval))
        rows = evaluate.summarise("scratch", mse)
        assert [r["n_tasks"] for r in rows] == [n] * 4
        widths.append(np.mean([r["mse_ci95"] for r in rows]))
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)  # ~ 1/sqrt(n)
