"""What pruning buys, measured: the same search with and without pruning, repeated, and the best
``val_mse`` reached against the outer steps spent.

    python -m maml_sweep.search.measure OUT [--trials 40] [--reps 3] [--outer-steps 1000] [--eval-every 100]

Runs ``maml-sweep -m sweep=optuna`` (the preset's space: algorithm.inner_lr, optimizer.lr,
algorithm.inner_steps on the default step task) into ``OUT/<pruner>-<rep>`` with ``seed=<rep>``
(the sampler's and the runs' seed), the two pruners' searches side by side (two processes), then
prints a Markdown table and writes ``OUT/pruning.png`` (best val_mse so far against outer steps
spent, one line per search). Rerunning continues unfinished searches and skips finished ones.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import rundir
from .study import DEFAULT_DB

PRUNERS = ("none", "median")
STUDY = "maml_lr_search"  # conf/sweep/optuna.yaml's study_name


def search_command(out: Path, pruner: str, rep: int, args) -> list[str]:
    return [sys.executable, "-m", "maml_sweep", "-m", "sweep=optuna", f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.pruner={pruner}", f"seed={rep}", f"train.outer_steps={args.outer_steps}",
            f"train.eval_every={args.eval_every}", f"eval.val_every={args.eval_every}",
            f"eval.num_tasks={args.eval_tasks}",
            f"hydra.sweep.dir={out / f'{pruner}-{rep}'}"]


def trajectory(sweep_dir: Path) -> list[tuple[int, float]]:
    """(outer steps spent so far, best val_mse so far) after each trial, in trial order."""
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep_dir / DEFAULT_DB}")
    spent, best, points = 0, float("inf"), []
    for t in sorted(study.trials, key=lambda t: t.number):
        summary = rundir.read_summary(sweep_dir / str(t.number)) or {}
        spent += int(summary.get("steps") or 0)
        if t.state.name == "COMPLETE" and t.value is not None:
            best = min(best, t.value)
        points.append((spent, best))
    return points


def pruned_count(sweep_dir: Path) -> int:
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep_dir / DEFAULT_DB}")
    return sum(t.state.name == "PRUNED" for t in study.trials)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--outer-steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-tasks", type=int, default=50, help="test bank size (val_mse does not use it)")
    args = parser.parse_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)

    def search(pruner: str) -> None:
        for rep in range(args.reps):
            with open(out / f"{pruner}-{rep}.out", "w") as log:
                subprocess.run(search_command(out, pruner, rep, args), stdout=log, stderr=subprocess.STDOUT,
                               check=False)
            print(f"{pruner}-{rep} done", flush=True)

    with ThreadPoolExecutor(len(PRUNERS)) as pool:
        list(pool.map(search, PRUNERS))
    rows, curves = [], {}
    for pruner in PRUNERS:
        for rep in range(args.reps):
            sweep_dir = out / f"{pruner}-{rep}"
            curves[(pruner, rep)] = points = trajectory(sweep_dir)
            rows.append((pruner, rep, points[-1][1], points[-1][0], pruned_count(sweep_dir)))
    print(f"| pruner | seed | best val_mse | outer steps spent (of {args.trials} x {args.outer_steps}) "
          "| trials pruned |")
    print("|---|---|---|---|---|")
    for pruner, rep, best, spent, pruned in rows:
        print(f"| {pruner} | {rep} | {best:.4f} | {spent} | {pruned} |")
    print("\nAt equal cost: the unpruned search's best when it had spent what the pruned one spent in all.\n")
    print("| seed | pruned: best, steps | unpruned: best at that many steps | unpruned: best at the end |")
    print("|---|---|---|---|")
    for rep in range(args.reps):
        (spent, best), unpruned = curves[("median", rep)][-1], curves[("none", rep)]
        at_budget = min((b for s, b in unpruned if s <= spent), default=float("inf"))
        print(f"| {rep} | {best:.4f}, {spent} | {at_budget:.4f} | {unpruned[-1][1]:.4f} |")
    plot(curves, out / "pruning.png")


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    colors = {"none": "tab:blue", "median": "tab:orange"}
    for (pruner, rep), points in curves.items():
        xs, ys = zip(*points)
        ax.step(xs, ys, where="post", color=colors[pruner], alpha=0.8, label=f"pruner {pruner}" if rep == 0 else None)
    ax.set_xlabel("outer steps spent (all trials)")
    ax.set_ylabel("best val_mse so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
