"""The report of a search (Optuna, or any sweeper that samples continuous values): one row per
trial, the optimisation history, the objective against each parameter, and parameter importance.

A search is read as trials, not as a grid of configurations: a trial is one sampled parameter
combination, in the order the sweeper started it (the run directory's job number), and its
objective is the mean over its seeds when the search ran several seeds per combination.

    trials = trials_frame(rs.runs, params, "val_mse")
    history_figure(trials, "val_mse"); slices_figure(trials, params, "val_mse")
    importance(trials, params, "val_mse")        # fANOVA (Optuna >= 4) or a rank-binned ANOVA
"""
from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .. import rundir, rundir_read  # noqa: E402
from ..rundir import COMPLETED  # noqa: E402
from .plots import label, ordered_labels  # noqa: E402

# File names in the report directory.
SEARCH_HISTORY = "search_history.png"
SEARCH_SLICES = "search_slices.png"
IMPORTANCE = "importance.csv"
# A trial the sweeper stopped early (its objective, when finite, is an intermediate value). No
# sweeper in this project writes it yet; rundir is its home once the trainer does.
PRUNED = rundir.PRUNED
_USABLE = (COMPLETED, PRUNED)  # statuses whose objective is a real value
TRIAL_COLUMNS = ["trial", "run", "status", "objective", "best_so_far", "n_seeds"]
MIN_LEVELS = 6  # a sampled parameter has more distinct values than a grid key usually does
LOG_SPAN = 20.0  # positive values spanning more than this factor may go on a log axis
MAX_PANELS_PER_ROW = 4
JITTER_SEED = 0  # categorical slices jitter their points with this seed: the same figure every time

_POINT = sns.color_palette("deep")[0]
_BEST = sns.color_palette("deep")[3]
_NO_VALUE = "black"


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def is_continuous(series: pd.Series, n_configs: int) -> bool:
    """Whether a swept key was sampled rather than gridded: numeric (not bool), more than 5
    distinct values, and at least half as many distinct values as there are configurations."""
    if not _is_numeric(series):
        return False
    levels = series.dropna().nunique()
    return bool(levels >= MIN_LEVELS and levels >= n_configs / 2)


def log_scaled(values: pd.Series) -> bool:
    """Whether values belong on a log axis: numeric, all finite ones positive, spanning more than
    20x, and their distinct values spread more evenly on a log axis than on a linear one (as
    log-uniform draws, 10x grids and MSEs with blow-ups do; uniform draws from (0, 1) span more
    than 20x too but stay linear). Two distinct values spanning more than 20x: log."""
    if not _is_numeric(pd.Series(values)):
        return False
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    v = np.unique(v[np.isfinite(v)])
    if not len(v) or (v <= 0).any() or v.max() / v.min() <= LOG_SPAN:
        return False
    return bool(len(v) < 3 or _unevenness(np.log(v)) < _unevenness(v))


def _unevenness(sorted_values: np.ndarray) -> float:
    """Largest gap between sorted values scaled to [0, 1] and evenly spaced positions (the
    Kolmogorov-Smirnov distance to a uniform spread)."""
    x = (sorted_values - sorted_values[0]) / (sorted_values[-1] - sorted_values[0])
    n = len(x)
    return float(np.abs(x - (np.arange(n) + 0.5) / n).max())


# ---------------------------------------------------------------- trials

