"""The MAML-paper sinusoid table (docs/algorithms.md) from a sweep of ``experiment=maml2017_sine[_code]`` runs.

For each setting (the swept keys other than ``algorithm`` and ``seed``), algorithm and k = 1/5/10
adaptation steps, from the runs' per-task test MSE (``test_mse.npz``, every seed on the same bank):

- the median over tasks (mean over seeds of each seed's median) and the interquartile mean (IQM:
  the mean of the middle 50% of tasks, a trimmed mean), each with its 95% two-way t-interval over
  seeds and tasks (:func:`maml_sweep.analysis.intervals.interval`; none below 3 seeds);
- the mean with the same interval, only where no (seed, task) of the bank blows up
  (:data:`maml_sweep.stats.BLOWUP_MSE`) and no fresh task does: with tasks that diverge with
  positive probability the population mean is infinite and a sample mean only records whether
  the bank held one;
- blow-ups on the bank, counted over (seed, task) pairs;
- with ``--fresh CSV`` (``python -m maml_sweep.tools.fresh_blowups``: each run on its own fresh tasks, so
  all S x N are distinct): the blow-up rate with its exact (Clopper-Pearson) 95% interval;

and MAML minus pretrain paired over the same seeds and tasks (:func:`maml_sweep.analysis.paired.compare`).
The protocol (training and test shots) is printed with the table.

    python -m maml_sweep.tools.fresh_blowups SWEEP_DIR --tasks 10000 > blowups.csv
    python -m maml_sweep.tools.paper SWEEP_DIR [...] [--fresh blowups.csv]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import betaincinv

from .. import stats
from ..analysis.aggregate import SELECT, aggregate, best_config, config_mask, eligible
from ..analysis.intervals import Interval, interval
from ..analysis.load import load_runs
from ..analysis.paired import compare, config_runs, scores_at
from ..config import EvalConfig
from ..rundir import COMPLETED

STEPS = tuple(EvalConfig().report_steps)  # k = 1, 5, 10: the schema's report steps
ALGORITHMS = ("maml", "pretrain")


def clopper_pearson(x: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval for ``x`` events in ``n`` trials."""
    a = (1 - level) / 2
    low = 0.0 if x == 0 else float(betaincinv(x, n - x + 1, a))
    high = 1.0 if x == n else float(betaincinv(x + 1, n - x, 1 - a))
    return low, high


