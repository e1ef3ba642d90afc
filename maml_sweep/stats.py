"""Statistics of per-task test MSE: robust summaries and seeded bootstrap CIs. Pure numpy.

Per-task MSE comes as arrays with tasks along axis 0: shape (T,) or (T, K) (K adaptation steps).
MSE after a few gradient steps is heavy-tailed: a task whose step size is beyond the stability
limit of its loss blows up (MSE in the thousands, then inf or NaN). So beside the mean:

- ``median`` (NaN counted as +inf: a NaN comes from an overflow);
- ``trimmed``: the 10% trimmed mean (the lowest and the highest ``floor(0.1 T)`` tasks left out;
  scipy's ``trim_mean(x, 0.1)``);
- ``blowup``: the fraction of tasks whose MSE is non-finite or above :data:`BLOWUP_MSE`;
- ``ci95_low``/``ci95_high``: a 95% percentile-bootstrap CI of the mean over tasks
  (:data:`N_BOOT` resamples of the tasks, seeded, so the same numbers give the same CI).

The mean itself is not hidden: with a non-finite task it is inf, as it should be.
"""
from __future__ import annotations

import math

import numpy as np

BLOWUP_MSE = 100.0  # a task's MSE above this counts as a blow-up: 8x the MSE of predicting 0 on the
                    # largest task of either built-in family (sine amplitude 5: 12.5; steps +-3: 9)
TRIM = 0.1          # fraction cut from each end for the trimmed mean
N_BOOT = 2000       # bootstrap resamples
BOOT_SEED = 0       # seed of every bootstrap's generator: the tables' intervals and the figures' bands
LEVEL = 0.95


def _inf_for_nan(mse) -> np.ndarray:
    a = np.array(mse, dtype=float)
    a[np.isnan(a)] = np.inf
    return a


def blown_up(mse) -> np.ndarray:
    """True where a task's MSE is non-finite or above :data:`BLOWUP_MSE` (same shape as ``mse``)."""
    a = np.asarray(mse, dtype=float)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(a) | (a > BLOWUP_MSE)


def blowup_fraction(mse) -> np.ndarray:
    """Fraction of tasks (axis 0) that blew up."""
    return blown_up(mse).mean(axis=0)


def mean(mse) -> np.ndarray:
    """Mean over tasks (axis 0); inf when any task is non-finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _inf_for_nan(mse).mean(axis=0)


def median(mse) -> np.ndarray:
    """Median over tasks (axis 0), NaN counted as +inf."""
    return np.median(_inf_for_nan(mse), axis=0)


def trimmed_mean(mse, trim: float = TRIM) -> np.ndarray:
    """Mean over tasks (axis 0) of all but the ``floor(trim * T)`` lowest and highest values."""
    a = np.sort(_inf_for_nan(mse), axis=0)
    cut = int(math.floor(trim * a.shape[0]))
    with np.errstate(invalid="ignore"):
        return a[cut:a.shape[0] - cut].mean(axis=0)


def resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement:
    integer counts, shape (n_boot, n), each row summing to n."""
    draws = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n)


def weighted_means(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Means of ``values`` (n,) or (n, K) under resample ``counts`` (B, n): shape (B,) or (B, K).
    A resample that draws a non-finite value gets the mean numpy would give it (inf, -inf, NaN)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        out = counts @ np.where(np.isfinite(v), v, 0.0) / counts.sum(axis=1).reshape((-1,) + (1,) * (v.ndim - 1))
    return _nonfinite_draws(out, v, lambda mask: counts @ mask.astype(float) > 0)


def _nonfinite_draws(out: np.ndarray, v: np.ndarray, drawn) -> np.ndarray:
    """``out`` with each replicate that drew a non-finite value of ``v`` set to that value's
    mean: +inf, -inf, or NaN (a NaN drawn, or both infinities). ``drawn(mask)`` -> bool (B, ...)."""
    if np.isfinite(v).all():
        return out
    pos, neg, nan = drawn(v == np.inf), drawn(v == -np.inf), drawn(np.isnan(v))
    out = np.where(pos, np.inf, out)
    out = np.where(neg, -np.inf, out)
    return np.where(nan | (pos & neg), np.nan, out)


def percentile_ci(boots: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentiles of bootstrap replicates (axis 0), without interpolation (so an
    inf among the replicates is never mixed into a finite bound); NaN replicates count as +inf."""
    b = _inf_for_nan(boots)
    tail = (1 - level) / 2
    return (np.quantile(b, tail, axis=0, method="lower"), np.quantile(b, 1 - tail, axis=0, method="higher"))


def bootstrap_mean_ci(mse, n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL):
    """95% percentile-bootstrap CI of the mean over tasks (axis 0): (low, high), each of shape
    ``mse.shape[1:]``."""
    a = np.asarray(mse, dtype=float)
    counts = resample_counts(np.random.default_rng(seed), a.shape[0], n_boot)
    return percentile_ci(weighted_means(counts, a), level)


def summarise(mse, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict[str, np.ndarray]:
    """Every statistic of per-task MSE ``mse`` (T, K) over tasks: dict of arrays of shape (K,):
    ``mean``, ``ci95_low``, ``ci95_high``, ``median``, ``trimmed``, ``blowup``."""
    a = np.asarray(mse, dtype=float)
    low, high = bootstrap_mean_ci(a, n_boot, seed)
    return {"mean": mean(a), "ci95_low": low, "ci95_high": high, "median": median(a),
            "trimmed": trimmed_mean(a), "blowup": blowup_fraction(a)}
