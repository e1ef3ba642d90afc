"""Aggregation over seeds: per configuration mean, std, sem, 95% CI and n; the best configuration.

A configuration is one combination of the swept keys other than ``seed``. Final metrics are
aggregated over the configuration's *completed* runs; diverged and failed runs are counted
(``n_diverged``, ``n_failed``) so a setting that sometimes blows up does not look good.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..rundir import COMPLETED, DIVERGED, FAILED, UNUSABLE
from ..stats import resample_counts
from .intervals import MIN_SEEDS
from .load import STR

# Two-sided 95% Student-t critical values t_{0.975, df} for df = 1..30.
_T975 = [12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
         2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
         2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
         2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272]


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (NaN for df < 1)."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    z = 1.959963985
    # Cornish-Fisher expansion; error < 1e-4 for df > 30.
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def is_test_metric(metric: str) -> bool:
    """Metrics measured on the held-out test bank: never used to choose a configuration."""
    return metric.startswith("test")


def aggregate(runs: pd.DataFrame, by: list[str], metrics: list[str] | None = None) -> pd.DataFrame:
    """Tidy per-configuration statistics over seeds.

    One row per (configuration, metric): the ``by`` columns, ``metric``, ``n`` (completed runs with
    a finite value), ``n_nonfinite`` (completed runs whose value is NaN or infinite), ``mean``, ``std`` (ddof=1),
    ``sem``, ``ci95`` (t-based half-width over seeds; NaN below
    :data:`maml_sweep.analysis.intervals.MIN_SEEDS` seeds),
    ``ci95_low``, ``ci95_high``, and the configuration's run counts ``n_runs``, ``n_completed``,
    ``n_diverged``, ``n_failed``. With ``by=[]`` everything is one configuration.
    """
    if metrics is None:
        metrics = [c for c in (SELECT, "val_meta_objective", "train_meta_objective") if c in runs.columns]
    key = list(by) if by else None
    work = runs.assign(_all=0)
    keys = key or ["_all"]
    status = work["status"].astype(str)
    work["_completed"] = status == COMPLETED
    work["_diverged"] = status == DIVERGED
    work["_failed"] = status == FAILED
    grouped = work.groupby(keys, dropna=False, sort=True, observed=True)
    counts = grouped.agg(n_runs=("status", "size"), n_completed=("_completed", "sum"),
                         n_diverged=("_diverged", "sum"), n_failed=("_failed", "sum"))
    done = work[work["_completed"]]
    parts = []
    for m in metrics:
        vals = done[keys + [m]].copy()
        finite = np.isfinite(vals[m].astype(float))
        vals["_nonfinite"] = ~finite
        vals[m] = vals[m].where(finite)
        g = vals.groupby(keys, dropna=False, sort=True, observed=True)
        stats = g[m].agg(n="count", mean="mean", std="std")
        stats["n_nonfinite"] = g["_nonfinite"].sum()
        stats = stats.reindex(counts.index)
        stats["n"] = stats["n"].fillna(0).astype(np.int64)
        stats["n_nonfinite"] = stats["n_nonfinite"].fillna(0).astype(np.int64)
        stats["sem"] = stats["std"] / np.sqrt(stats["n"])
        tq = np.array([t975(int(n) - 1) if n >= MIN_SEEDS else np.nan for n in stats["n"]])
        stats["ci95"] = tq * stats["sem"]
        stats["ci95_low"] = stats["mean"] - stats["ci95"]
        stats["ci95_high"] = stats["mean"] + stats["ci95"]
        stats.insert(0, "metric", m)
        parts.append(stats.join(counts))
    out = pd.concat(parts).reset_index()
    if not key:
        out = out.drop(columns="_all")
    for c in ("n_runs", "n_completed", "n_diverged", "n_failed"):
        out[c] = out[c].astype(np.int64)
    out["metric"] = out["metric"].astype(STR)
    return out


SELECT = "val_mse"  # model selection's default metric: plain MSE on the shared validation tasks


def eligible(rows: pd.DataFrame) -> pd.Series:
    """Configurations that may be chosen as best: a completed run, none diverged or failed, and every
    completed run's value finite (a configuration with one NaN or inf seed is never best)."""
    return (rows["n"] > 0) & (rows["n_diverged"] == 0) & (rows["n_failed"] == 0) & (rows["n_nonfinite"] == 0)


def best_config(agg: pd.DataFrame, by: list[str], metric: str = SELECT) -> pd.Series:
    """The configuration with the lowest mean ``metric`` (default ``val_mse``, the shared validation
    tasks' MSE) among the :func:`eligible` ones, chosen on validation, never on the test bank; ties
    go to the narrower CI. Raises ValueError for a test-bank metric or when none is eligible.
    (Per task condition: :func:`maml_sweep.analysis.selection.best_per_condition`.)"""
    if is_test_metric(metric):
        raise ValueError(f"the best configuration is chosen on a validation metric, not {metric!r} (test bank)")
    rows = agg[agg["metric"] == metric]
    pool = rows[eligible(rows)]
    if pool.empty:
        raise ValueError(f"no configuration has every run completed with a finite {metric}")
    pool = pool.assign(_ci=pool["ci95"].fillna(np.inf)).sort_values(["mean", "_ci"], kind="stable")
    return pool.drop(columns="_ci").iloc[0]


