"""Figures for a sweep, made with seaborn on the Agg backend (no display needed).

Every function takes tidy frames and returns a matplotlib Figure (or None when there is
nothing to draw); :func:`save_figure` writes it as PNG and PDF atomically and closes it.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .. import components, rundir, rundir_read  # noqa: E402
from ..figures import after_steps, draw_fit, draw_surface, input_dim, target_norm  # noqa: E402


def label(value) -> str:
    """A compact text label for a key's value (``0.01``, ``3``, ``maml``)."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def ordered_labels(series: pd.Series) -> list[str]:
    """The distinct values of a column as labels, in the values' natural order (text: digit runs
    compare as numbers, so ``[40, 40]`` comes before ``[100, 100]``)."""
    values = pd.unique(series.dropna())
    try:
        values = sorted(values, key=rundir_read.natural_key if pd.api.types.is_string_dtype(series) else None)
    except TypeError:
        values = sorted(values, key=str)
    return [label(v) for v in values]


def _labelled(frame: pd.DataFrame, keys) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """A copy with the given key columns turned into text labels, and each key's level order."""
    frame = frame.copy()
    orders = {}
    for k in keys:
        if k:
            orders[k] = ordered_labels(frame[k])
            frame[k] = frame[k].map(label).astype(object)
    return frame, orders


def _palette(n: int, numeric: bool):
    return sns.color_palette("viridis", n) if numeric and n > 1 else sns.color_palette("deep", n)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _wrap(title: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(title, width)) if title else ""