def trials_frame(runs: pd.DataFrame, params: list[str], objective: str) -> pd.DataFrame:
    """One row per trial, in the order the sweeper started them.

    ``runs``: one row per run (:attr:`load.RunSet.runs`: run, path, status, the ``params``, the
    ``objective`` column, seed). Runs are ordered by their path in natural order (a sweep's job
    directories are numbered ``0``, ``1``, ... so this is job order). Runs that share every param
    value and differ in ``seed`` are one trial (a seed-aware search); a repeat of the same
    combination with the same seed is a new trial.

    Columns: ``trial`` (0, 1, ...), ``run`` (the trial's first run), ``status`` (pruned if any seed
    was pruned, else the first seed's status that is not completed, else completed),
    ``objective`` (mean over seeds; +inf when a seed's objective is not finite or its status is
    neither completed nor pruned), ``best_so_far`` (running minimum over completed trials'
    objectives; NaN before the first), ``n_seeds`` (runs in the trial), then the params.
    Raises ``KeyError`` naming a missing column.
    """
    missing = [c for c in ["status", *params, objective] if c not in runs.columns]
    if missing:
        raise KeyError(f"runs have no column {', '.join(map(repr, missing))}; "
                       f"columns: {', '.join(map(str, runs.columns))}")
    frame = runs.reset_index(drop=True)
    if "path" in frame.columns:
        order = sorted(range(len(frame)), key=lambda i: rundir_read.natural_key(frame.at[i, "path"]))
        frame = frame.iloc[order].reset_index(drop=True)
    status = frame["status"].fillna("").astype(str).to_numpy()
    value = pd.to_numeric(frame[objective], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    value = np.where(np.isin(status, _USABLE) & np.isfinite(value), value, np.inf)
    # Repeats of a combination with the same seed (or without a seed column) are separate trials.
    seeded = "seed" in frame.columns and "seed" not in params
    repeat = (frame.groupby([*params, "seed"], dropna=False, sort=False).cumcount() if seeded
              else pd.Series(np.arange(len(frame))))
    keys = [frame[p] for p in params] + [repeat.rename("_repeat")]
    trial = pd.Series(frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy())
    n = int(trial.max()) + 1 if len(trial) else 0
    first = trial.drop_duplicates().index.to_numpy()  # each trial's first run, in trial order
    objective_mean = pd.Series(value).groupby(trial).mean().to_numpy()  # inf if any seed is inf
    ids = frame["run"] if "run" in frame.columns else frame.get("path", pd.Series(frame.index.astype(str)))
    out = pd.DataFrame({
        "trial": np.arange(n, dtype=np.int64),
        "run": ids.iloc[first].to_numpy(),
        "status": [_trial_status(status[trial.to_numpy() == t]) for t in range(n)],
        "objective": objective_mean,
    })
    done = np.where((out["status"] == COMPLETED) & np.isfinite(out["objective"]), out["objective"], np.nan)
    out["best_so_far"] = np.fmin.accumulate(done) if n else done
    out["n_seeds"] = trial.value_counts().sort_index().to_numpy(dtype=np.int64)
    for p in params:
        out[p] = frame[p].iloc[first].reset_index(drop=True)
    return out


def _trial_status(statuses: np.ndarray) -> str:
    if PRUNED in statuses:
        return PRUNED
    return next((s for s in statuses if s != COMPLETED), COMPLETED)


def best_trial(trials: pd.DataFrame) -> int | None:
    """Row index of the completed trial with the lowest finite objective (the earliest on ties)."""
    done = trials[(trials["status"] == COMPLETED) & np.isfinite(trials["objective"])]
    return None if done.empty else int(done["objective"].idxmin())


# ---------------------------------------------------------------- figures

def _objective_label(trials: pd.DataFrame, objective: str) -> str:
    return f"{objective} (mean over seeds)" if trials["n_seeds"].max() > 1 else objective


def _no_value_label(statuses: pd.Series) -> str:
    words = ", ".join(sorted(set(statuses)))
    return f"no finite value: {words} ({len(statuses)}), drawn at the top"


def _at_top(ax, x, **kw):
    """Points at the top edge of the axes (x in data units), for trials without a finite objective."""
    ax.scatter(x, np.ones(len(x)), transform=ax.get_xaxis_transform(), clip_on=False, zorder=4, **kw)


def history_figure(trials: pd.DataFrame, objective: str) -> plt.Figure | None:
    """The optimisation history: each trial's ``objective`` (points, in the order started), the
    best so far (step line), pruned trials as grey crosses, trials without a finite objective
    as triangles on the top edge. Log y when the finite objectives span more than 20x."""
    if trials.empty:
        return None
    x, y = trials["trial"].to_numpy(), trials["objective"].to_numpy(dtype=float)
    finite, pruned = np.isfinite(y), (trials["status"] == PRUNED).to_numpy()
    fig, ax = plt.subplots(figsize=(7.0, 3.6), layout="constrained")
    done = finite & ~pruned
    if done.any():
        ax.scatter(x[done], y[done], s=22, color=_POINT, zorder=3, label=f"trial ({done.sum()})")
    if pruned.any():
        ax.scatter(x[pruned & finite], y[pruned & finite], s=30, marker="x", color="0.5", zorder=3,
                   label=f"pruned ({pruned.sum()}; its last value)")
        _at_top(ax, x[pruned & ~finite], s=30, marker="x", color="0.5")
    if (~finite & ~pruned).any():
        _at_top(ax, x[~finite & ~pruned], s=36, marker="^", color=_NO_VALUE,
                label=_no_value_label(trials["status"][~finite & ~pruned]))
    best = trials["best_so_far"].to_numpy(dtype=float)
    if np.isfinite(best).any():
        ax.step(x, best, where="post", color=_BEST, linewidth=1.6, zorder=2, label="best so far")
    if log_scaled(pd.Series(y[finite])):
        ax.set_yscale("log")
    if not finite.any():
        ax.set_yticks([])
    ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (in order started)")
    ax.set_ylabel(_objective_label(trials, objective))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    return fig


def slices_figure(trials: pd.DataFrame, params: list[str], objective: str) -> plt.Figure | None:
    """``objective`` against each parameter, one panel per parameter (at most 4 per row, shared
    y): colour is the trial number, pruned trials are crosses, the best trial has a red ring,
    trials without a finite objective sit on the top edge. A parameter's axis is log when its
    values span more than 20x; a text or bool parameter is drawn as categories (jittered)."""
    params = [p for p in params if p in trials.columns and trials[p].notna().any()]
    if trials.empty or not params:
        return None
    ncols = min(MAX_PANELS_PER_ROW, len(params))
    nrows = math.ceil(len(params) / ncols)
    # Fixed margins, not constrained layout: that costs seconds per figure with a dozen shared axes.
    fig = plt.figure(figsize=(2.9 * ncols + 1.3, 2.7 * nrows + 0.2))
    grid = fig.add_gridspec(nrows, ncols + 1, width_ratios=[1] * ncols + [0.05], wspace=0.12, hspace=0.5,
                            left=0.9 / (2.9 * ncols + 1.3), right=0.92, bottom=0.6 / (2.7 * nrows + 0.2), top=0.97)
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(ncols)] for r in range(nrows)])
    for ax in axes.flat[1:]:
        ax.sharey(axes[0, 0])
        if ax not in axes[:, 0]:
            ax.tick_params(labelleft=False)
    y = trials["objective"].to_numpy(dtype=float)
    finite, pruned = np.isfinite(y), (trials["status"] == PRUNED).to_numpy()
    order = trials["trial"].to_numpy()
    norm, cmap = Normalize(order.min(), max(order.max(), order.min() + 1)), plt.get_cmap("viridis")
    best = best_trial(trials)
    rng = np.random.default_rng(JITTER_SEED)
    for ax, p in zip(axes.flat, params):
        x = _slice_positions(ax, trials[p], rng)
        shown = ~np.isnan(x)
        for mask, marker, size in ((finite & ~pruned & shown, "o", 20), (finite & pruned & shown, "x", 26)):
            if mask.any():
                ax.scatter(x[mask], y[mask], c=order[mask], cmap=cmap, norm=norm, s=size, marker=marker, zorder=3,
                           linewidths=1.0 if marker == "x" else 0)
        if (~finite & shown).any():
            _at_top(ax, x[~finite & shown], s=30, marker="^", color=_NO_VALUE)
        if best is not None and shown[best]:
            ax.scatter([x[best]], [y[best]], s=140, facecolors="none", edgecolors=_BEST, linewidths=1.6, zorder=5,
                       label=f"best: trial {int(trials['trial'].iat[best])}")
        ax.set_xlabel(p)
    for row in axes:
        row[0].set_ylabel(_objective_label(trials, objective))
    for ax in axes.flat[len(params):]:
        ax.set_visible(False)
    if log_scaled(pd.Series(y[finite])):
        axes[0, 0].set_yscale("log")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=fig.add_subplot(grid[:, -1]), label="trial")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if (~finite).any():
        handles.append(plt.Line2D([], [], marker="^", color=_NO_VALUE, linestyle="none"))
        labels.append(_no_value_label(trials["status"][~finite]))
    if pruned.any():
        handles.append(plt.Line2D([], [], marker="x", color="0.3", linestyle="none"))
        labels.append(f"pruned ({pruned.sum()})")
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=min(3, len(labels)),
                   fontsize=8, frameon=False)
    return fig