def ranked(agg: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Configurations ordered best first on ``metric`` (wide: one row per configuration)."""
    rows = agg[agg["metric"] == metric].copy()
    rows["_bad"] = ~eligible(rows)
    rows = rows.sort_values(["_bad", "mean"], na_position="last", kind="stable").drop(columns="_bad")
    return rows.reset_index(drop=True)


def in_order(agg: pd.DataFrame, by: list[str], order: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric``'s rows of ``agg``, one per configuration of ``order`` (rows as from :func:`ranked`)
    and in its order; all-NaN where ``agg`` has no row for a configuration."""
    rows = agg[agg["metric"] == metric]
    if not by:
        return rows.reset_index(drop=True)
    index = pd.MultiIndex.from_frame(order[by]) if len(by) > 1 else pd.Index(order[by[0]])
    return rows.set_index(by).reindex(index)


def config_mask(runs: pd.DataFrame, by: list[str], config) -> pd.Series:
    """Boolean mask of the runs of one configuration (``config`` a mapping key -> value)."""
    mask = pd.Series(True, index=runs.index)
    for k in by:
        v = config[k]
        mask &= runs[k].isna() if pd.isna(v) else (runs[k] == v)
    return mask


def curve_bands(curves: pd.DataFrame, runs: pd.DataFrame, by: list[str], metric: str = "val_meta_objective",
                exclude=UNUSABLE, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per configuration and step: n, mean and a 95% percentile-bootstrap CI of the mean over seeds.

    The same estimate as seaborn's ``errorbar=("ci", 95)``, vectorised over steps (seaborn
    bootstraps each point in a Python loop: about a minute for a 1,000-run sweep), with a fixed
    ``seed`` so a figure is the same each time. Runs with a status in ``exclude`` are left out
    (diverged and failed runs would drag the mean; running and partial runs count as far as they
    got), and so are non-finite values.
    Returns tidy rows: the ``by`` columns, ``step``, ``n``, ``mean``, ``ci95_low``, ``ci95_high``.
    """
    cols = list(by) + ["step", "n", "mean", "ci95_low", "ci95_high"]
    keep = runs[~runs["status"].astype(str).isin(exclude)]
    sub = curves[(curves["metric"] == metric) & curves["run"].isin(keep["run"])]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    wide = sub.pivot_table(index="run", columns="step", values="value", aggfunc="last", observed=True)
    wide = wide.where(np.isfinite(wide))
    steps = wide.columns.to_numpy()
    info = keep.set_index("run").loc[wide.index.astype(str), list(by)].reset_index()
    groups = info.groupby(list(by), dropna=False, sort=True).indices if by else {(): np.arange(len(info))}
    values = wide.to_numpy(dtype=float)
    out = []
    for key, idx in groups.items():
        v = values[idx]                                        # (runs, steps)
        n = np.sum(np.isfinite(v), axis=0)
        ok = n > 0
        if not ok.any():
            continue
        v, n = v[:, ok], n[ok]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of a resample
            mean = np.nanmean(v, axis=0)
            if len(idx) > 1:
                boots = _bootstrap_means(v, n_boot, np.random.default_rng(seed))
                percentile = np.nanpercentile if np.isnan(boots).any() else np.percentile  # same; 10x faster
                low, high = percentile(boots, [2.5, 97.5], axis=0)
            else:
                low = high = mean
        key = key if isinstance(key, tuple) else (key,)
        frame = pd.DataFrame({"step": steps[ok], "n": n, "mean": mean, "ci95_low": low, "ci95_high": high})
        for k, val in zip(by, key):
            frame.insert(len(frame.columns) - 5, k, val)
        out.append(frame)
    if not out:
        return pd.DataFrame(columns=cols)
    res = pd.concat(out, ignore_index=True)[cols]
    for k in by:
        res[k] = res[k].astype(runs[k].dtype)
    return res


def _bootstrap_means(v: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(n_boot, steps) means of ``v`` (runs, steps) over resampled runs, NaNs left out (NaN where a
    resample has no finite value): the resamples' counts times the values, one matrix product, so
    memory is (n_boot, runs + steps) rather than (n_boot, runs, steps)."""
    counts = resample_counts(rng, v.shape[0], n_boot).astype(float)
    finite = np.isfinite(v)
    return (counts @ np.where(finite, v, 0.0)) / (counts @ finite.astype(float))