def save_figure(fig, out_dir: Path, name: str, dpi: int = 110) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir`` (temp file + rename), close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        with rundir.atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def heatmaps(cells: pd.DataFrame, x: str, y: str | None, panel: str | None, metric: str,
             title: str = "") -> plt.Figure | None:
    """One heatmap per task condition (``panel`` values) of mean ``metric`` over hyperparameters ``x``
    (and ``y``); ``cells`` has columns x, y, panel, ``mean``, ``ci95``, ``n`` and ``best`` (True for the
    condition's best cell). The colour is the mean relative to the condition's best (1 = best; a shared
    log scale, so conditions of different difficulty read alike); each cell says mean ± CI and n."""
    if cells.empty:
        return None
    from matplotlib.colors import LogNorm

    panels = list(pd.unique(cells[panel])) if panel else [None]
    xs = ordered_labels(cells[x])
    ys = ordered_labels(cells[y]) if y else [""]
    w = max(3.4, 1.1 + 1.05 * len(xs))
    cols = max(1, min(len(panels), int(21 // w)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols + 1.4, (0.9 + 0.62 * len(ys)) * rows + 0.6), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        ax.remove()
    ratios = []
    for ax, p in zip(flat, panels):
        part = cells[cells[panel] == p] if panel else cells
        best_mean = part.loc[part["best"], "mean"].min() if part["best"].any() else part["mean"].min()
        grid = np.full((len(ys), len(xs)), np.nan)
        for _, c in part.iterrows():
            i, j = ys.index(label(c[y])) if y else 0, xs.index(label(c[x]))
            grid[i, j] = c["mean"] / best_mean if best_mean and np.isfinite(best_mean) else np.nan
            box = "\n".join([_mean_pm(c["mean"], c["ci95"]), f"n={int(c['n'])}"])
            dark = not np.isfinite(grid[i, j]) or grid[i, j] < 2.0  # the colour map is dark near the best
            ax.text(j, i, box, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black", fontweight="bold" if c["best"] else "normal")
            if c["best"]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ratios.append(grid)
        im = ax.imshow(grid, cmap="YlGnBu_r", norm=LogNorm(vmin=1.0, vmax=4.0), aspect="auto")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(x)
        ax.set_ylabel(y or "")
        if p is not None:
            ax.set_title(str(p), fontsize=9)
    fig.colorbar(im, ax=flat[:len(panels)], label=f"{metric} / the condition's best (log)", shrink=0.8)
    if title:
        fig.suptitle(_wrap(title, 110), fontsize=10)
    return fig


def _mean_pm(mean, ci) -> str:
    from .document import num_pm

    return num_pm(mean, ci)


def best_fits(run_path: Path, n_tasks: int = 4) -> plt.Figure | None:
    """The run's meta-parameters adapted to the first tasks of its test bank (``eval.seed``'s,
    the same tasks for every run of a task config). 1-D inputs in the notebook's style: data as
    blue crosses, each inner-loop step's prediction as a red line fading in; 2-D inputs: per task,
    the prediction before and after the inner loop as heat maps, the task's points coloured by their
    targets on the same scale; more dimensions: predicted against true targets. The run is rebuilt
    by :func:`components.restore` (the trainer's own components). None when the run has no params.npz;
    a run this version cannot rebuild raises :class:`components.RestoreError` naming why."""
    from omegaconf import OmegaConf

    from ..evaluate import test_bank

    if not (Path(run_path) / rundir.PARAMS).exists():
        return None
    run = components.restore(run_path)
    tasks = test_bank(run.tasks, run.config.task, OmegaConf.merge(run.config.eval, {"num_tasks": n_tasks}))
    trajectories = [run.algorithm.adapt(run.model, run.params, task, run.inner) for task in tasks]
    xlim = (run.config.task.xmin, run.config.task.xmax)
    if input_dim(tasks[0]) == 2:
        return _surfaces(run.model.predict, tasks, trajectories, xlim)
    fig, axes = plt.subplots(1, n_tasks, figsize=(3.2 * n_tasks, 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    for i, (ax, task, trajectory) in enumerate(zip(axes, tasks, trajectories)):
        draw_fit(ax, run.model.predict, task, trajectory, xlim, ms=4, lw=1.2)
        ax.set_title(f"test task {i + 1}", fontsize=9)
        ax.set_xlabel("x" if input_dim(task) == 1 else "true y")
    axes[0].set_ylabel("y" if input_dim(tasks[0]) == 1 else "predicted y")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _surfaces(predict, tasks, trajectories, xlim) -> plt.Figure:
    """2-D tasks: one column per task, the prediction before (top) and after (bottom) the inner
    loop as heat maps on one colour scale, support points large, held-out points small."""
    norm = target_norm(tasks)
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.2 * len(tasks) + 1.0, 6.0), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    for i, (task, trajectory) in enumerate(zip(tasks, trajectories)):
        for row, (params, when) in enumerate([(trajectory[0], "before adapting"),
                                              (trajectory[-1], after_steps(len(trajectory) - 1))]):
            image = draw_surface(axes[row, i], predict, task, params, xlim, norm)
            axes[row, i].set_title(f"test task {i + 1}, {when}", fontsize=9)
        axes[1, i].set_xlabel("x1")
    for row in axes:
        row[0].set_ylabel("x2")
    fig.colorbar(image, ax=axes, label="y: prediction (map) and targets (points)", shrink=0.8)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    return fig


def cost(runs: pd.DataFrame, x: str | None, hue: str | None = None) -> plt.Figure | None:
    """Milliseconds per outer step and wall time (seconds), one point per run (jittered), by ``x``
    and ``hue``, with each group's median as a short black bar: the spread between runs of one
    setting (machine load, start-up) stays visible next to any difference between settings."""
    cols = [c for c in ("ms_per_step", "wall_s") if c in runs.columns and runs[c].notna().any()]
    if not cols:
        return None
    data, orders = _labelled(runs, [x, hue])
    if x is None:
        data = data.assign(all="all runs")
        x, orders["all"] = "all", ["all runs"]
    palette = _palette(len(orders[hue]), _is_numeric(runs[hue])) if hue else None
    fig, axes = plt.subplots(1, len(cols), figsize=(5.2 * len(cols), 3.6))
    for ax, c in zip(np.atleast_1d(axes), cols):
        sns.stripplot(data=data, x=x, y=c, order=orders[x], hue=hue, hue_order=orders.get(hue), palette=palette,
                      dodge=bool(hue), jitter=0.2, size=5, alpha=0.75, ax=ax, legend=bool(hue))
        sns.pointplot(data=data, x=x, y=c, order=orders[x], hue=hue, hue_order=orders.get(hue),
                      dodge=0.8 - 0.8 / len(orders[hue]) if hue else False, estimator="median", errorbar=None,
                      color="black", palette=["black"] * len(orders[hue]) if hue else None, markers="_",
                      markersize=18, linestyles="none", ax=ax, legend=False)
        ax.set_ylabel({"ms_per_step": "ms per outer step", "wall_s": "wall time per run (s)"}[c])
        ax.set_xlabel(x if x != "all" else "")
        ax.set_ylim(bottom=0)
        if ax.get_legend() is not None and c != cols[-1]:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig
