"""Choosing per task condition, on validation: ``best.csv`` and the per-condition ranking.

Within each combination of condition levels the configurations (method and hyperparameter values)
are ranked on the validation metric (default ``val_mse``); the best is the lowest mean over seeds
among the eligible ones (:func:`maml_sweep.analysis.aggregate.eligible`: every run completed with a
finite value). A condition where nothing is eligible has no best, and says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregate import eligible
from .design import Design

BEST_CSV = "best.csv"


def conditions_of(frame: pd.DataFrame, design: Design) -> list[tuple[tuple, pd.DataFrame]]:
    """(condition values, rows) per condition combination, in the levels' sorted order; one group
    ``()`` with every row when nothing is a condition."""
    if not design.conditions:
        return [((), frame)]
    out = []
    for key, part in frame.groupby(design.conditions, dropna=False, sort=True):
        out.append((key if isinstance(key, tuple) else (key,), part))
    return out


def ranked_within(agg: pd.DataFrame, design: Design, select: str) -> pd.DataFrame:
    """``select``'s rows of ``agg`` ordered condition by condition, eligible configurations first by
    mean (ties: narrower CI), with ``rank`` (1 = best of its condition; eligible rows only) and
    ``eligible`` columns."""
    rows = agg[agg["metric"] == select].copy()
    rows["eligible"] = eligible(rows)
    parts = []
    for _, part in conditions_of(rows, design):
        part = part.assign(_ci=part["ci95"].fillna(np.inf), _bad=~part["eligible"])
        part = part.sort_values(["_bad", "mean", "_ci"], na_position="last", kind="stable")
        rank = np.arange(1, len(part) + 1, dtype=float)
        rank[~part["eligible"].to_numpy()] = np.nan
        parts.append(part.drop(columns=["_ci", "_bad"]).assign(rank=rank))
    if not parts:
        return rows.assign(rank=np.nan)
    return pd.concat(parts, ignore_index=True)


def best_per_condition(agg: pd.DataFrame, design: Design, select: str) -> pd.DataFrame:
    """One row per condition combination: the condition keys, the chosen keys, ``select``'s
    ``mean``/``ci95``/``n``, ``n_nonfinite`` and ``note`` (why there is no best, when there is none)."""
    order = ranked_within(agg, design, select)
    rows = []
    for cond, part in conditions_of(order, design):
        pick = part[part["rank"] == 1]
        if len(pick):
            rows.append(pick.iloc[0].to_dict() | {"note": ""})
        else:
            bad = int((part["n_nonfinite"] > 0).sum() + ((part["n_diverged"] + part["n_failed"]) > 0).sum())
            rows.append(dict(zip(design.conditions, cond)) | {
                "note": f"no eligible configuration ({bad} with a diverged, failed or non-finite run)"})
    cols = design.keys + ["mean", "ci95", "n", "n_nonfinite", "n_runs", "note"]
    return pd.DataFrame(rows).reindex(columns=cols)