def _slice_positions(ax, values: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """x positions of a parameter's values on ``ax`` (NaN where missing); sets a log scale or
    category ticks as the values ask."""
    if _is_numeric(values):
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if log_scaled(values):
            ax.set_xscale("log")
        return x
    levels = ordered_labels(values)
    where = {v: i for i, v in enumerate(levels)}
    x = np.array([np.nan if pd.isna(v) else where[label(v)] for v in values], dtype=float)
    ax.set_xticks(range(len(levels)), levels, rotation=30 if max(map(len, levels)) > 6 else 0)
    ax.set_xlim(-0.5, len(levels) - 0.5)
    return x + rng.uniform(-0.15, 0.15, len(x))


# ---------------------------------------------------------------- importance

def importance(trials: pd.DataFrame, params: list[str], objective: str, seed: int = 0) -> pd.DataFrame:
    """Each parameter's share of the objective's variation, most important first.

    Columns ``param``, ``importance`` (sums to 1), ``evaluator`` (what computed it, the same on
    every row). Only completed trials with a finite objective and every param set are used; the
    target is log10(objective) when the objective spans more than 20x (positive), else the
    objective. With Optuna >= 4 and scikit-learn: Optuna's fANOVA evaluator
    (``FanovaImportanceEvaluator(seed=seed)``, the functional ANOVA of a random forest fitted to
    the trials) on an in-memory study rebuilt from the trials. Without them, or with a single
    parameter: :func:`anova_importance`. A parameter with one value has
    importance 0; when fewer than 2 trials are usable or the target does not vary, every
    importance is NaN (nothing to apportion) and ``evaluator`` says why.
    """
    usable = trials[(trials["status"] == COMPLETED) & np.isfinite(trials["objective"])].dropna(subset=params)
    target = usable["objective"].to_numpy(dtype=float)
    on = objective
    if log_scaled(usable["objective"]):
        target, on = np.log10(target), f"log10({objective})"
    if len(usable) < 2 or np.ptp(target) == 0:
        why = "fewer than 2 completed trials with a finite objective" if len(usable) < 2 else f"{on} does not vary"
        return _importance_frame(dict.fromkeys(params, np.nan), f"none: {why}")
    reason = "a single parameter" if len(params) < 2 else None
    if reason is None:
        try:
            import optuna
        except ImportError:
            reason = "optuna not installed"
        else:
            if int(optuna.__version__.split(".")[0]) < 4:
                reason = f"optuna {optuna.__version__} < 4"
    if reason is None:
        try:
            return _importance_frame(_fanova(usable, params, target, seed),
                                     f"optuna {optuna.__version__} fANOVA (FanovaImportanceEvaluator, seed {seed}) "
                                     f"on {on}, {len(usable)} trials")
        except ImportError:  # Optuna's fANOVA fits scikit-learn's random forest
            reason = "scikit-learn, which Optuna's fANOVA needs, not installed"
    return _importance_frame(anova_importance(usable, params, target),
                             f"rank-binned one-way ANOVA on {on}, {len(usable)} trials ({reason})")


def _importance_frame(shares: dict, evaluator: str) -> pd.DataFrame:
    out = pd.DataFrame({"param": list(shares), "importance": [float(v) for v in shares.values()]})
    out = out.sort_values("importance", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    return out.assign(evaluator=evaluator)


def _fanova(usable: pd.DataFrame, params: list[str], target: np.ndarray, seed: int) -> dict:
    """Optuna's fANOVA importances (normalised) of ``params`` for ``target`` (one value per row)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions, values = {}, {}
    for p in params:
        column = usable[p]
        if _is_numeric(column):
            v = pd.to_numeric(column).to_numpy(dtype=float)
            log = log_scaled(column)
            if np.all(v == np.round(v)):
                values[p] = [int(x) for x in v]
                distributions[p] = IntDistribution(int(v.min()), int(v.max()), log=log and v.min() >= 1)
            else:
                values[p] = [float(x) for x in v]
                distributions[p] = FloatDistribution(float(v.min()), float(v.max()), log=log)
        else:
            values[p] = [x.item() if isinstance(x, np.generic) else x for x in column]
            if not all(isinstance(x, (bool, str)) for x in values[p]):
                values[p] = [label(x) for x in values[p]]
            distributions[p] = CategoricalDistribution(sorted(set(values[p]), key=str))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(direction="minimize")
            study.add_trials([optuna.trial.create_trial(params={p: values[p][i] for p in params},
                                                        distributions=distributions, value=float(target[i]))
                              for i in range(len(target))])
            shares = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), params=list(params))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {p: shares.get(p, 0.0) for p in params}


def anova_importance(usable: pd.DataFrame, params: list[str], target: np.ndarray) -> dict:
    """Importance without Optuna: for each parameter on its own, the share of ``target``'s variance
    explained by a one-way ANOVA over groups of its values (a text or bool parameter: its
    categories; a numeric one with more distinct values than ``round(sqrt(n))`` (2 to 10) bins:
    equal-count bins of its ranks, so equal values share a bin), corrected for the number of
    groups (epsilon squared, ``(SS_between - (k - 1) MS_within) / SS_total``, clipped at 0),
    then normalised to sum to 1. A parameter that explains nothing beyond chance gets 0. Marginal
    (one parameter at a time), so interactions are not credited, unlike fANOVA."""
    n = len(target)
    bins = int(min(10, max(2, round(math.sqrt(n)))))
    total = float(((target - target.mean()) ** 2).sum())
    raw, corrected = {}, {}
    for p in params:
        column = usable[p].reset_index(drop=True)
        if _is_numeric(column) and column.nunique() > bins:
            groups = pd.qcut(column.rank(method="dense"), bins, labels=False, duplicates="drop")
        else:
            groups = column.map(label)
        k = groups.nunique()
        means = pd.Series(target).groupby(groups.to_numpy()).transform("mean").to_numpy()
        between = float(((means - target.mean()) ** 2).sum())
        within = total - between
        raw[p] = between / total
        corrected[p] = max(0.0, (between - (k - 1) * within / (n - k)) / total) if n > k else raw[p]
    for shares in (corrected, raw):
        s = sum(shares.values())
        if s > 0:
            return {p: v / s for p, v in shares.items()}
    return dict.fromkeys(params, np.nan)
