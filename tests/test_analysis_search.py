"""The search report's pieces on synthetic runs with a planted effect: the objective depends
strongly on a log-uniform learning rate and not at all on a uniform nuisance parameter."""
import io
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from maml_sweep.analysis import search  # noqa: E402

LR, OTHER, ALG = "algorithm.inner_lr", "other", "algorithm.name"
PARAMS = [LR, OTHER, ALG]
N_TRIALS, SEEDS = 24, (0, 1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def planted_runs(n_trials=N_TRIALS, seeds=SEEDS, seed=0) -> pd.DataFrame:
    """A seed-aware search as load.RunSet.runs has it: trial t's seeds are consecutive jobs,
    rows shuffled so only the job numbers give the order. val_mse = 0.05 * 10^|log10 lr + 2|:
    0.05 at lr = 0.01, up to 100x worse at the search space's ends, as MSEs blow up."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, 0, n_trials)
    other = rng.uniform(0, 1, n_trials)
    alg = rng.choice(["maml", "fomaml"], n_trials)
    rows = []
    for t in range(n_trials):
        for s in seeds:
            job = t * len(seeds) + s
            rows.append({"run": f"sweep/{job}", "sweep": "sweep", "path": f"/out/sweep/{job}", "status": "completed",
                         LR: lr[t], OTHER: other[t], ALG: alg[t], "seed": s,
                         "val_mse": 0.05 * 10 ** abs(np.log10(lr[t]) + 2) + 0.001 * s})
    return pd.DataFrame(rows).sample(frac=1, random_state=1).reset_index(drop=True)


def _trials(runs=None):
    return search.trials_frame(planted_runs() if runs is None else runs, PARAMS, "val_mse")


def _png_size(fig) -> tuple[int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return Image.open(io.BytesIO(buf.getvalue())).size


# ---------------------------------------------------------------- keys

def test_is_continuous_tells_a_grid_key_from_sampled_values():
    grid = pd.Series([0.01, 0.03, 0.1] * 6)  # 18 configurations of a 3 x 6 grid
    assert not search.is_continuous(grid, n_configs=18)
    sampled = pd.Series(np.random.default_rng(0).uniform(0, 1, 20))
    assert search.is_continuous(sampled, n_configs=20)
    assert not search.is_continuous(pd.Series(np.arange(8)), n_configs=40)  # 8 levels over 40 configs: a grid
    assert not search.is_continuous(pd.Series([True, False] * 10), n_configs=20)
    assert not search.is_continuous(pd.Series([f"m{i}" for i in range(20)]), n_configs=20)


def test_log_scaled_for_log_draws_and_decade_grids_not_uniform_draws():
    rng = np.random.default_rng(0)
    assert search.log_scaled(pd.Series(10 ** rng.uniform(-4, 0, 30)))
    assert search.log_scaled(pd.Series([0.001, 0.01, 0.1]))
    assert search.log_scaled(pd.Series([0.2, 0.21, 0.25, 0.3, 0.22, 5.0, 40.0]))  # MSEs with blow-ups
    assert not search.log_scaled(pd.Series(np.arange(1, 31)))  # a linear grid spanning 30x
    assert not search.log_scaled(pd.Series(rng.uniform(0, 1, 30)))  # spans > 20x, but linear
    assert not search.log_scaled(pd.Series([0.01, 0.1]))  # 10x
    assert not search.log_scaled(pd.Series([-1.0, 0.001, 1.0]))
    assert not search.log_scaled(pd.Series(["a", "b"]))


# ---------------------------------------------------------------- trials

def test_trials_follow_job_numbers_and_pool_seeds():
    runs = planted_runs()
    trials = search.trials_frame(runs, PARAMS, "val_mse")
    assert list(trials.columns) == search.TRIAL_COLUMNS + PARAMS
    assert list(trials["trial"]) == list(range(N_TRIALS))
    assert list(trials["run"]) == [f"sweep/{2 * t}" for t in range(N_TRIALS)]  # job 10 after job 8, not after 1
    assert (trials["n_seeds"] == 2).all() and (trials["status"] == "completed").all()
    by_job = runs.assign(job=runs["path"].str.rsplit("/", n=1).str[-1].astype(int)).sort_values("job")
    expected = by_job["val_mse"].to_numpy().reshape(N_TRIALS, 2).mean(axis=1)
    np.testing.assert_allclose(trials["objective"], expected)
    np.testing.assert_allclose(trials[LR], by_job[LR].to_numpy()[::2])
    np.testing.assert_allclose(trials["best_so_far"], np.minimum.accumulate(expected))


def test_a_diverged_seed_makes_the_trial_inf_and_best_so_far_skips_it_and_pruned_trials():
    runs = planted_runs(n_trials=5)
    job = runs["path"].str.rsplit("/", n=1).str[-1].astype(int)
    runs.loc[job == 1, ["status", "val_mse"]] = ["diverged", np.nan]  # trial 0, seed 1
    runs.loc[job == 2, "val_mse"] = np.inf  # trial 1: completed, but no finite value
    runs.loc[job == 4, "status"] = "pruned"  # trial 2, seed 0: its value stays, the trial is pruned
    runs.loc[job.isin([6, 7]), "val_mse"] = 0.01  # trial 3: the best, and a finite one pruned before it
    trials = search.trials_frame(runs, PARAMS, "val_mse")
    assert list(trials["status"]) == ["diverged", "completed", "pruned", "completed", "completed"]
    assert np.isinf(trials["objective"][:2]).all() and np.isfinite(trials["objective"][2:]).all()
    assert trials["best_so_far"][:3].isna().all()
    assert trials["best_so_far"][3] == pytest.approx(0.01)
    assert trials["best_so_far"][4] == pytest.approx(min(0.01, trials["objective"][4]))


def test_a_combination_repeated_with_the_same_seed_is_a_new_trial():
    runs = pd.DataFrame({"run": ["a", "b", "c", "d"], "path": ["/s/0", "/s/1", "/s/2", "/s/3"],
                         "status": "completed", "steps": [3, 3, 3, 5], "seed": [0, 1, 0, 0],
                         "val_mse": [1.0, 2.0, 4.0, 8.0]})
    trials = search.trials_frame(runs, ["steps"], "val_mse")
    assert list(trials["run"]) == ["a", "c", "d"]
    assert list(trials["n_seeds"]) == [2, 1, 1]
    assert list(trials["objective"]) == [1.5, 4.0, 8.0]
    no_seed = search.trials_frame(runs.drop(columns="seed"), ["steps"], "val_mse")
    assert list(no_seed["n_seeds"]) == [1, 1, 1, 1]


def test_trials_frame_names_a_missing_column():
    with pytest.raises(KeyError, match="'val_mse'"):
        search.trials_frame(planted_runs().drop(columns="val_mse"), PARAMS, "val_mse")


# ---------------------------------------------------------------- importance

def test_optuna_fanova_ranks_the_planted_parameter_first():
    pytest.importorskip("optuna", minversion="4", reason="optuna>=4 is in the [hpo] extra, not [test]")
    pytest.importorskip("sklearn", reason="Optuna's fANOVA needs scikit-learn")
    imp = search.importance(_trials(), PARAMS, "val_mse", seed=0)
    assert list(imp.columns) == ["param", "importance", "evaluator"]
    assert imp["param"].iloc[0] == LR and imp["importance"].iloc[0] > 0.6
    assert imp["importance"].sum() == pytest.approx(1.0)
    assert imp["evaluator"].str.contains("fANOVA").all() and "log10(val_mse)" in imp["evaluator"].iloc[0]
    again = search.importance(_trials(), PARAMS, "val_mse", seed=0)
    pd.testing.assert_frame_equal(imp, again)


def test_without_optuna_the_anova_fallback_ranks_the_planted_parameter_first(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    imp = search.importance(_trials(), PARAMS, "val_mse")
    assert imp["param"].iloc[0] == LR and imp["importance"].iloc[0] > 0.8
    assert imp["importance"].sum() == pytest.approx(1.0)
    assert imp["evaluator"].str.contains("ANOVA").all() and "optuna not installed" in imp["evaluator"].iloc[0]


def test_anova_importance_matches_a_hand_computation():
    # Two parameters over 6 trials; bins = round(sqrt(6)) = 2, so the numeric one splits by rank into halves.
    usable = pd.DataFrame({"a": ["x", "x", "x", "y", "y", "y"], "b": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    target = np.array([1.0, 2.0, 3.0, 7.0, 8.0, 10.0])
    total = ((target - target.mean()) ** 2).sum()
    between_a = 3 * (2.0 - target.mean()) ** 2 + 3 * (25 / 3 - target.mean()) ** 2
    eps_a = (between_a - 1 * (total - between_a) / 4) / total
    assert eps_a == pytest.approx(0.8754, abs=1e-4)  # (60.17 - 6.667 / 4) / 66.83
    # b's rank halves are the same groups as a's, so both explain the same share.
    assert search.anova_importance(usable, ["a", "b"], target) == pytest.approx({"a": 0.5, "b": 0.5})
    usable["b"] = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]  # b's halves {1,2,3} = trials 0,2,4 and {4,5,6} = 1,3,5
    means = np.array([(1 + 3 + 8) / 3, (2 + 7 + 10) / 3])
    between_b = 3 * ((means - target.mean()) ** 2).sum()
    eps_b = max(0.0, (between_b - (total - between_b) / 4) / total)
    expected = {"a": eps_a / (eps_a + eps_b), "b": eps_b / (eps_a + eps_b)}
    assert search.anova_importance(usable, ["a", "b"], target) == pytest.approx(expected)


def test_importance_is_nan_when_nothing_can_be_apportioned():
    trials = _trials(planted_runs(n_trials=3))
    trials.loc[1:, "status"] = "diverged"
    imp = search.importance(trials, PARAMS, "val_mse")
    assert imp["importance"].isna().all() and "fewer than 2" in imp["evaluator"].iloc[0]


# ---------------------------------------------------------------- figures

def _planted_with_pruned_and_diverged():
    runs = planted_runs()
    job = runs["path"].str.rsplit("/", n=1).str[-1].astype(int)
    runs.loc[job.isin([6, 7]), "status"] = "pruned"  # trial 3
    runs.loc[job == 11, ["status", "val_mse"]] = ["diverged", np.nan]  # trial 5
    return _trials(runs)


def test_history_marks_pruned_and_diverged_trials_and_fits_2400_px():
    trials = _planted_with_pruned_and_diverged()
    fig = search.history_figure(trials, "val_mse")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("pruned (1") for t in legend)
    assert any("diverged (1)" in t for t in legend) and "best so far" in legend
    assert ax.get_xlabel() == "trial (in order started)" and ax.get_ylabel() == "val_mse (mean over seeds)"
    assert ax.get_yscale() == "log"  # the planted objective spans 0.05 .. 5
    points = {c.get_label(): c for c in ax.collections}
    pruned = next(c for lbl, c in points.items() if lbl.startswith("pruned"))
    assert list(pruned.get_offsets()[:, 0]) == [3]
    top = next(c for lbl, c in points.items() if "diverged" in lbl)
    assert list(top.get_offsets()[:, 0]) == [5] and list(top.get_offsets()[:, 1]) == [1.0]  # axes top
    best = next(ln for ln in ax.get_lines() if ln.get_label() == "best so far")
    assert np.nanmin(best.get_ydata()) == pytest.approx(trials["objective"][trials["status"] == "completed"].min())
    width, _ = _png_size(fig)
    assert width <= 2400


def test_slices_log_axis_for_the_log_parameter_categories_for_text_and_a_trial_colourbar():
    trials = _planted_with_pruned_and_diverged()
    fig = search.slices_figure(trials, PARAMS, "val_mse")
    panels = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_xlabel() in PARAMS}
    assert panels[LR].get_xscale() == "log" and panels[OTHER].get_xscale() == "linear"
    assert [t.get_text() for t in panels[ALG].get_xticklabels()] == ["fomaml", "maml"]
    assert panels[LR].get_yscale() == "log"
    colourbar = [ax for ax in fig.axes if ax.get_ylabel() == "trial"]
    assert len(colourbar) == 1
    best = search.best_trial(trials)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"best: trial {best}" in texts and any(t.startswith("pruned") for t in texts)
    ring = next(c for c in panels[LR].collections if c.get_label().startswith("best"))
    assert ring.get_offsets()[0][0] == pytest.approx(trials[LR][best])
    assert _png_size(fig)[0] <= 2400


def test_slices_wrap_many_parameters_at_four_per_row_within_2400_px():
    trials = _trials()
    rng = np.random.default_rng(3)
    extra = [f"algorithm.extra_parameter_{i}" for i in range(7)]
    for p in extra:
        trials[p] = rng.uniform(0, 1, len(trials))
    fig = search.slices_figure(trials, PARAMS + extra, "val_mse")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel()]
    assert len(panels) == 10
    assert len({round(ax.get_position().y0, 3) for ax in panels}) == 3  # rows of 4, 4, 2
    tight = fig.get_tightbbox(fig.canvas.get_renderer())  # what bbox_inches="tight" saves, in inches
    assert tight.width * 110 <= 2400


def test_no_trials_no_figures():
    empty = _trials().iloc[:0]
    assert search.history_figure(empty, "val_mse") is None
    assert search.slices_figure(empty, PARAMS, "val_mse") is None
