"""The evaluation protocol: keyed test bank, paired scratch baseline, adaptation.csv, test_mse.npz,
fixed-k summary keys, shared validation."""
import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import TINY

from maml_sweep import evaluate, maml, rundir
from maml_sweep.algorithms import MAML
from maml_sweep.components import build
from maml_sweep.tasks import make_tasks
from maml_sweep.train import Trainer, run


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
    common = [*TINY, "eval.max_steps=4", "eval.report_steps=[1,4]"]
    assert run(compose_cfg([*common, "seed=0"]), tmp_path / "a")["status"] == "completed"
    assert run(compose_cfg([*common, "seed=1", "algorithm=fomaml"]), tmp_path / "b")["status"] == "completed"
    a, b = read_adaptation(tmp_path / "a"), read_adaptation(tmp_path / "b")
    assert tuple(a[0]) == rundir.ADAPTATION_COLUMNS
    assert [(r["init"], r["k"]) for r in a] == [(i, str(k)) for i in ("trained", "scratch") for k in range(5)]
    assert all(r["n_tasks"] == "20" and float(r["mse_ci95_low"]) < float(r["mse_mean"]) < float(r["mse_ci95_high"])
               for r in a)
    assert [r for r in a if r["init"] == "scratch"] == [r for r in b if r["init"] == "scratch"]  # paired
    assert [r for r in a if r["init"] == "trained"] != [r for r in b if r["init"] == "trained"]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    per_task = rundir.load_params(tmp_path / "a" / rundir.TEST_MSE)
    assert list(per_task) == ["trained", "scratch"] and per_task["trained"].shape == (20, 5)
    trained = {int(r["k"]): float(r["mse_mean"]) for r in a if r["init"] == "trained"}
    for k in (1, 4):
        assert summary[f"test_mse_k{k}"] == pytest.approx(trained[k]) == pytest.approx(per_task["trained"][:, k].mean())
        assert summary[f"test_median_k{k}"] == pytest.approx(np.median(per_task["trained"][:, k]))
    assert summary["noise_floor"] == pytest.approx(0.01)


def test_pretrain_rows_are_labelled_pretrain(compose_cfg, tmp_path):
    cfg = compose_cfg([*TINY, "algorithm=pretrain", "eval.max_steps=2", "eval.report_steps=[2]"])
    assert run(cfg, tmp_path)["status"] == "completed"
    assert {r["init"] for r in read_adaptation(tmp_path)} == {"pretrain", "scratch"}


def test_mse_is_plain_whatever_the_loss_scale(compose_cfg, tmp_path):
    rows = []
    for scale in (0.5, 1.0):
        cfg = compose_cfg([*TINY, "algorithm=scratch", f"algorithm.loss_scale={scale}",
                           f"algorithm.inner_lr={0.1 / scale}", "eval.max_steps=3", "eval.report_steps=[3]"])
        run(cfg, tmp_path / str(scale))
        rows.append(read_adaptation(tmp_path / str(scale)))
    # inner_lr * scale is the same, so the adaptation steps and the plain MSE are the same
    assert [float(r["mse_mean"]) for r in rows[0]] == pytest.approx([float(r["mse_mean"]) for r in rows[1]], rel=1e-9)


def test_ci_shrinks_as_the_test_bank_grows(compose_cfg):
    widths = []
    for n in (20, 80, 320):
        cfg = compose_cfg(["model.hidden=[8,8]", f"eval.num_tasks={n}", "eval.max_steps=3", "eval.report_steps=[3]"])
        model, tasks, _, _, inner = build(cfg)
        init = model.init(np.random.RandomState(0), 0.1)
        mse = MAML().adaptation_mse(model, init, evaluate.test_bank(tasks, cfg.task, cfg.eval),
                                    evaluate.eval_inner(inner, cfg.eval))
        rows = evaluate.summarise("scratch", mse)
        assert [r["n_tasks"] for r in rows] == [n] * 4
        widths.append(np.mean([r["mse_ci95_high"] - r["mse_ci95_low"] for r in rows]))
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)  # ~ 1/sqrt(n)


