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

from .. import rundir  # noqa: E402
from ..figures import draw_adaptation  # noqa: E402

BOOT_SEED = 0  # seaborn's bootstrap seed: the same figure every time


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
        values = sorted(values, key=rundir.natural_key if pd.api.types.is_string_dtype(series) else None)
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


def _log_if_wide(ax_values: np.ndarray) -> bool:
    v = ax_values[np.isfinite(ax_values)]
    return bool(len(v) and (v > 0).all() and v.max() / v.min() > 20)


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


def learning_curves(bands: pd.DataFrame, metric: str, hue: str | None = None, col: str | None = None,
                    row: str | None = None, title: str = "") -> plt.Figure | None:
    """Mean ``metric`` against outer step, one line per ``hue`` level, facets by ``col``/``row``,
    95% CI bands over seeds (from :func:`aggregate.curve_bands`)."""
    if bands.empty:
        return None
    numeric_hue = bool(hue) and _is_numeric(bands[hue])
    data, orders = _labelled(bands, [hue, col, row])
    palette = _palette(len(orders[hue]), numeric_hue) if hue else None
    g = sns.relplot(data=data, x="step", y="mean", kind="line", errorbar=None, estimator=None,
                    hue=hue, hue_order=orders.get(hue), palette=palette,
                    col=col, col_order=orders.get(col), row=row, row_order=orders.get(row),
                    col_wrap=4 if col and not row and len(orders[col]) > 4 else None,
                    height=2.8, aspect=1.3, facet_kws={"sharey": True, "margin_titles": bool(row)})
    colors = dict(zip(orders[hue], palette)) if hue else {None: sns.color_palette("deep", 1)[0]}
    facet_keys = [k for k in (row, col) if k]
    for facet, part in (data.groupby(facet_keys, sort=False) if facet_keys else [((), data)]):
        facet = facet if isinstance(facet, tuple) else (facet,)
        if not facet_keys:
            ax = g.ax
        elif row and col:
            ax = g.axes_dict[facet]
        else:
            ax = g.axes_dict[facet[0]]
        for level, line in (part.groupby(hue, sort=False) if hue else [(None, part)]):
            line = line.sort_values("step")
            ax.fill_between(line["step"], line["ci95_low"], line["ci95_high"], color=colors[level],
                            alpha=0.2, linewidth=0)
    if _log_if_wide(data[["mean"]].to_numpy().ravel()):
        g.set(yscale="log")
    g.set_axis_labels("outer step", metric)
    if title:
        g.figure.suptitle(_wrap(title, 100), y=1.02)
    return g.figure


def heatmap(table: pd.DataFrame, x: str, y: str, metric: str, best: tuple | None = None,
            title: str = "") -> plt.Figure | None:
    """Mean ``metric`` over two swept keys, annotated; ``table`` has columns x, y, ``mean``.
    ``best`` = (x value, y value) gets a box."""
    if table.empty:
        return None
    grid = table.pivot_table(index=y, columns=x, values="mean", aggfunc="mean")
    grid = grid.sort_index().sort_index(axis=1)
    grid.index = [label(v) for v in grid.index]
    grid.columns = [label(v) for v in grid.columns]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.0 + 0.9 * grid.shape[1]), max(3.6, 1.2 + 0.6 * grid.shape[0])))
    sns.heatmap(grid, annot=True, fmt=".3g", cmap="viridis_r", ax=ax,
                cbar_kws={"label": f"{metric} (mean over seeds)"})
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if best is not None:
        bx, by = label(best[0]), label(best[1])
        if bx in grid.columns and by in grid.index:
            ax.add_patch(plt.Rectangle((list(grid.columns).index(bx), list(grid.index).index(by)), 1, 1,
                                       fill=False, edgecolor="red", linewidth=2))
    ax.set_title(_wrap(title), fontsize=9)
    fig.tight_layout()
    return fig


def adaptation_curves(data: pd.DataFrame, style: str | None = None, noise_floor: float | None = None,
                      title: str = "") -> plt.Figure | None:
    """Test MSE against adaptation steps k, one line per init (hue) and ``style`` level (e.g. the
    algorithm), CIs over seeds (seaborn bootstrap, fixed seed), or the file's per-task CIs when
    each line has one run; the noise floor as a dashed line."""
    if data.empty:
        return None
    data, orders = _labelled(data, [style])
    inits = list(pd.unique(data["init"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=data, x="k", y="mse_mean", hue="init", hue_order=inits, style=style,
                 style_order=orders.get(style), markers=True, errorbar=("ci", 95), seed=BOOT_SEED,
                 n_boot=1000, ax=ax)
    per_line = data.groupby(["init"] + ([style] if style else []) + ["k"]).size()
    if per_line.max() == 1 and data["mse_ci95_low"].notna().any():
        colors = dict(zip(inits, sns.color_palette("deep", len(inits))))
        for (init, *_), part in data.groupby(["init"] + ([style] if style else [])):
            part = part.sort_values("k")
            ax.fill_between(part["k"], part["mse_ci95_low"], part["mse_ci95_high"],
                            color=colors[init], alpha=0.2, linewidth=0)
    if noise_floor is not None and np.isfinite(noise_floor):
        ax.axhline(noise_floor, color="0.3", linestyle="--", linewidth=1, label="noise floor")
        ax.legend(fontsize=8)
    if (data["mse_mean"] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("adaptation steps k")
    ax.set_ylabel("test MSE")
    ax.set_title(_wrap(title), fontsize=9)
    fig.tight_layout()
    return fig


def best_fits(run_path: Path, n_tasks: int = 4) -> plt.Figure | None:
    """The run's meta-parameters adapted to the first tasks of its test bank (``eval.seed``'s,
    the same tasks for every run of a task config), the notebook's style: data as
    blue crosses, each inner-loop step's prediction as a red line fading in. The run is rebuilt
    by :func:`rundir.restore` (the trainer's own components). None when the run has no params.npz;
    a run this version cannot rebuild raises :class:`rundir.RestoreError` naming why."""
    from omegaconf import OmegaConf

    from ..evaluate import test_bank

    if not (Path(run_path) / rundir.PARAMS).exists():
        return None
    run = rundir.restore(run_path)
    tasks = test_bank(run.tasks, run.config.task, OmegaConf.merge(run.config.eval, {"num_tasks": n_tasks}))
    trajectories = [run.algorithm.adapt(run.model, run.params, task, run.inner) for task in tasks]
    fig, axes = plt.subplots(1, n_tasks, figsize=(3.2 * n_tasks, 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    for i, (ax, task, trajectory) in enumerate(zip(axes, tasks, trajectories)):
        xlim = getattr(run.tasks, "xmin", task.x.min()), getattr(run.tasks, "xmax", task.x.max())
        draw_adaptation(ax, run.model.predict, task, trajectory, xlim, ms=4, lw=1.2)
        ax.set_title(f"test task {i + 1}", fontsize=9)
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
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
