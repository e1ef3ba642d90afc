"""The notebook's figure: adaptation trajectories on the validation task, drawn without a display.

One task's fit, whatever its input dimension (:func:`draw_fit`): 1-D inputs as the notebook draws
them (data as blue crosses, each inner step's prediction as a red line fading in); 2-D inputs as a
heat map of the prediction over [xmin, xmax)^2 with the task's points drawn on it in the same
colours (a point that vanishes into the background is fitted); more dimensions as predicted
against true values at the task's points.

matplotlib is imported only when a figure is drawn (it costs ~0.35 s to import; training never
needs it)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from .rundir import atomic_path
from .tasks import Task


def count_text(k: int, noun: str = "step") -> str:
    """``k`` and the noun in its number: "1 step", "5 steps"."""
    return f"{k} {noun}{'' if k == 1 else 's'}"


def after_steps(k: int) -> str:
    """Legend text for the fit after ``k`` inner steps: "after 1 step", "after 5 steps"."""
    return f"after {count_text(k)}"


def panel_steps(outer_steps: int, panels: int = 12) -> list[int]:
    """Outer steps at which to snapshot params for the grid: every outer_steps/panels steps."""
    return sorted({max(1, round(k * outer_steps / panels)) for k in range(1, panels + 1)})


def draw_adaptation(ax, predict, task: Task, trajectory: list[dict], xlim: tuple[float, float],
                    ms: float = 3.0, lw: float = 1.5) -> None:
    """On ``ax``: the task's support data as blue crosses and the prediction of each params in
    ``trajectory`` (initial, ..., adapted) as a red line fading in (the notebook's ``visualize``).
    Legend labels: "data" and "after K steps"."""
    px = np.linspace(xlim[0], xlim[1], 1000)
    ax.plot(task.x, task.y, "bx", ms=ms, label="data")
    for i, p in enumerate(trajectory):
        ax.plot(px, predict(p, px), "r-", alpha=(i + 1) / len(trajectory), lw=lw,
                label=after_steps(i) if i == len(trajectory) - 1 else None)


def input_dim(task: Task) -> int:
    """The task's input dimension (x (N,): 1; x (N, dim): dim)."""
    return 1 if np.ndim(task.x) == 1 else np.shape(task.x)[1]


SURFACE_CMAP = "viridis"


def target_norm(tasks: list[Task]):
    """One colour scale for the targets (support and query) of ``tasks``."""
    from matplotlib.colors import Normalize

    ys = np.concatenate([np.concatenate([t.y, t.query[1]]) for t in tasks])
    return Normalize(float(ys.min()), float(ys.max()))


def draw_surface(ax, predict, task: Task, params: dict, xlim: tuple[float, float], norm, grid: int = 60,
                 query: bool = True):
    """On ``ax``: the prediction of ``params`` over [xlim]^2 as a heat map (``norm``: the colour
    scale) with the task's support points as large circles and (``query``) its held-out points as
    small ones, coloured by their targets on the same scale. Returns the heat map (for a colour bar)."""
    g = np.linspace(xlim[0], xlim[1], grid)
    gx, gy = np.meshgrid(g, g)
    pred = np.asarray(predict(params, np.stack([gx.ravel(), gy.ravel()], axis=1))).reshape(grid, grid)
    image = ax.imshow(pred, origin="lower", extent=(xlim[0], xlim[1], xlim[0], xlim[1]), cmap=SURFACE_CMAP,
                      norm=norm, aspect="auto")
    if query and task.x_query is not None:
        ax.scatter(task.x_query[:, 0], task.x_query[:, 1], c=task.y_query, cmap=SURFACE_CMAP, norm=norm, s=10,
                   edgecolors="white", linewidths=0.4, label="held-out points")
    ax.scatter(task.x[:, 0], task.x[:, 1], c=task.y, cmap=SURFACE_CMAP, norm=norm, s=40, edgecolors="black",
               linewidths=0.8, label="support points")
    return image


def draw_parity(ax, predict, task: Task, trajectory: list[dict], ms: float = 3.0) -> None:
    """On ``ax``: predicted against true targets at the task's points before (grey) and after the
    inner loop (red), with the diagonal (inputs of any dimension)."""
    x, y = task.query
    ax.plot(y, np.asarray(predict(trajectory[0], x)), "o", color="0.6", ms=ms, label=after_steps(0))
    ax.plot(y, np.asarray(predict(trajectory[-1], x)), "o", color="r", ms=ms,
            label=after_steps(len(trajectory) - 1))
    lo, hi = float(np.min(y)), float(np.max(y))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="true = predicted")


def draw_fit(ax, predict, task: Task, trajectory: list[dict], xlim: tuple[float, float], norm=None,
             ms: float = 3.0, lw: float = 1.5):
    """The task's fit by ``trajectory`` (initial, ..., adapted) for any input dimension (see the
    module docstring); 2-D: the adapted prediction, colour scale ``norm``. Returns the heat map
    of a 2-D task, else None."""
    dim = input_dim(task)
    if dim == 1:
        draw_adaptation(ax, predict, task, trajectory, xlim, ms, lw)
        return None
    if dim == 2:
        return draw_surface(ax, predict, task, trajectory[-1], xlim, norm or target_norm([task]), query=False)
    draw_parity(ax, predict, task, trajectory, ms)
    return None


def validation_fits_figure(predict, adapt, snapshots: list[tuple[int, dict]], task: Task,
                           xlim: tuple[float, float]) -> Figure:
    """A 3x4 grid: per snapshot (step, meta-params), the task's data as blue crosses and the
    prediction after each inner step (``adapt(meta, task)`` gives the trajectory) as a red line
    fading in (the notebook's ``visualize``); axes labelled x and y, one legend for the grid."""
    from matplotlib.figure import Figure  # lazily: see the module docstring

    fig = Figure(figsize=(16, 9), layout="constrained")
    dim = input_dim(task)
    axes = fig.subplots(3, 4, sharex=True, sharey=dim == 2)
    norm = target_norm([task]) if dim == 2 else None
    image = None
    for ax, (step, params) in zip(axes.flat, snapshots):
        image = draw_fit(ax, predict, task, adapt(params, task), xlim, norm) or image
        ax.set_title(f"meta-parameters at outer step {step}")
    for ax in list(axes.flat)[len(snapshots):]:  # fewer than 12 snapshots when outer_steps < 12
        ax.set_axis_off()
    xlabel, ylabel, title = {
        1: ("x (input)", "y (target)", "data, and the prediction after each inner step (darker = later)"),
        2: ("x1 (input)", "x2 (input)", "the prediction after the inner loop (colour), its data points "
            "coloured by their targets on the same scale"),
    }.get(dim, ("true y", "predicted y", "predicted against true targets before and after the inner loop"))
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if image is not None:
        fig.colorbar(image, ax=axes, label="y (target; prediction)", shrink=0.6)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, [_legend_text(lab) for lab in labels], loc="outside lower center", ncols=len(labels))
    fig.suptitle(f"The validation task: {title}")
    return fig


def _legend_text(label: str) -> str:
    if label == "data":
        return "validation task data"
    return f"prediction {label} of the inner loop" if label.startswith("after") else label


def plot_validation_fits(predict, adapt, snapshots: list[tuple[int, dict]], task: Task,
                         xlim: tuple[float, float], path: Path) -> None:
    """Save :func:`validation_fits_figure` as a PNG at ``path`` (atomically)."""
    fig = validation_fits_figure(predict, adapt, snapshots, task, xlim)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