def test_fixed_k_keys_for_a_one_inner_step_run(compose_cfg, tmp_path):
    cfg = compose_cfg([*TINY, "algorithm.inner_steps=1"])
    summary = run(cfg, tmp_path)
    per_task = rundir.load_params(tmp_path / rundir.TEST_MSE)["trained"]
    assert per_task.shape == (20, 11)
    for k in (1, 5, 10):
        assert summary[f"test_mse_k{k}"] == pytest.approx(per_task[:, k].mean(), rel=1e-12)
        assert summary[f"test_median_k{k}"] == pytest.approx(np.median(per_task[:, k]), rel=1e-12)
        assert summary[f"test_blowup_k{k}"] == 0.0
        assert f"test_trimmed_k{k}" in summary
    assert summary["test_mse_at_inner_steps"] == summary["test_mse_k1"]


def test_report_steps_beyond_max_steps_are_refused(compose_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"eval.report_steps=\[1, 5, 10\] is not allowed.*0..eval.max_steps \(4\)"):
        run(compose_cfg([*TINY, "eval.max_steps=4"]), tmp_path)


def test_a_val_step_beyond_max_steps_is_refused(compose_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"eval.val_step=11 is not allowed.*0..eval.max_steps \(10\)"):
        run(compose_cfg([*TINY, "eval.val_step=11"]), tmp_path)


def shared(compose_cfg, overrides, tmp_path):
    cfg = compose_cfg([*TINY, *overrides])
    return Trainer(cfg, tmp_path, "x").shared_val


def test_shared_validation_tasks_are_the_same_across_seeds_algorithms_and_rng_modes(compose_cfg, tmp_path):
    base = shared(compose_cfg, [], tmp_path)
    assert len(base) == 250
    for other in (["seed=5"], ["algorithm=reptile"], ["algorithm=pretrain", "seed=2"], ["train.rng=streams"],
                  ["train.rng=streams", "algorithm=metasgd", "seed=9"]):
        assert same_tasks(base, shared(compose_cfg, other, tmp_path)), other
    assert not same_tasks(base, shared(compose_cfg, ["eval.seed=1"], tmp_path))


def same_tasks(a, b):
    return len(a) == len(b) and all(np.array_equal(s.x, t.x) and np.array_equal(s.y, t.y) for s, t in zip(a, b))


def test_val_mse_is_logged_in_notebook_mode_and_is_the_plain_mse_on_the_shared_tasks(compose_cfg, tmp_path):
    cfg = compose_cfg(TINY)
    summary = run(cfg, tmp_path)
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == rundir.METRIC_COLUMNS and len(rows) == 3
    # eval.val_every=1000: of the evaluations at 8, 16, 24 only the last step validates on the shared tasks
    assert [math.isfinite(float(r["val_mse"])) for r in rows] == [False, False, True]
    assert all(math.isfinite(float(r["val_meta_objective"])) for r in rows)  # the notebook's own task, every time
    model, tasks, algorithm, _, inner = build(cfg)
    params = rundir.load_params(tmp_path / rundir.PARAMS)
    val = evaluate.validation_tasks(tasks, cfg.task, cfg.eval)
    assert {(len(t.x), len(t.x_query)) for t in val} == {(cfg.task.num_points, cfg.eval.query_size)}  # test protocol
    by_hand = np.mean([np.mean((model.predict(maml.adapt(model.predict, params, t, inner)[-1], t.x_query)
                                - t.y_query) ** 2) for t in val])  # held-out points, inner_steps steps
    assert float(rows[-1]["val_mse"]) == pytest.approx(by_hand, rel=1e-8)
    assert summary["val_mse"] == pytest.approx(by_hand, rel=1e-8)
    assert summary["val_meta_objective"] != pytest.approx(0.5 * by_hand)  # the notebook's own single task


def test_the_shared_validation_runs_every_val_every_steps_and_at_the_last(compose_cfg, tmp_path):
    run(compose_cfg(TINY + ["eval.val_every=16", "train.outer_steps=40"]), tmp_path)  # evaluations every 8 steps
    with open(tmp_path / "metrics.csv") as f:
        rows = [(int(r["step"]), math.isfinite(float(r["val_mse"]))) for r in csv.DictReader(f)]
    assert rows == [(8, False), (16, True), (24, False), (32, True), (40, True)]

