"""The MAML-paper sinusoid table (README) from a sweep of ``experiment=maml2017_sine[_code]`` runs.

For each setting (the swept keys other than ``algorithm`` and ``seed``) and algorithm: test MSE
after k = 1/5/10 steps as the mean over seeds of each run's mean over the test bank, +- the
95% t-interval over seeds; the median over tasks (mean over seeds); the fraction of test tasks
that blow up (:data:`maml_sweep.stats.BLOWUP_MSE`, over all seeds and tasks); and MAML minus
pretrain, paired over seeds and test tasks (two-way t-intervals, :mod:`maml_sweep.analysis.intervals`).

    python -m maml_sweep.analysis.paper SWEEP_DIR [...]
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import pandas as pd

from .. import stats
from .aggregate import t975
from ..rundir import COMPLETED
from .load import load_runs
from .paired import config_runs, compare

STEPS = (1, 5, 10)
ALGORITHMS = ("maml", "pretrain")


def _mean_t(values) -> str:
    v = np.asarray(values, dtype=float)
    v = np.where(np.isnan(v), np.inf, v)  # summary.json stores an inf mean as null
    if not np.isfinite(v).all():
        return f"inf ({int((~np.isfinite(v)).sum())} of {len(v)} seeds)"
    if len(v) < 2:
        return f"{v.mean():.2f}"
    return f"{v.mean():.2f} ± {t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)):.2f}"


def _cell(x: float) -> str:
    return f"{x:.2f}" if np.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "undefined")


def table(runs: pd.DataFrame, keys: list[str]) -> str:
    """The Markdown table for the completed runs in ``runs`` (``keys``: swept keys other than seed)."""
    setting_keys = [k for k in keys if k != "algorithm.name"]
    done = runs[runs["status"].astype(str) == COMPLETED]
    lines = ["| setting | init | seeds | 1 step | 5 steps | 10 steps | median 1 / 5 / 10 | blow-up 5 / 10 |",
             "|---|---|---|---|---|---|---|---|"]
    paired_lines = []
    groups = done.groupby(setting_keys, sort=True) if setting_keys else [((), done)]
    for setting, part in groups:
        setting = setting if isinstance(setting, tuple) else (setting,)
        name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(setting_keys, setting)) or "-"
        per_algo = {}
        for algo in ALGORITHMS:
            rows = part[part["algorithm.name"] == algo]
            if rows.empty:
                continue
            config = {"algorithm.name": algo, **dict(zip(setting_keys, setting))}
            per_algo[algo] = config_runs(runs, keys, config)
            means = [_mean_t(rows[f"test_mse_k{k}"]) for k in STEPS]
            medians = " / ".join(f"{rows[f'test_median_k{k}'].mean():.2f}" for k in STEPS)
            blow = " / ".join(f"{100 * rows[f'test_blowup_k{k}'].mean():.2g}%" for k in (5, 10))
            lines.append(f"| {name} | {algo} | {len(rows)} | {' | '.join(means)} | {medians} | {blow} |")
        if len(per_algo) == 2:
            for k in STEPS:
                r = compare(per_algo["maml"], per_algo["pretrain"], k)
                if r is None:
                    continue
                paired_lines.append(
                    f"| {name} | {k} | {_cell(r['mean_diff'])} [{_cell(r['mean_diff_low'])}, {_cell(r['mean_diff_high'])}] "
                    f"| {_cell(r['median_diff'])} [{_cell(r['median_diff_low'])}, {_cell(r['median_diff_high'])}] "
                    f"| {r['pairing']}, {r['n_seeds']} seeds x {r['n_tasks']} tasks |")
    out = "\n".join(lines)
    if paired_lines:
        out += ("\n\nMAML minus pretrain on the same test tasks and seeds: the mean paired difference and the "
                "difference of medians (mean over seeds of each seed's median over the tasks), each with a 95% "
                "two-way t-interval over seeds and tasks (maml_sweep/analysis/intervals.py; none below 3 seeds):\n\n| setting | steps | mean difference [95% CI] | median difference [95% CI] "
                "| design |\n|---|---|---|---|---|\n" + "\n".join(paired_lines))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.analysis.paper", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="sweep or run directories")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    rs = load_runs(args.paths)
    if "algorithm.name" not in rs.runs.columns:
        print("paper: error: the runs have no algorithm.name", file=sys.stderr)
        return 2
    keys = [k for k in rs.group_keys if k != "sweep"]
    if "algorithm.name" not in keys:
        keys.append("algorithm.name")
    print(table(rs.runs, keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
