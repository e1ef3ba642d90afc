"""Paired comparisons on the shared test bank: each configuration against the best one.

The best configuration is chosen on validation (``val_mse``); the effect is measured on the
test bank. Runs of one task config and ``eval`` protocol see the very same test tasks
(``test_mse.npz`` holds every task's MSE), and configurations usually share seeds, so the
difference is paired over seeds and tasks: the mean over (seed, task) of
``mse[config] - mse[best]``, with a 95% CI from a hierarchical bootstrap (resample seeds, then
tasks; :func:`maml_sweep.stats.hierarchical_bootstrap`). Configurations on different test banks
(a swept task or eval key) or without common seeds are compared unpaired: each side bootstrapped
on its own, the CI of the difference of means. The difference of medians (same resamples)
stands beside it, since a few blown-up tasks can dominate a mean.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import rundir, stats
from .aggregate import config_mask, in_order, ranked
from ..rundir import COMPLETED
from .plots import label

DEFAULT_STEPS = (1, 5, 10)  # the schema's eval.report_steps, for runs that do not record theirs
# Config keys that decide which test tasks a run is scored on (with every task.* key).
BANK_KEYS = ("eval.seed", "eval.num_tasks", "eval.support_size", "eval.query_size")
COLUMNS = ["k", "pairing", "n_seeds", "n_tasks", "mean_diff", "mean_diff_low", "mean_diff_high",
           "median_diff", "median_diff_low", "median_diff_high", "blowup", "blowup_best"]


def per_task_mse(run_dir: Path) -> np.ndarray | None:
    """The run's own initialisation's per-task test MSE (T, max_steps + 1), or None without
    ``test_mse.npz``. The first array is the run's own init (``trained``/``pretrain``/``scratch``)."""
    path = Path(run_dir) / rundir.TEST_MSE
    if not path.exists():
        return None
    arrays = rundir.load_params(path)
    return next(iter(arrays.values())) if arrays else None


def report_steps(runs: pd.DataFrame) -> list[int]:
    """``eval.report_steps`` of the runs (the first run's; the default grid if not recorded)."""
    if "eval.report_steps" in runs.columns and len(runs):
        value = runs["eval.report_steps"].iloc[0]
        try:
            steps = value if isinstance(value, (list, tuple)) else ast.literal_eval(str(value))
            return [int(k) for k in steps]
        except (ValueError, SyntaxError, TypeError):
            pass
    return list(DEFAULT_STEPS)


def _bank_key(run: pd.Series) -> tuple:
    cols = sorted(c for c in run.index if c.startswith("task.") or c in BANK_KEYS)
    return tuple((c, str(run[c])) for c in cols)


def config_runs(runs: pd.DataFrame, keys: list[str], config) -> dict[int, tuple[np.ndarray, tuple]]:
    """seed -> (per-task MSE, bank key) for the completed runs of one configuration that have one."""
    out = {}
    mask = config_mask(runs, keys, config) & (runs["status"].astype(str) == COMPLETED)
    for _, run in runs[mask].iterrows():
        mse = per_task_mse(Path(run["path"]))
        if mse is not None:
            out[int(run["seed"]) if "seed" in run.index and pd.notna(run["seed"]) else 0] = (mse, _bank_key(run))
    return out


