"""The loader on a real CLI sweep (frame contents and dtypes) and on awkward runs (never crashes)."""
import csv
import shutil

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import base_config, make_sweep, write_run
from conftest import set_summary, summary_of

from maml_sweep import rundir, runlock
from maml_sweep.analysis import LoadError, load_runs
from maml_sweep.analysis.load import STR


def test_runs_frame_has_one_typed_row_per_run(real_sweep):
    rs = load_runs(real_sweep)
    runs = rs.runs
    assert len(runs) == 8 and list(runs["run"]) == [str(i) for i in range(8)]
    assert rs.swept == ["task.bins", "algorithm.inner_lr", "seed"]
    assert rs.group_keys == ["task.bins", "algorithm.inner_lr"]
    assert list(runs.columns[:7]) == ["run", "sweep", "path", "status", "task.bins", "algorithm.inner_lr", "seed"]
    assert runs["sweep"].unique().tolist() == ["2026-11-26/10-00-00"]
    dtypes = runs.dtypes.map(str).to_dict()
    assert dtypes["task.bins"] == "int64" and dtypes["seed"] == "int64" and dtypes["train.outer_steps"] == "int64"
    assert dtypes["algorithm.inner_lr"] == "float64" and dtypes["val_meta_objective"] == "float64"
    assert dtypes["ms_per_step"] == "float64" and dtypes["wall_s"] == "float64"
    assert dtypes["algorithm.first_order"] == "bool"
    for col in ("run", "status", "optimizer.name", "algorithm.name", "model.hidden"):
        assert dtypes[col] == str(STR)  # pandas 3: "str"; pandas 2: object
    assert set(runs["status"]) == {"completed"}
    assert sorted(set(runs["task.bins"])) == [3, 6] and sorted(set(runs["algorithm.inner_lr"])) == [0.03, 0.1]
    assert (runs["model.hidden"] == "[8, 8]").all()
    for row in runs.itertuples():
        s = summary_of(row.path)
        assert row.val_meta_objective == s["val_meta_objective"] and row.ms_per_step == s["ms_per_step"]
        assert row.steps == 24 and row.last_step == 24
    assert rs.skipped.empty and rs.issues.empty
    assert "val_meta_objective" in rs.metrics and "seed" not in rs.metrics and "steps" not in rs.metrics
    assert {"test_mse_k1", "noise_floor"} <= set(rs.metrics)  # summary keys the evaluation adds


