"""Analysis of maml-sweep runs: tidy frames, aggregation over seeds, figures and reports.

    from maml_sweep.analysis import load_runs, aggregate, best_config
    rs = load_runs("outputs/multirun/2026-11-26/10-00-00")   # run dirs, sweep dirs, parents, globs
    rs.runs, rs.curves, rs.adaptation, rs.skipped, rs.issues  # tidy pandas frames
    agg = aggregate(rs.runs, rs.group_keys, rs.metrics)       # mean, std, sem, 95% CI, n over seeds
    best = best_config(agg, rs.group_keys)                    # chosen on val_mse (shared validation)

The command line is ``maml-sweep-report`` (:mod:`maml_sweep.analysis.report_cli`).
"""
from .aggregate import aggregate, best_config, curve_bands
from .load import LoadError, RunSet, load_runs

__all__ = ["LoadError", "RunSet", "aggregate", "best_config", "curve_bands", "load_runs"]
