"""Recompute completed runs' test evaluation from their saved ``params.npz`` with this code.

Training is not touched: the run's config (``.hydra/config.yaml``) rebuilds the model, the test
bank and the scratch baseline; ``test_mse.npz``, ``adaptation.csv`` and the test keys of
``summary.json`` are rewritten (atomically), so statistics code changed after training applies
to old runs. Runs that did not complete are listed and left alone.

    python -m maml_sweep.tools.reevaluate RUN_OR_SWEEP_DIR [...]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import rundir, runlock
from ..components import RestoreError, run_config
from ..train import Trainer


class Refused(ValueError):
    """A run reevaluate leaves alone; the message is one line naming why (and the file)."""


def reevaluate(run_dir: Path) -> dict:
    """Re-run the test evaluation of the completed run in ``run_dir``; returns its new summary.

    Reads and writes as a run does (regular files only, bounded reads, the run's lock held) and
    applies the same checks before any work: the run's config must pass
    :func:`maml_sweep.components.run_config` (:func:`maml_sweep.config.check_values`), caps
    (``train.max_memory_gb``, ``train.max_hours``) included. Raises :class:`Refused`,
    :class:`rundir.RunDirError` or :class:`rundir.DamagedFile` (one line each) otherwise."""
    run_dir = Path(run_dir)
    unsafe = rundir.unsafe_entry(run_dir)
    if unsafe is not None:
        raise unsafe
    summary = rundir.read_summary(run_dir)
    if summary is None or summary.get("status") != rundir.COMPLETED:
        raise Refused(f"{run_dir}: not a completed run (status {None if summary is None else summary.get('status')})")
    try:
        cfg = run_config(run_dir)  # the one way a run's config is read back (as the analysis rebuilds runs)
    except RestoreError as exc:
        raise Refused(str(exc)) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise Refused(f"{run_dir}: not writable by this user; nothing was changed")
    try:
        params = rundir.load_params(run_dir / rundir.PARAMS)
        with runlock.RunLock(run_dir):  # no live process owns the run while its results are rewritten
            keys = Trainer(cfg, run_dir, summary["config_hash"]).evaluate(params)
            new = {**{k: v for k, v in summary.items() if not k.startswith("test_")}, **keys}
            rundir.write_json(run_dir / rundir.SUMMARY, new)
    except FileNotFoundError:
        raise Refused(f"{run_dir}: no {rundir.PARAMS} to evaluate") from None
    except OSError as exc:  # a read-only disk, a full one: the files keep their old, whole versions
        raise Refused(f"{run_dir}: cannot write there ({exc.strerror or exc}); the run's files are unchanged "
                      "(each is replaced whole or not at all)") from None
    return new


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maml_sweep.tools.reevaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=Path, help="run directories, or sweep directories holding them")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    runs = sorted({s.parent for path in args.paths
                   for s in ([path / rundir.SUMMARY] if os.path.lexists(path / rundir.SUMMARY)
                             else path.glob(f"*/{rundir.SUMMARY}"))})
    if not runs:
        print(f"reevaluate: error: no run directories (with {rundir.SUMMARY}) in {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    skipped = 0
    for run in runs:
        try:
            s = reevaluate(run)
        except (ValueError, rundir.RunDirError) as exc:  # DamagedFile and Refused are ValueErrors
            print(f"skipped {exc}" if str(run) in str(exc) else f"skipped {run}: {exc}", file=sys.stderr)
            skipped += 1
            continue
        steps = [k for k in s if k.startswith("test_mse_k")]
        print(f"{run}: " + ", ".join(f"{k} {s[k]:.4g}" for k in steps))  # floats: inf prints as inf
    print(f"re-evaluated {len(runs) - skipped} of {len(runs)} runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
