"""Aggregation over seeds against a hand computation; best configuration on validation only."""
import math

import numpy as np
import pytest
from analysis_fixtures import make_sweep
from conftest import set_summary, summary_of

from maml_sweep.analysis import aggregate, best_config, curve_bands, load_runs
from maml_sweep.analysis.aggregate import t975


def test_aggregate_matches_a_hand_computation(real_sweep):
    rs = load_runs(real_sweep)
    agg = aggregate(rs.runs, rs.group_keys, ["val_meta_objective", "ms_per_step"])
    assert len(agg) == 4 * 2
    assert list(agg.columns) == ["task.bins", "algorithm.inner_lr", "metric", "n", "mean", "std", "n_nonfinite", "sem",
                                 "ci95", "ci95_low", "ci95_high", "n_runs", "n_completed", "n_diverged", "n_failed"]
    # By hand, from the summary files: the two seeds of task.bins=6, inner_lr=0.03.
    vals = []
    for run in sorted(real_sweep.iterdir()):
        if run.is_dir() and (run / "summary.json").exists():
            cfg = (run / ".hydra" / "overrides.yaml").read_text()
            if "task.bins=6" in cfg and "algorithm.inner_lr=0.03" in cfg:
                vals.append(summary_of(run)["val_meta_objective"])
    assert len(vals) == 2
    a, b = vals
    mean = (a + b) / 2
    std = math.sqrt(((a - mean) ** 2 + (b - mean) ** 2) / 1)
    sem = std / math.sqrt(2)
    row = agg[(agg["task.bins"] == 6) & (agg["algorithm.inner_lr"] == 0.03) & (agg["metric"] == "val_meta_objective")]
    row = row.iloc[0]
    assert row["n"] == 2 and row["n_runs"] == 2 and row["n_diverged"] == 0
    assert row["mean"] == pytest.approx(mean, rel=1e-12) and row["std"] == pytest.approx(std, rel=1e-12)
    assert row["sem"] == pytest.approx(sem, rel=1e-12)
    assert np.isnan(row["ci95"]) and np.isnan(row["ci95_low"])  # two seeds: no interval (intervals.MIN_SEEDS)
    three = aggregate(rs.runs.assign(seed=0), [], ["val_meta_objective"]).iloc[0]  # pooled: 8 runs
    pooled = rs.runs["val_meta_objective"].to_numpy()
    assert three["ci95"] == pytest.approx(2.364624 * pooled.std(ddof=1) / math.sqrt(8), rel=1e-6)  # t(0.975, 7)


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 40)) + [50, 100, 1000]:
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4)
    assert math.isnan(t975(0))


def test_diverged_runs_are_counted_not_averaged_and_best_is_chosen_on_validation(sweep_copy):
    # Make the otherwise best configuration diverge in one seed.
    rs = load_runs(sweep_copy)
    agg = aggregate(rs.runs, rs.group_keys, ["val_mse"])
    best = best_config(agg, rs.group_keys)  # on the shared validation MSE
    first = rs.runs[(rs.runs["task.bins"] == best["task.bins"])
                    & (rs.runs["algorithm.inner_lr"] == best["algorithm.inner_lr"])]
    path = first["path"].iloc[0]
    set_summary(path, status="diverged", val_mse=None, val_meta_objective=None, diverged_step=8, test_mse_k1=0.0)
    rs = load_runs(sweep_copy)
    agg = aggregate(rs.runs, rs.group_keys, ["val_mse", "test_mse_k1"])
    row = agg[(agg["task.bins"] == best["task.bins"]) & (agg["algorithm.inner_lr"] == best["algorithm.inner_lr"])
              & (agg["metric"] == "val_mse")].iloc[0]
    assert (row["n"], row["n_runs"], row["n_completed"], row["n_diverged"]) == (1, 2, 1, 1)
    assert np.isnan(row["std"]) and np.isnan(row["ci95"])
    new_best = best_config(agg, rs.group_keys)
    assert (new_best["task.bins"], new_best["algorithm.inner_lr"]) != (best["task.bins"], best["algorithm.inner_lr"])
    assert new_best["n_diverged"] == 0
    with pytest.raises(ValueError, match="validation metric"):
        best_config(agg, rs.group_keys, "test_mse_k1")


def test_best_config_on_synthetic_grid_and_pooled_aggregate(tmp_path):
    make_sweep(tmp_path / "s", {"task.bins": [2, 3, 4, 6], "algorithm.inner_lr": [0.01, 0.03, 0.1, 0.3]},
               seeds=(0, 1, 2))
    rs = load_runs(tmp_path / "s")
    agg = aggregate(rs.runs, rs.group_keys)
    best = best_config(agg, rs.group_keys)
    # The synthetic level is lowest at grid position 0.3 of each axis: the second value.
    assert (best["task.bins"], best["algorithm.inner_lr"]) == (3, 0.03)
    pooled = aggregate(rs.runs, [], ["val_meta_objective"])
    assert len(pooled) == 1 and pooled["n"].iloc[0] == 48
    assert pooled["mean"].iloc[0] == pytest.approx(rs.runs["val_meta_objective"].mean())


def test_curve_bands_are_deterministic_and_bracket_the_mean(real_sweep):
    rs = load_runs(real_sweep)
    a = curve_bands(rs.curves, rs.runs, rs.group_keys, seed=0)
    b = curve_bands(rs.curves, rs.runs, rs.group_keys, seed=0)
    assert a.equals(b)
    assert len(a) == 4 * 3 and (a["n"] == 2).all()
    assert (a["ci95_low"] <= a["mean"] + 1e-12).all() and (a["mean"] <= a["ci95_high"] + 1e-12).all()
    cur = rs.curves[rs.curves["metric"] == "val_meta_objective"].merge(rs.runs[["run"] + rs.group_keys], on="run")
    by_hand = cur.groupby(rs.group_keys + ["step"])["value"].agg(["mean", "min", "max"]).reset_index()
    m = a.merge(by_hand, on=rs.group_keys + ["step"])
    assert np.allclose(m["mean_x"], m["mean_y"])
    # A bootstrap of two values never leaves their range.
    assert (m["ci95_low"] >= m["min"] - 1e-12).all() and (m["ci95_high"] <= m["max"] + 1e-12).all()