def compare(other: dict, best: dict, k: int, n_boot: int = stats.N_BOOT, seed: int = stats.BOOT_SEED) -> dict | None:
    """``other`` minus ``best`` at step k, each a dict seed -> (per-task MSE, bank key) as from
    :func:`config_runs`. Paired over the common seeds when both share one test bank; else unpaired."""
    if not other or not best:
        return None
    if any(k >= m.shape[1] for m, _ in [*other.values(), *best.values()]):
        return None
    banks = {b for _, b in [*other.values(), *best.values()]}
    common = sorted(set(other) & set(best))
    if len(banks) == 1 and common:
        a = np.stack([other[s][0][:, k] for s in common])
        b = np.stack([best[s][0][:, k] for s in common])
        mean, low, high = stats.hierarchical_bootstrap(a - b, n_boot, seed)
        med, med_low, med_high = stats.hierarchical_median_difference(a, b, seed=seed)
        pairing = "seeds and tasks" if len(common) > 1 else "tasks (one seed)"
        n_seeds = len(common)
    else:
        a = np.stack([m[:, k] for m, _ in other.values()])
        b = np.stack([m[:, k] for m, _ in best.values()])
        mean, low, high = stats.unpaired_difference(a, b, n_boot, seed)
        med, med_low, med_high = math.nan, math.nan, math.nan
        pairing = "unpaired (different test banks)" if len(banks) > 1 else "unpaired (no common seeds)"
        n_seeds = min(len(a), len(b))
    return {"k": k, "pairing": pairing, "n_seeds": n_seeds, "n_tasks": a.shape[1], "mean_diff": mean,
            "mean_diff_low": low, "mean_diff_high": high, "median_diff": med, "median_diff_low": med_low,
            "median_diff_high": med_high, "blowup": float(stats.blown_up(a).mean()),
            "blowup_best": float(stats.blown_up(b).mean())}


def paired_table(runs: pd.DataFrame, keys: list[str], agg: pd.DataFrame, select: str,
                 steps: list[int] | None = None) -> pd.DataFrame:
    """Every configuration (ranked on ``select``, best first) minus the best one, at each k of
    ``steps`` (default: the runs' ``eval.report_steps``): one row per (configuration, k) with the
    ``keys`` columns, ``rank`` (1 = the best) and :data:`COLUMNS`."""
    order = ranked(agg, keys, select)
    order = order[order["n"] > 0].reset_index(drop=True)
    if order.empty:
        return pd.DataFrame(columns=[*keys, "rank", *COLUMNS])
    steps = steps or report_steps(runs)
    best = config_runs(runs, keys, order.iloc[0])
    rows = []
    for rank, config in order.iloc[1:].iterrows():
        other = config_runs(runs, keys, config)
        for k in steps:
            row = compare(other, best, k)
            if row is not None:
                rows.append({**{c: config[c] for c in keys}, "rank": rank + 1, **row})
    return pd.DataFrame(rows, columns=[*keys, "rank", *COLUMNS])


def sentence(row, who: str = "it", best_who: str = "the best") -> str:
    """One plain sentence about one row of :func:`paired_table`: ``who`` minus ``best_who`` at its k."""
    k, d, lo, hi = int(row["k"]), row["mean_diff"], row["mean_diff_low"], row["mean_diff_high"]
    tails = ""
    if row["blowup"] > 0 or row["blowup_best"] > 0:
        tails = (f"; {_pct(row['blowup'])} of {who}'s and {_pct(row['blowup_best'])} of {best_who}'s test "
                 f"tasks blow up, the medians differ by {_num(row['median_diff'])}")
    if not np.isfinite(d):
        return f"At k={k} the mean difference is not finite{tails}."
    if lo > 0:
        verdict = f"{best_who} is better on the test bank too"
    elif hi < 0:
        verdict = f"{who} is better on the test bank: the choice on validation did not carry over"
    else:
        verdict = "the test bank cannot tell them apart at 95%"
    return (f"At k={k}, {who}'s test MSE is {'higher' if d > 0 else 'lower'} by {_num(abs(d))} "
            f"(95% CI of the difference {_num(lo)} to {_num(hi)}{tails}): {verdict}.")


def design_text(row) -> str:
    """How a row of :func:`paired_table` was compared, in words."""
    if str(row["pairing"]).startswith("unpaired"):
        return f"{row['pairing']}: each side bootstrapped over its seeds, then tasks"
    return (f"paired over {row['n_seeds']} seed(s) and the same {row['n_tasks']} test tasks; "
            f"hierarchical bootstrap over seeds, then tasks, seeded")


def _num(v) -> str:
    return f"{float(v):.3g}" if np.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "undefined")