def test_val_mse_scores_the_test_target_shots_step_and_step_size(compose_cfg, tmp_path):
    """Selection is about the test protocol: eval.support_size shots, eval.query_size held-out points,
    eval.val_step steps at eval.inner_lr; streams mode's val_meta_objective is loss_scale x val_mse."""
    cfg = compose_cfg(TINY + ["task=sine", "task.num_points=20", "task.query_size=10", "train.rng=streams",
                              "eval.support_size=5", "eval.query_size=30", "eval.val_tasks=7",
                              "eval.val_step=3", "eval.inner_lr=0.02", "algorithm.inner_steps=1"])
    summary = run(cfg, tmp_path)
    model, tasks, _, _, inner = build(cfg)
    val = evaluate.validation_tasks(tasks, cfg.task, cfg.eval)
    assert [(len(t.x), len(t.x_query)) for t in val] == [(5, 30)] * 7
    params = rundir.load_params(tmp_path / rundir.PARAMS)
    test_inner = dataclasses.replace(inner, lr=0.02, steps=3)
    by_hand = np.mean([np.mean((model.predict(maml.adapt(model.predict, params, t, test_inner)[-1], t.x_query)
                                - t.y_query) ** 2) for t in val])
    assert summary["val_mse"] == pytest.approx(by_hand, rel=1e-8)
    assert summary["val_meta_objective"] == pytest.approx(cfg.algorithm.loss_scale * by_hand, rel=1e-12)
    one_step = np.mean([np.mean((model.predict(maml.adapt(model.predict, params, t, inner)[-1], t.x_query)
                                 - t.y_query) ** 2) for t in val])
    assert summary["val_mse"] != pytest.approx(one_step, rel=1e-3)  # the setting changes what is scored


def test_reevaluate_recomputes_the_same_test_results_from_params(compose_cfg, tmp_path):
    from omegaconf import OmegaConf

    from maml_sweep.tools.reevaluate import reevaluate
    cfg = compose_cfg([*TINY, "eval.max_steps=5", "eval.report_steps=[1,5]"])
    record = {"config.yaml": OmegaConf.to_yaml(cfg, resolve=True)}  # what the CLI records
    summary = run(cfg, tmp_path, on_accept=lambda: rundir.save_hydra_record(tmp_path, record))
    before = rundir.load_params(tmp_path / rundir.TEST_MSE)
    (tmp_path / rundir.TEST_MSE).unlink()
    (tmp_path / rundir.ADAPTATION).write_text("stale\n")
    again = reevaluate(tmp_path)
    after = rundir.load_params(tmp_path / rundir.TEST_MSE)
    assert list(after) == list(before) and all(np.array_equal(before[k], after[k]) for k in before)
    assert {k: v for k, v in again.items() if k != "eval_s"} == {k: v for k, v in summary.items() if k != "eval_s"}
    assert read_adaptation(tmp_path)[0]["init"] == "trained"


def test_reptile_with_one_inner_step_warns_that_it_is_joint_training(compose_cfg, tmp_path, caplog):
    Trainer(compose_cfg([*TINY, "algorithm=reptile", "algorithm.inner_steps=1"]), tmp_path, "x")
    assert "is joint training, not meta-learning" in caplog.text
    caplog.clear()
    Trainer(compose_cfg([*TINY, "algorithm=reptile"]), tmp_path, "x")
    assert "joint training" not in caplog.text


def test_a_long_evaluation_reports_progress_chunk_by_chunk_with_the_same_curves(compose_cfg, monkeypatch, caplog):
    cfg = compose_cfg(["eval.num_tasks=23", "model.hidden=[8,8]", "task.num_points=20"])
    model, tasks, algorithm, _, inner = build(cfg)
    params = model.init(np.random.default_rng(0), cfg.model.init_std)
    test = evaluate.test_bank(tasks, cfg.task, cfg.eval)
    curves = lambda part: algorithm.adaptation_mse(model, params, part, evaluate.eval_inner(inner, cfg.eval))
    whole = curves(test)
    monkeypatch.setattr(evaluate, "PROGRESS_CHUNK", 10)
    with caplog.at_level("INFO", logger="maml_sweep.evaluate"):
        chunked = evaluate.in_chunks(curves, test, "trained")
    assert np.array_equal(chunked, whole) and chunked.shape == (23, cfg.eval.max_steps + 1)
    assert [r.args[1] for r in caplog.records] == [10, 20, 23]  # tasks done after each chunk
    monkeypatch.setattr(evaluate, "PROGRESS_CHUNK", 23)
    caplog.clear()
    assert np.array_equal(evaluate.in_chunks(curves, test, "trained"), whole) and not caplog.records
