"""Intervals over seeds *and* test tasks that hold their 95% at the seed counts people use (3-5).

Scores come as a matrix ``x`` of shape (S seeds, T tasks): every seed of a configuration is scored
on the same T test tasks (one bank per task condition). Two things vary between repetitions of
such an experiment: the seeds (a seed effect shared by all of a seed's tasks) and the bank's
tasks (a task effect shared by all seeds). The model is the crossed two-way random-effects one,
``x[s, t] = mu + a_s + b_t + e_st``, and the estimate's variance is
``var(a)/S + var(b)/T + var(e)/(S T)``, estimated without bias from the ANOVA mean squares
(``(MS_seed + MS_task - MS_error) / (S T)``) with Satterthwaite's degrees of freedom and a Student-t
quantile. With three seeds and seed-to-seed variance dominating, the quantile is t(2) = 4.30, not
the 1.96 a percentile bootstrap effectively uses; that is what makes the interval cover.

Statistics other than the mean (median, interquartile mean) are linearised: per seed, the
statistic over its tasks plus each task's influence on it, ``Z[s, t] = theta_s + IF_s(x[s, t])``,
and the same two-way variance of ``Z``. The estimate is the mean over seeds of the per-seed
statistic. A paired difference (two configurations on the same seeds and tasks) is the same
computation on ``Z_a - Z_b``. Below :data:`MIN_SEEDS` seeds no interval is given: with one or two
seeds the seed-to-seed variance cannot be estimated usefully.

``tests/test_intervals.py`` runs the coverage simulation (400 repetitions per scenario).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit  # Student-t quantiles for fractional df (scipy.stats costs ~1 s to import)

LEVEL = 0.95
MIN_SEEDS = 3  # fewer seeds: no interval (the seed variance is not estimable usefully)
IQM_TRIM = 0.25  # the interquartile mean: the mean of the middle 50% (25% cut from each end)
STATISTICS = ("mean", "median", "iqm")


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval (NaN bounds and a ``note`` when there is none)."""

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_tasks: int
    df: float = math.nan
    note: str = ""

    @property
    def half(self) -> float:
        """Half-width (NaN without an interval)."""
        return (self.high - self.low) / 2

    def covers(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student-t critical value for (fractional) ``df``; NaN when df < 1e-9."""
    return float(stdtrit(df, 0.5 + level / 2)) if df > 1e-9 else math.nan


def _nan_as_inf(x) -> np.ndarray:
    a = np.array(x, dtype=float, ndmin=2)
    a[np.isnan(a)] = np.inf
    return a


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean along ``axis``: mean of the values left after cutting ``floor(n/4)`` from
    each end (scipy's ``trim_mean(x, 0.25)``); NaN counts as +inf, so up to a quarter of blown-up
    tasks leave it finite."""
    a = np.sort(np.moveaxis(_nan_as_inf(x), axis, -1), axis=-1)
    cut = int(math.floor(IQM_TRIM * a.shape[-1]))
    with np.errstate(invalid="ignore"):
        return a[..., cut:a.shape[-1] - cut].mean(axis=-1)


def _influence(x: np.ndarray, statistic: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed (row of ``x``, (S, T)): the statistic over its tasks (S,) and each task's influence
    on it (S, T), the first-order term of the statistic's change when that task's weight changes."""
    S, T = x.shape
    if statistic == "mean":
        theta = x.mean(axis=1)
        return theta, x - theta[:, None]
    srt = np.sort(x, axis=1)
    if statistic == "iqm":
        cut = int(math.floor(IQM_TRIM * T))
        theta = srt[:, cut:T - cut].mean(axis=1)
        lo, hi = srt[:, cut][:, None], srt[:, T - cut - 1][:, None]
        clipped = np.clip(x, lo, hi)
        winsor = clipped.mean(axis=1, keepdims=True)
        return theta, (clipped - winsor) / (1 - 2 * cut / T)
    if statistic == "median":
        theta = np.median(x, axis=1)
        # the density at the median from the spread of nearby order statistics (Hall-Sheather bandwidth)
        h = min(0.45, 0.9716 * T ** (-1 / 3))
        lo = np.quantile(x, 0.5 - h, axis=1, method="lower")
        hi = np.quantile(x, 0.5 + h, axis=1, method="higher")
        with np.errstate(invalid="ignore", over="ignore"):
            sparsity = (hi - lo) / (2 * h)  # 1 / density
            sign = np.sign(x - theta[:, None])
            return theta, np.where(sign == 0, 0.0, sign * sparsity[:, None] / 2)
    raise ValueError(f"statistic {statistic!r}: allowed {', '.join(STATISTICS)}")


def linearised(x, statistic: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(per-seed statistic (S,), Z (S, T)) for ``x`` (S, T): see the module docstring."""
    a = _nan_as_inf(x)  # a NaN task is an overflow: it counts as +inf
    with np.errstate(invalid="ignore", over="ignore"):
        theta, infl = _influence(a, statistic)
    return theta, theta[:, None] + infl


def two_way_interval(z, level: float = LEVEL) -> Interval:
    """Mean of ``z`` (S seeds, T tasks, crossed) with its two-way random-effects t-interval."""
    z = np.array(z, dtype=float, ndmin=2)
    S, T = z.shape
    with np.errstate(invalid="ignore", over="ignore"):
        est = float(z.mean())
    if not np.isfinite(z).all():
        return Interval(est, math.nan, math.nan, S, T, note="not finite (some tasks blow up)")
    if S < MIN_SEEDS:
        return Interval(est, math.nan, math.nan, S, T,
                        note=f"{S} seed{'s' if S != 1 else ''}: no interval (needs {MIN_SEEDS})")
    seed_means, task_means = z.mean(axis=1), z.mean(axis=0)
    ms_seed = T * seed_means.var(ddof=1)
    if T > 1:
        ms_task = S * task_means.var(ddof=1)
        resid = z - seed_means[:, None] - task_means[None, :] + est
        ms_err = float((resid ** 2).sum()) / ((S - 1) * (T - 1))
        terms = [(ms_seed, S - 1), (ms_task, T - 1), (-ms_err, (S - 1) * (T - 1))]
    else:
        terms = [(ms_seed, S - 1)]
    var = sum(m for m, _ in terms) / (S * T)
    floor = max(terms[:2], key=lambda t: t[0])
    if var < floor[0] / (S * T):  # the unbiased estimate can undershoot: never below either main term
        var, df = floor[0] / (S * T), float(floor[1])
    else:
        denom = sum((m / (S * T)) ** 2 / d for m, d in terms if d > 0)
        df = var ** 2 / denom if denom > 0 else math.inf
    half = t_quantile(df, level) * math.sqrt(var)
    return Interval(est, est - half, est + half, S, T, df)


def interval(x, statistic: str = "mean", level: float = LEVEL) -> Interval:
    """``statistic`` of per-task scores ``x`` (S seeds, T tasks): mean over seeds of the per-seed
    statistic, with its 95% interval over seeds and tasks."""
    theta, z = linearised(x, statistic)
    out = two_way_interval(z, level)
    with np.errstate(invalid="ignore", over="ignore"):
        est = float(theta.mean())
    half = out.half  # centred on the estimate (the mean of the per-seed statistics)
    return Interval(est, est - half, est + half, out.n_seeds, out.n_tasks, out.df, out.note)


def paired_interval(a, b, statistic: str = "mean", level: float = LEVEL) -> Interval:
    """``statistic(a) - statistic(b)`` for two configurations scored on the same seeds (rows) and
    tasks (columns), with its paired 95% interval. For the mean this is the mean paired difference;
    for the median and IQM it is the difference of the two statistics (not a statistic of differences)."""
    ta, za = linearised(a, statistic)
    tb, zb = linearised(b, statistic)
    with np.errstate(invalid="ignore"):
        out = two_way_interval(za - zb, level)
        est = float(ta.mean() - tb.mean())
    return Interval(est, est - out.half, est + out.half, out.n_seeds, out.n_tasks, out.df, out.note)


def probability_of_improvement(a, b, level: float = LEVEL) -> Interval:
    """P(a beats b): the chance that on a random (seed, task) ``a``'s MSE is lower than ``b``'s, ties
    counted half; paired cell by cell (same seeds, same tasks). NaN counts as +inf (a blow-up loses)."""
    a, b = _nan_as_inf(a), _nan_as_inf(b)
    wins = (a < b) + 0.5 * (a == b)
    return two_way_interval(wins, level)


def resolvable(x_diff, level: float = LEVEL) -> float:
    """The smallest paired mean difference the data resolve at ``level``: the interval's half-width."""
    return two_way_interval(x_diff, level).half


@dataclass(frozen=True)
class Components:
    """Variance components of paired differences ``z`` (S seeds, T tasks) under the two-way model:
    seed-to-seed, task-to-task and residual variance (ANOVA estimates, negative ones set to 0)."""

    seed: float
    task: float
    noise: float
    n_seeds: int
    n_tasks: int

    def half_width(self, n_seeds: int, n_tasks: int, level: float = LEVEL) -> float:
        """The 95% interval's half-width with ``n_seeds`` seeds and ``n_tasks`` tasks (Satterthwaite df)."""
        S, T = n_seeds, n_tasks
        terms = [(self.seed / S, S - 1), (self.task / T, T - 1), (self.noise / (S * T), (S - 1) * (T - 1))]
        var = sum(v for v, _ in terms)
        denom = sum(v ** 2 / d for v, d in terms if d > 0 and v > 0)
        df = var ** 2 / denom if denom > 0 else math.inf
        return t_quantile(max(df, 1.0), level) * math.sqrt(var)

    def seeds_for(self, delta: float, n_tasks: int | None = None, most: int = 1000) -> int | None:
        """The fewest seeds (at least :data:`MIN_SEEDS`) whose interval half-width is at most ``delta``
        on ``n_tasks`` tasks (default: as many as now); None if even ``most`` seeds do not."""
        T = n_tasks or self.n_tasks
        for S in range(MIN_SEEDS, most + 1):
            if self.half_width(S, T) <= delta:
                return S
        return None


    def tasks_for(self, delta: float, n_seeds: int | None = None, most: int = 1_000_000) -> int | None:
        """The fewest test tasks (a power-of-two multiple of today's bank, up to ``most``) whose interval
        half-width is at most ``delta`` with ``n_seeds`` seeds (default: as many as now); None if none do."""
        S, T = n_seeds or self.n_seeds, self.n_tasks
        while T <= most:
            if self.half_width(S, T) <= delta:
                return T
            T *= 2
        return None


def components(z) -> Components:
    """The two-way ANOVA variance components of ``z`` (S seeds, T tasks); needs S >= 2 and T >= 2."""
    z = np.array(z, dtype=float, ndmin=2)
    S, T = z.shape
    g, sm, tm = z.mean(), z.mean(axis=1), z.mean(axis=0)
    ms_seed, ms_task = T * sm.var(ddof=1), S * tm.var(ddof=1)
    ms_err = float(((z - sm[:, None] - tm[None, :] + g) ** 2).sum()) / ((S - 1) * (T - 1))
    return Components(max((ms_seed - ms_err) / T, 0.0), max((ms_task - ms_err) / S, 0.0), ms_err, S, T)
