"""Line figures in panels: learning curves, adaptation curves and ECDFs share one drawing function.

Lines are configurations or methods, panels are task conditions (small multiples only over
conditions), colours come from one mapping per report (:func:`colours`) so a method has the same
colour in every figure, and the legend sits outside the axes with each entry once. The y scale is
chosen from the lines' own span: logarithmic only when the plotted means span more than 20x.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..figures import count_text  # noqa: E402

PANEL_W, PANEL_H = 4.2, 3.0  # inches per panel; at most MAX_COLS panels a row (<= 2,400 px at dpi 110)
MAX_COLS = 4
LOG_SPAN = 20.0  # plotted means spanning more than this factor get a log axis


def colours(labels: list[str], numeric: bool = False) -> dict[str, tuple]:
    """One colour per label, in the given order: a qualitative palette with a distinct colour per
    method or configuration (``tab10``, then ``tab20``), or an ordered one (viridis) for levels of one
    number."""
    n = len(labels)
    if numeric and n > 1:
        pal = sns.color_palette("viridis", n)
    else:
        pal = sns.color_palette("tab10" if n <= 10 else "tab20", n)
    return dict(zip(labels, pal))


def log_axis(values) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v) and (v > 0).all() and v.max() / v.min() > LOG_SPAN)


def grid(n_panels: int, extra_width: float = 2.6):
    """(figure, flat list of n_panels axes) in rows of at most :data:`MAX_COLS`, room for a legend."""
    cols = min(MAX_COLS, max(1, n_panels))
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_W * cols + extra_width, PANEL_H * rows + 0.4),
                             squeeze=False, sharey=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.remove()
    return fig, flat[:n_panels]


def line_panels(data: pd.DataFrame, *, x: str, y: str, line: str, panel: str | None, colour: dict,
                xlabel: str, ylabel: str, band: tuple[str, str] | None = None, logx: bool = False,
                marks: dict | None = None, hline: tuple[float, str] | None = None, legend_title: str = "",
                steps: bool = False, logy: bool | None = None, title: str = "") -> plt.Figure | None:
    """One panel per ``panel`` value (in order of appearance), one line per ``line`` value coloured by
    ``colour`` (label -> colour), shaded ``band`` (low, high columns) where given. ``marks``: label ->
    x of a dotted vertical line in that line's colour (e.g. the inner steps trained for); ``hline``:
    (y, label) drawn only where it falls inside the data's range (else left to the caption); ``logy``
    None: log only when the means span more than :data:`LOG_SPAN`."""
    if data.empty:
        return None
    panels = list(pd.unique(data[panel])) if panel else [None]
    fig, axes = grid(len(panels))
    handles = {}
    for ax, p in zip(axes, panels):
        part = data[data[panel] == p] if panel else data
        values = []
        for label in colour:
            d = part[part[line] == label].sort_values(x)
            if d.empty:
                continue
            c = colour[label]
            draw = ax.step if steps else ax.plot
            kw = {"where": "post"} if steps else {"marker": "o" if len(d) <= 12 else None, "markersize": 3}
            (h,) = draw(d[x], d[y], color=c, linewidth=1.6, label=label, **kw)
            handles.setdefault(label, h)
            values.append(d[y].to_numpy(float))
            if band and d[band[0]].notna().any():
                ax.fill_between(d[x], d[band[0]], d[band[1]], color=c, alpha=0.18, linewidth=0,
                                step="post" if steps else None)
            if marks and label in marks and marks[label] is not None:
                ax.axvline(marks[label], color=c, linestyle=":", linewidth=1.2)
        shown = np.concatenate(values) if values else np.array([])
        if log_axis(shown) if logy is None else logy:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if hline is not None and len(shown) and np.isfinite(hline[0]):
            fin = shown[np.isfinite(shown)]
            if len(fin) and fin.min() / 3 <= hline[0] <= fin.max():
                h = ax.axhline(hline[0], color="0.35", linestyle="--", linewidth=1)
                handles.setdefault(hline[1], h)
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if p is not None:
            ax.set_title(str(p), fontsize=9)
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles.keys()), title=legend_title or None, loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, title_fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ecdf_frame(scores: dict[str, dict[int, np.ndarray]]) -> pd.DataFrame:
    """Long rows (line, panel ``k=..``, mse, fraction) of the empirical CDF of every (seed, task)
    score: ``scores`` maps a line label to {k: (S, T) per-task MSE}. Non-finite MSEs count as
    larger than every finite value (the curve stops short of 1 by their share)."""
    rows = []
    for label, by_k in scores.items():
        for k, x in by_k.items():
            v = np.asarray(x, dtype=float).ravel()
            n = len(v)
            fin = np.sort(v[np.isfinite(v)])
            if not len(fin):
                continue
            frac = np.arange(1, len(fin) + 1) / n
            if len(fin) > 400:  # keep the shape, not every point
                idx = np.unique(np.linspace(0, len(fin) - 1, 400).astype(int))
                fin, frac = fin[idx], frac[idx]
            rows.append(pd.DataFrame({"line": label, "panel": f"after k={count_text(k, 'adaptation step')}",
                                      "mse": fin, "fraction": frac}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["line", "panel", "mse", "fraction"])


def forest(rows: pd.DataFrame, label: str, colour: dict | None = None, title: str = "") -> plt.Figure | None:
    """Paired differences against the best with their intervals: one row per ``label`` value (top to
    bottom in order), one panel per ``k``; columns ``k``, ``mean_diff``, ``mean_diff_low``, ``mean_diff_high``.
    A dotted zero line; a point without an interval is drawn hollow."""
    if rows.empty:
        return None
    ks = sorted(pd.unique(rows["k"]))
    labels = list(pd.unique(rows[label]))
    height = max(2.2, 0.32 * len(labels) + 1.2)
    fig, axes = plt.subplots(1, len(ks), figsize=(min(PANEL_W * len(ks), 16) + 3.0, height), squeeze=False,
                             sharey=True)
    ypos = {lab: i for i, lab in enumerate(labels)}
    for ax, k in zip(axes[0], ks):
        part = rows[rows["k"] == k]
        for _, r in part.iterrows():
            y = ypos[r[label]]
            c = (colour or {}).get(r[label], "C0")
            d, lo, hi = r["mean_diff"], r["mean_diff_low"], r["mean_diff_high"]
            if not np.isfinite(d):
                ax.annotate("not finite", (0, y), fontsize=7, va="center")
                continue
            if np.isfinite(lo) and np.isfinite(hi):
                ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=c, capsize=3, markersize=5)
            else:
                ax.plot(d, y, "o", mfc="none", color=c, markersize=5)
        ax.axvline(0, color="0.3", linestyle=":", linewidth=1)
        ax.set_title(f"k={count_text(k, 'adaptation step')}", fontsize=9)
        ax.set_xlabel("test MSE minus the best's")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(labels)))
    axes[0][0].set_yticklabels(labels, fontsize=8)
    axes[0][0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
