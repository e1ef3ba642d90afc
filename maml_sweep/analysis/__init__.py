"""Analysis of maml-sweep runs: tidy frames, aggregation over seeds, figures and reports.

    from maml_sweep.analysis import load_runs, aggregate, best_config
    rs = load_runs("outputs/multirun/2026-11-26/10-00-00")
    rs.runs, rs.curves, rs.adaptation, rs.skipped
"""
from .load import LoadError, RunSet, load_runs

__all__ = ["LoadError", "RunSet", "load_runs"]
