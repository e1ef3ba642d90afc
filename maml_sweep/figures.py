"""The notebook's figure: adaptation trajectories on the validation task, drawn without a display.

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
                label=f"after {i} steps" if i == len(trajectory) - 1 else None)


def validation_fits_figure(predict, adapt, snapshots: list[tuple[int, dict]], task: Task,
                           xlim: tuple[float, float]) -> Figure:
    """A 3x4 grid: per snapshot (step, meta-params), the task's data as blue crosses and the
    prediction after each inner step (``adapt(meta, task)`` gives the trajectory) as a red line
    fading in (the notebook's ``visualize``); axes labelled x and y, one legend for the grid."""
    from matplotlib.figure import Figure  # lazily: see the module docstring

    fig = Figure(figsize=(16, 9), layout="constrained")
    axes = fig.subplots(3, 4, sharex=True)
    for ax, (step, params) in zip(axes.flat, snapshots):
        draw_adaptation(ax, predict, task, adapt(params, task), xlim)
        ax.set_title(f"meta-parameters at outer step {step}")
    for ax in list(axes.flat)[len(snapshots):]:  # fewer than 12 snapshots when outer_steps < 12
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("x (input)")
    for ax in axes[:, 0]:
        ax.set_ylabel("y (target)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, [_legend_text(lab) for lab in labels], loc="outside lower center", ncols=len(labels))
    fig.suptitle("The validation task: data, and the prediction after each inner step (darker = later)")
    return fig


def _legend_text(label: str) -> str:
    return "validation task data" if label == "data" else f"prediction {label} of the inner loop"


def plot_validation_fits(predict, adapt, snapshots: list[tuple[int, dict]], task: Task,
                         xlim: tuple[float, float], path: Path) -> None:
    """Save :func:`validation_fits_figure` as a PNG at ``path`` (atomically)."""
    fig = validation_fits_figure(predict, adapt, snapshots, task, xlim)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
