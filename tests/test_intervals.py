"""Intervals over seeds and tasks: hand computations, and the coverage simulation at 3 and 5 seeds."""
import math

import numpy as np
import pytest

from maml_sweep.analysis import intervals as iv


def test_iqm_by_hand():
    x = np.array([[9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan, 100.0, 8.0, 0.0]])
    # 12 values, NaN as +inf: cut 3 from each end -> 3, 4, 5, 6, 7, 8
    assert iv.iqm(x)[0] == pytest.approx(np.mean([3, 4, 5, 6, 7, 8]))
    assert iv.interval(np.tile(x, (3, 1)), "iqm").estimate == pytest.approx(5.5)


def test_probability_of_improvement_by_hand():
    a = np.array([[1.0, 2.0, 3.0, np.nan], [1.0, 5.0, 0.5, 2.0], [3.0, 3.0, 3.0, 3.0]])
    b = np.array([[2.0, 2.0, 1.0, 5.0], [0.5, 6.0, 1.0, np.inf], [4.0, 1.0, 3.0, 9.0]])
    wins = [[1, 0.5, 0, 0], [0, 1, 1, 1], [1, 0, 0.5, 1]]  # a < b; ties (NaN vs inf counts: inf == inf) half
    wins[0][3] = 0  # NaN (as +inf) against 5: a loses
    p = iv.probability_of_improvement(a, b)
    assert p.estimate == pytest.approx(np.mean(wins))
    assert p.n_seeds == 3 and p.n_tasks == 4 and p.low < p.estimate < p.high


def test_two_way_variance_by_hand():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 6))
    S, T = z.shape
    g, sm, tm = z.mean(), z.mean(1), z.mean(0)
    ms_s, ms_t = T * np.var(sm, ddof=1), S * np.var(tm, ddof=1)
    ms_e = ((z - sm[:, None] - tm[None, :] + g) ** 2).sum() / ((S - 1) * (T - 1))
    var = max((ms_s + ms_t - ms_e) / (S * T), max(ms_s, ms_t) / (S * T))
    out = iv.two_way_interval(z)
    assert out.estimate == pytest.approx(g)
    assert out.half == pytest.approx(iv.t_quantile(out.df) * math.sqrt(var))


def test_below_three_seeds_there_is_no_interval_and_it_says_why():
    out = iv.interval(np.ones((2, 10)) + np.arange(10))
    assert math.isnan(out.low) and out.note == "2 seeds: no interval (needs 3)"


def coverage(S, sa, sb, se, statistic, paired, reps=400, T=300, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        b = rng.normal(0, sb, T)[None, :]
        x = 1.0 + rng.normal(0, sa, S)[:, None] + b + rng.normal(0, se, (S, T))
        if paired:
            y = 1.3 + rng.normal(0, sa, S)[:, None] + 0.5 * b + rng.normal(0, sb / 2, T)[None, :] \
                + rng.normal(0, se, (S, T))
            hits += iv.paired_interval(x, y, statistic).covers(-0.3)
        else:
            hits += iv.interval(x, statistic).covers(1.0)
    return hits / reps


SCENARIOS = {"seed-dominated": (1.0, 0.1, 0.3), "task-dominated": (0.05, 1.0, 0.3)}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("paired", [False, True])
def test_the_mean_interval_covers_95_percent_at_3_and_5_seeds(scenario, seeds, paired):
    assert 0.93 <= coverage(seeds, *SCENARIOS[scenario], "mean", paired) <= 0.97


@pytest.mark.slow
@pytest.mark.parametrize("statistic", ["median", "iqm"])
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("paired", [False, True])
def test_median_and_iqm_intervals_cover_95_percent_at_3_and_5_seeds(statistic, scenario, seeds, paired):
    assert 0.93 <= coverage(seeds, *SCENARIOS[scenario], statistic, paired) <= 0.97


def test_variance_components_and_the_precision_advisor_by_hand():
    rng = np.random.default_rng(11)
    S, T = 40, 2000  # large: the ANOVA estimates land near the planted variances
    z = 0.1 + rng.normal(0, 0.2, S)[:, None] + rng.normal(0, 0.3, T)[None, :] + rng.normal(0, 0.5, (S, T))
    comp = iv.components(z)
    assert comp.seed == pytest.approx(0.04, rel=0.5) and comp.task == pytest.approx(0.09, rel=0.15)
    assert comp.noise == pytest.approx(0.25, rel=0.05)
    # the half-width at S seeds and T tasks, by hand (Satterthwaite df over the three terms)
    terms = [(comp.seed / 5, 4), (comp.task / 300, 299), (comp.noise / 1500, 4 * 299)]
    var = sum(v for v, _ in terms)
    df = var ** 2 / sum(v ** 2 / d for v, d in terms)
    assert comp.half_width(5, 300) == pytest.approx(iv.t_quantile(df) * math.sqrt(var))
    need = comp.seeds_for(0.2, n_tasks=300)
    assert comp.half_width(need, 300) <= 0.2 < comp.half_width(need - 1, 300)
    assert comp.seeds_for(1e-6) is None  # the shared tasks' term never shrinks with seeds
    assert comp.tasks_for(0.2, n_seeds=1000) in (2000, 4000, 8000)
