"""The notebook's figure: adaptation trajectories on the validation task, drawn without a display.

matplotlib is imported only when a figure is drawn (it costs ~0.35 s to import; training never
needs it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

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


def plot_validation_fits(predict, adapt, snapshots: list[tuple[int, dict]], task: Task,
                         xlim: tuple[float, float], path: Path) -> None:
    """Save a 3x4 grid: per snapshot (step, meta-params), the task's data as blue crosses and the
    prediction after each inner step (``adapt(meta, task)`` gives the trajectory) as a red line
    fading in (the notebook's ``visualize``)."""
    from matplotlib.figure import Figure  # lazily: see the module docstring

    fig = Figure(figsize=(16, 9), layout="constrained")
    axes = list(fig.subplots(3, 4).flat)
    for ax, (step, params) in zip(axes, snapshots):
        draw_adaptation(ax, predict, task, adapt(params, task), xlim)
        ax.set_title(f"Iteration {step}")
    for ax in axes[len(snapshots):]:  # fewer than 12 snapshots when outer_steps < 12
        ax.set_axis_off()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