def test_curves_are_long_form_from_metrics_csv(real_sweep):
    rs = load_runs(real_sweep)
    curves = rs.curves
    assert list(curves.columns) == ["run", "step", "metric", "value"]
    assert str(curves["step"].dtype) == "int64" and str(curves["value"].dtype) == "float64"
    assert set(curves["metric"]) == {"val_meta_objective", "val_mse", "train_meta_objective", "elapsed_s"}
    assert len(curves) == 8 * 3 * 4
    with open(real_sweep / "5" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    mine = curves[(curves["run"] == "5") & (curves["metric"] == "val_meta_objective")]
    assert mine["step"].tolist() == [int(r["step"]) for r in rows] == [8, 16, 24]
    assert np.allclose(mine["value"], [float(r["val_meta_objective"]) for r in rows], rtol=0, atol=0)
    ad = rs.adaptation
    assert list(ad.columns) == ["run", *rundir.ADAPTATION_COLUMNS]
    assert str(ad["k"].dtype) == "int64" and str(ad["mse_mean"].dtype) == "float64"
    with open(real_sweep / "5" / "adaptation.csv") as f:
        rows = list(csv.DictReader(f))
    mine = ad[ad["run"] == "5"]
    assert len(mine) == len(rows) > 0 and set(mine["init"]) == {r["init"] for r in rows}
    assert np.allclose(mine["mse_mean"], [float(r["mse_mean"]) for r in rows])
    assert set(ad["run"]) == {str(i) for i in range(8)}


def test_paths_parents_globs_and_single_runs(real_sweep):
    parent = real_sweep.parent.parent  # multirun/
    assert len(load_runs(parent).runs) == 8
    assert len(load_runs(str(real_sweep) + "/[0-3]").runs) == 4
    one = load_runs(real_sweep / "2")
    assert len(one.runs) == 1 and one.swept == [] and one.runs["run"].tolist() == ["2"]
    # Overlapping arguments load each run once.
    assert len(load_runs([real_sweep, real_sweep / "0"]).runs) == 8


def test_bad_paths_raise_one_clear_error(tmp_path):
    with pytest.raises(LoadError, match="does not exist"):
        load_runs(tmp_path / "nope")
    with pytest.raises(LoadError, match="matches no files"):
        load_runs(str(tmp_path / "nope*"))
    with pytest.raises(LoadError, match="no run directories found"):
        load_runs(tmp_path)


def test_half_written_and_corrupt_runs_are_kept_or_skipped_with_reasons(sweep_copy):
    d = sweep_copy
    # 1: killed mid-write: truncated last metrics line, no summary yet.
    text = (d / "1" / "metrics.csv").read_text()
    (d / "1" / "metrics.csv").write_text(text[: text.rindex(",") - 3])
    (d / "1" / "summary.json").unlink()
    # 2: summary half-written.
    (d / "2" / "summary.json").write_text('{"status": "compl')
    # 3: config unreadable -> skipped.
    (d / "3" / ".hydra" / "config.yaml").write_text("seed: [0\nmodel: {")
    # 4: diverged.
    set_summary(d / "4", status="diverged", val_meta_objective=None, diverged_step=16)
    # 5: still running, garbage line in the middle of metrics.csv.
    set_summary(d / "5", status="running", steps=16)
    lines = (d / "5" / "metrics.csv").read_text().splitlines()
    (d / "5" / "metrics.csv").write_text("\n".join(lines[:2] + ["@@garbage@@"] + lines[2:]) + "\n")
    # 8: a job that is starting: .hydra/ exists, config not yet.
    (d / "8" / ".hydra").mkdir(parents=True)
    # 6: empty metrics.csv (header not yet written).
    (d / "6" / "metrics.csv").write_text("")

    with runlock.RunLock(d / "5"):  # 5 is live: its process holds the run's lock (else it reads as killed)
        rs = load_runs(d)
    runs = rs.runs.set_index("run")
    assert sorted(runs.index) == ["0", "1", "2", "4", "5", "6", "7"]
    assert runs.loc["1", "status"] == "no_summary" and runs.loc["1", "last_step"] == 16
    assert runs.loc["2", "status"] == "corrupt" and np.isnan(runs.loc["2", "val_meta_objective"])
    assert runs.loc["4", "status"] == "diverged" and runs.loc["4", "diverged_step"] == 16
    assert runs.loc["5", "status"] == "running" and runs.loc["5", "last_step"] == 8
    assert pd.isna(runs.loc["6", "last_step"]) and runs.loc["6", "status"] == "completed"
    assert str(rs.runs["diverged_step"].dtype) == "Int64"
    skipped = dict(zip(rs.skipped["path"].map(lambda p: p.rsplit("/", 1)[-1]), rs.skipped["reason"]))
    assert skipped == {"3": "config.yaml unreadable (invalid YAML; half-written?)",
                       "8": "no .hydra/config.yaml (run starting or not a Hydra job)"}
    issues = rs.issues.groupby("run")["issue"].apply(list).to_dict()
    assert issues["1"] == ["no summary.json (starting, or killed before writing one)",
                           "metrics.csv: truncated last line dropped"]
    assert issues["2"] == ["summary.json unreadable (half-written?)"]
    assert issues["5"] == ["metrics.csv: malformed line 3; kept the 1 row(s) before it"]
    assert issues["6"] == ["metrics.csv has no header row with 'step'"]
    assert rs.counts() == {"completed": 3, "no_summary": 1, "corrupt": 1, "diverged": 1, "running": 1,
                           "skipped": 2}
    curves = rs.curves[rs.curves["metric"] == "val_meta_objective"]
    assert curves.groupby("run", observed=True).size().to_dict() == {
        "0": 3, "1": 2, "2": 3, "4": 3, "5": 1, "7": 3}  # 5: the row before the garbage line


def test_group_override_becomes_the_group_name_column_and_adaptation_loads(tmp_path):
    make_sweep(tmp_path / "s", {"algorithm": ["maml", "fomaml"], "task.bins": [3, 6]}, seeds=(0, 1),
               with_adaptation=True)
    rs = load_runs(tmp_path / "s")
    assert rs.swept == ["algorithm.name", "task.bins", "seed"]
    assert set(rs.runs["algorithm.name"]) == {"maml", "fomaml"} and str(rs.runs["algorithm.name"].dtype) == str(STR)
    ad = rs.adaptation
    assert len(ad) == 8 * 3 * 5 and set(ad["init"]) == {"trained", "pretrain", "scratch"}
    assert str(ad["k"].dtype) == "int64" and str(ad["mse_mean"].dtype) == "float64"
    assert {"test_mse_k1", "test_mse_k5", "noise_floor"} <= set(rs.metrics)


def test_two_sweeps_of_the_same_settings_get_a_sweep_key(real_sweep, tmp_path):
    a = tmp_path / "a" / "10-00-00"
    b = tmp_path / "a" / "11-00-00"
    shutil.copytree(real_sweep, a)
    shutil.copytree(real_sweep, b)
    rs = load_runs([a, b])
    assert rs.swept[0] == "sweep" and set(rs.runs["sweep"]) == {"10-00-00", "11-00-00"}
    assert rs.runs["run"].iloc[0] == "10-00-00/0"
    # Disjoint settings: the sweep is implied by them, so it is no extra key.
    make_sweep(tmp_path / "c" / "s1", {"task.bins": [3, 6]}, seeds=(0, 1))
    make_sweep(tmp_path / "c" / "s2", {"task.bins": [9, 12]}, seeds=(0, 1))
    rs = load_runs(str(tmp_path / "c" / "s*"))
    assert rs.swept == ["task.bins", "seed"] and rs.runs["sweep"].nunique() == 2


def test_single_runs_of_a_day_pool_their_seeds(tmp_path):
    import numpy as np  # noqa: F811

    from maml_sweep.tools.synthetic import synthetic_curve

    for seed in (0, 1, 2):
        rows, val, train = synthetic_curve(0.3, 1000, 100, np.random.RandomState(seed))
        write_run(tmp_path / "runs" / "2026-11-26" / f"10-0{seed}-00", base_config(seed), [f"seed={seed}"],
                  metrics=rows, summary={"status": "completed", "val_meta_objective": val})
    rs = load_runs(tmp_path / "runs")
    assert rs.swept == ["seed"] and rs.group_keys == []
    assert rs.runs["run"].tolist() == ["10-00-00", "10-01-00", "10-02-00"]
    assert set(rs.runs["sweep"]) == {"runs/2026-11-26"}