def read_fresh(path: Path) -> dict[str, np.ndarray]:
    """Run path -> (tasks, blow-ups at k = 1/5/10) from ``python -m maml_sweep.tools.fresh_blowups``'s CSV."""
    with open(path, newline="") as fh:
        frame = pd.read_csv(fh, nrows=100_000)
    cols = ["tasks", *(f"blowups_k{k}" for k in STEPS)]
    missing = [c for c in ["path", *cols] if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a fresh_blowups CSV (no column {', '.join(missing)})")
    return {str(Path(r["path"]).resolve()): np.array([int(r[c]) for c in cols]) for _, r in frame.iterrows()}


def _cell(iv: Interval) -> str:
    if not np.isfinite(iv.estimate):
        return "inf" if iv.estimate > 0 else "-inf" if iv.estimate < 0 else "undefined"
    if np.isnan(iv.low):
        return f"{iv.estimate:.3f} ({iv.note})"
    return f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


def _mean_ci(row: dict) -> str:
    if not np.isfinite(row["mean"]):
        return "no finite value"
    if not np.isfinite(row["ci95"]):
        return f"{row['mean']:.4f} (no interval below 3 seeds)"
    return f"{row['mean']:.4f} [{row['mean'] - row['ci95']:.4f}, {row['mean'] + row['ci95']:.4f}]"


def _rate(x: int, n: int) -> str:
    low, high = clopper_pearson(x, n)
    return f"{x} of {n:,}: {100 * x / n:.3g}% [{100 * low:.2g}%, {100 * high:.2g}%]"


def protocol(runs: pd.DataFrame) -> str:
    """One sentence: the shots the runs train and test with (from their recorded config)."""
    parts = []
    for (points, query, support), _ in runs.groupby(["task.num_points", "task.query_size", "eval.support_size"],
                                                    dropna=False):
        train_shots = int(points) - int(query)
        test_shots = train_shots if pd.isna(support) else int(support)
        parts.append(f"trains {train_shots}-shot ({int(query)} query points), tests {test_shots}-shot")
    return "Protocol: " + "; ".join(sorted(set(parts))) + "."


def choose(runs: pd.DataFrame, fixed: dict, tuned: list[str]) -> tuple[dict | None, list[dict]]:
    """The configuration of ``fixed`` (setting and algorithm) whose ``tuned`` keys give the lowest mean
    ``val_mse`` over seeds among the eligible ones (every run completed, every value finite:
    :func:`maml_sweep.analysis.aggregate.best_config`), or None when none is; and every candidate as
    a row (its tuned values, mean, ci95, n, n_runs, chosen) for the selection table."""
    part = runs[config_mask(runs, list(fixed), fixed)]
    if not tuned or part[tuned].isna().all().all():
        return dict(fixed, **{k: np.nan for k in tuned}), []
    agg = aggregate(part, tuned, [SELECT])
    try:
        best = best_config(agg, tuned)
    except ValueError:
        best = None
    ok = eligible(agg)
    rows = [{**{k: r[k] for k in tuned}, "mean": r["mean"], "ci95": r["ci95"], "n": r["n"], "n_runs": r["n_runs"],
             "verdict": ("chosen" if best is not None and all(r[k] == best[k] for k in tuned) else
                         "" if ok[i] else "not eligible (a run not completed, or its val_mse not finite)")}
            for i, r in agg.iterrows()]
    return (None if best is None else dict(fixed, **{k: best[k] for k in tuned})), rows


def table(runs: pd.DataFrame, keys: list[str], fresh_counts: dict | None = None, tuned: list[str] = ()) -> str:
    """The Markdown tables for the completed runs in ``runs`` (``keys``: swept keys other than seed;
    ``fresh_counts``: :func:`read_fresh`'s, or None; ``tuned``: keys chosen per setting and algorithm
    on validation, see :func:`choose`)."""
    tuned = [k for k in tuned if k in keys]
    setting_keys = [k for k in keys if k != "algorithm.name" and k not in tuned]
    selection_lines = []
    done = runs[runs["status"].astype(str) == COMPLETED]
    fresh_head = " | blow-ups on fresh distinct tasks: rate [exact 95% CI]" if fresh_counts is not None else ""
    lines = [f"| setting | init | seeds | k | median [95% CI] | IQM (middle 50%) [95% CI] | mean [95% CI] "
             f"| blow-ups on the bank (seed, task){fresh_head} |",
             "|---|---|---|---|---|---|---|---" + "|---" * (fresh_counts is not None) + "|"]
    paired_lines = []
    groups = done.groupby(setting_keys, sort=True) if setting_keys else [((), done)]
    for setting, part in groups:
        setting = setting if isinstance(setting, tuple) else (setting,)
        name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(setting_keys, setting)) or "-"
        per_algo = {}
        for algo in ALGORITHMS:
            if (part["algorithm.name"] != algo).all():
                continue
            config, candidates = choose(runs, {"algorithm.name": algo, **dict(zip(setting_keys, setting))}, tuned)
            label = algo + "".join(f", {k}={config[k]:g}" for k in tuned if config and pd.notna(config[k]))
            for c in candidates:
                values = ", ".join(f"{k}={c[k]:g}" for k in tuned)
                selection_lines.append(f"| {name} | {algo} | {values} | {_mean_ci(c)} | {c['n']} of {c['n_runs']} "
                                       f"| {c['verdict']} |")
            if config is None:
                lines.append(f"| {name} | {algo} | - | - | no configuration with every run completed and finite "
                             "val_mse | | | |" + " |" * (fresh_counts is not None))
                continue
            per_algo[algo] = of = config_runs(runs, keys, config)
            chosen = part[config_mask(part, list(config), config)]
            fresh = None
            if fresh_counts is not None:
                found = [fresh_counts.get(str(Path(p).resolve())) for p in chosen["path"]]
                fresh = None if any(f is None for f in found) else np.sum(found, axis=0)  # tasks, k1, k5, k10
            for i, k in enumerate(STEPS):
                x = scores_at(of, k)
                if x is None:
                    continue
                blown = int(stats.blown_up(x).sum())
                fresh_blown = 0 if fresh is None else int(fresh[1 + i])
                mean = (_cell(interval(x, "mean")) if blown == 0 and fresh_blown == 0
                        else "not reported (tasks blow up)")
                cells = [name, label, str(len(of)), str(k), _cell(interval(x, "median")), _cell(interval(x, "iqm")),
                         mean, f"{blown} of {x.size:,}"]
                if fresh_counts is not None:
                    cells.append("no fresh tasks for every seed" if fresh is None
                                 else _rate(fresh_blown, int(fresh[0])))
                lines.append("| " + " | ".join(cells) + " |")
        if len(per_algo) == 2:
            for k in STEPS:
                r = compare(per_algo["maml"], per_algo["pretrain"], k)
                if r is None:
                    continue
                cells = [_cell(Interval(r[f"{s}_diff"], r[f"{s}_diff_low"], r[f"{s}_diff_high"], r["n_seeds"],
                                        r["n_tasks"], note="no interval")) for s in ("median", "iqm", "mean")]
                if r["blowup"] > 0 or r["blowup_best"] > 0:
                    cells[2] = "not reported (tasks blow up)"
                paired_lines.append(f"| {name} | {k} | {' | '.join(cells)} | {r['pairing']}, {r['n_seeds']} seeds x "
                                    f"{r['n_tasks']} tasks |")
    out = protocol(done) + "\n\n" + "\n".join(lines) if len(done) else "\n".join(lines)
    if selection_lines:
        out = ("Chosen on validation (`val_mse`, mean over seeds with its 95% t-interval; only configurations "
               "with every run completed and finite): " + ", ".join(tuned) + "\n\n| setting | init | candidate "
               "| val_mse [95% CI] | seeds | |\n|---|---|---|---|---|---|\n" + "\n".join(selection_lines)
               + "\n\n" + out)
    if paired_lines:
        out += ("\n\nMAML minus pretrain on the same test tasks and seeds: the difference of medians and of IQMs "
                "(each the mean over seeds of the per-seed statistic) and the mean paired difference, each with a "
                "95% two-way t-interval over seeds and tasks (maml_sweep/analysis/intervals.py; none below 3 "
                "seeds):\n\n| setting | k | median difference [95% CI] | IQM difference [95% CI] "
                "| mean difference [95% CI] | design |\n|---|---|---|---|---|---|\n" + "\n".join(paired_lines))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.tools.paper", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="sweep or run directories")
    p.add_argument("--fresh", type=Path, metavar="CSV",
                   help="blow-ups on fresh tasks per run, from python -m maml_sweep.tools.fresh_blowups")
    p.add_argument("--tune", action="append", default=[], metavar="KEY",
                   help="a swept key chosen per setting and algorithm on validation (val_mse), e.g. "
                        "eval.inner_lr for the pretrain baseline's fine-tuning step size; repeatable")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fresh = None if args.fresh is None else read_fresh(args.fresh)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        print(f"paper: error: --fresh: {exc}", file=sys.stderr)
        return 2
    rs = load_runs(args.paths)
    if "algorithm.name" not in rs.runs.columns:
        print("paper: error: the runs have no algorithm.name", file=sys.stderr)
        return 2
    keys = [k for k in rs.group_keys if k != "sweep"]
    if "algorithm.name" not in keys:
        keys.append("algorithm.name")
    with np.errstate(invalid="ignore", over="ignore"):  # blown-up tasks: inf - inf in the linearisation
        print(table(rs.runs, keys, fresh, args.tune))
    return 0


if __name__ == "__main__":
    sys.exit(main())
