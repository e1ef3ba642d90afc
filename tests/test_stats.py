"""Robust statistics and bootstrap CIs of per-task MSE, recomputed by hand."""
import math

import numpy as np
import pytest

from maml_sweep import evaluate, stats


def test_median_trimmed_mean_and_blowup_by_hand():
    x = np.array([[3.0], [1.0], [2.0], [250.0], [np.nan], [4.0], [5.0], [6.0], [7.0], [8.0],
                  [9.0], [10.0], [11.0], [12.0], [13.0], [14.0], [15.0], [16.0], [17.0], [18.0]])
    # 20 tasks: NaN counts as +inf; 250 > BLOWUP_MSE (100); trim 10% = 2 tasks at each end
    assert stats.median(x)[0] == 10.5  # sorted: 1..18, 250, inf: the 10th and 11th are 10 and 11
    assert stats.trimmed_mean(x)[0] == pytest.approx(np.mean(np.arange(3, 19)))
    assert stats.blowup_fraction(x)[0] == pytest.approx(2 / 20)
    assert stats.mean(x)[0] == math.inf
    assert stats.blowup_fraction(np.array([100.0, 100.5])) == 0.5  # the threshold is "above 100"


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).exponential(size=(200, 3))
    low, high = stats.bootstrap_mean_ci(x)
    low2, high2 = stats.bootstrap_mean_ci(x)
    assert np.array_equal(low, low2) and np.array_equal(high, high2)
    assert np.all(low < x.mean(axis=0)) and np.all(x.mean(axis=0) < high)
    # the bootstrap's own replicates, by hand, with the same generator
    counts = stats.resample_counts(np.random.default_rng(stats.BOOT_SEED), 200, stats.N_BOOT)
    assert counts.shape == (stats.N_BOOT, 200) and np.all(counts.sum(axis=1) == 200)
    boots = counts @ x[:, 0] / 200
    assert low[0] == np.sort(boots)[int(np.floor(0.025 * (stats.N_BOOT - 1)))]


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    trials, n = 400, 60
    covered = 0
    for i in range(trials):
        x = rng.exponential(scale=2.0, size=n)  # skewed, true mean 2
        low, high = stats.bootstrap_mean_ci(x, n_boot=500, seed=i)
        covered += low <= 2.0 <= high
    # percentile bootstrap under-covers a little for skewed data at n=60 (~93%); a normal
    # approximation with the wrong scale, or a CI of the median, would be far off
    assert 0.89 <= covered / trials <= 0.98


def test_one_blown_up_task_shows_in_every_statistic(tmp_path):
    mse = np.tile(np.linspace(0.5, 1.5, 50)[:, None], (1, 11))
    mse[17, 5:] = [3e3, 1e5, 1e9, np.inf, np.nan, np.nan]  # task 17 blows up from k=5 on
    keys = evaluate.record(tmp_path, {"trained": mse}, "trained", [1, 5, 10], 1)
    assert keys["test_blowup_k1"] == 0 and keys["test_blowup_k5"] == keys["test_blowup_k10"] == 1 / 50
    assert keys["test_mse_k5"] == pytest.approx(mse[:, 5].mean()) and keys["test_mse_k5"] > 60
    assert keys["test_mse_k10"] == math.inf
    assert keys["test_median_k10"] == pytest.approx(np.median(np.r_[np.delete(mse[:, 10], 17), np.inf]))
    rows = evaluate.summarise("trained", mse)
    assert rows[5]["blowup_frac"] == 0.02 and rows[5]["mse_ci95_high"] > 60 > rows[1]["mse_ci95_high"]
    assert rows[10]["mse_mean"] == math.inf and rows[10]["mse_ci95_high"] == math.inf
    text = (tmp_path / "adaptation.csv").read_text()
    assert "inf" in text and ",0.02," in text


def test_weighted_means_keep_non_finite_draws():
    v = np.array([1.0, np.inf, -np.inf, np.nan])
    counts = np.array([[4, 0, 0, 0], [2, 2, 0, 0], [2, 0, 2, 0], [1, 1, 2, 0], [3, 0, 0, 1]])
    assert stats.weighted_means(counts, v).tolist()[:3] == [1.0, math.inf, -math.inf]
    assert np.isnan(stats.weighted_means(counts, v)[3:]).all()