def _pct(v) -> str:
    return f"{100 * float(v):.2g}%"


def robust_table(agg: pd.DataFrame, keys: list[str], select: str, steps: list[int]) -> pd.DataFrame:
    """Per configuration (ranked on ``select``) and k: mean over seeds of each run's test mean,
    median, 10% trimmed mean and blow-up fraction (from the summaries' ``test_*_k<k>`` keys)."""
    order = ranked(agg, keys, select)
    order = order[order["n"] > 0]
    table = order[keys].reset_index(drop=True).copy() if keys else pd.DataFrame(index=range(len(order)))
    for k in steps:
        for name, key in (("mean", "test_mse"), ("median", "test_median"), ("trimmed", "test_trimmed"),
                          ("blow-up", "test_blowup")):
            metric = f"{key}_k{k}"
            if (agg["metric"] == metric).any():
                table[f"k={k} {name}"] = in_order(agg, keys, order, metric)["mean"].to_numpy()
    return table


def section_paired(s) -> None:
    """Report section: robust test statistics per configuration, then each configuration minus the
    best on the shared test bank, with a plain sentence for the runner-up (``paired.csv``,
    ``robust.csv``). ``s`` is the report's :class:`~maml_sweep.analysis.report.Section`."""
    if s.best is None or s.agg.empty:
        return
    keys, select = s.keys, s.roles.select
    steps = report_steps(s.runs)
    s.doc.h(2, "On the test bank: tails and paired differences")
    robust = robust_table(s.agg, keys, select, steps)
    if robust.shape[1] > len(keys):
        s.csv(robust, "robust.csv")
        blow = [c for c in robust.columns if c.endswith("blow-up")]
        worst = robust[blow].max(axis=1) if blow else pd.Series(0.0, index=robust.index)
        tails = ("Some configurations have test tasks that blow up (MSE above "
                 f"{stats.BLOWUP_MSE:g} or not finite): their means are dominated by those few tasks, so read "
                 "the median and the blow-up fraction beside the mean." if (worst > 0).any() else
                 "No test task blows up (MSE above "
                 f"{stats.BLOWUP_MSE:g} or not finite) in any configuration.")
        s.doc.p(f"Test MSE after k steps per configuration, ranked on `{select}` (mean over seeds of each run's "
                f"mean, median, 10% trimmed mean over the test tasks, and the fraction of tasks that blow up). "
                + tails)
        s.doc.table(robust.head(15))
    table = paired_table(s.runs, keys, s.agg, select, steps)
    s.csv(table, "paired.csv")
    if table.empty:
        s.doc.p("No paired comparison: it needs two configurations whose completed runs have `test_mse.npz`.")
        return
    runner = table[table["rank"] == 2]
    text = (f"Chosen on validation (`{select}`), compared on the test bank: each configuration's test MSE minus "
            "the best one's, per test task and seed (all in `paired.csv`).")
    if len(runner):
        who = "the runner-up on validation (" + ", ".join(f"`{k}={label(runner.iloc[0][k])}`" for k in keys) + ")"
        text += (f" Against {who} ({design_text(runner.iloc[0])}): "
                 + " ".join(sentence(r, "the runner-up", "the best configuration") for _, r in runner.iterrows()))
    s.doc.p(text)
    shown = table.copy()
    shown["difference [95% CI]"] = [f"{_num(r.mean_diff)} [{_num(r.mean_diff_low)}, {_num(r.mean_diff_high)}]"
                                    for r in shown.itertuples()]
    shown["median difference"] = ["" if str(p).startswith("unpaired") else _num(v)
                                  for v, p in zip(shown["median_diff"], shown["pairing"])]
    shown["blow-up (this / best)"] = [f"{_pct(a)} / {_pct(b)}" for a, b in zip(shown["blowup"], shown["blowup_best"])]
    s.doc.table(shown[[*keys, "k", "difference [95% CI]", "median difference", "blow-up (this / best)",
                       "pairing", "n_seeds", "n_tasks"]].head(45))
