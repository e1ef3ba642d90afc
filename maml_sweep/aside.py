"""``maml-sweep-aside FILE...``: set damaged run files aside so the run can start over.

Each file (e.g. ``outputs/runs/X/checkpoint.npz``) moves into its run directory's ``.aside/``,
stamped with the UTC time; nothing is deleted. The next run in that directory then starts over
(a summary set aside: resumes from the checkpoint if there is a sound one; a checkpoint set aside:
starts from step 0). Refused while the run is live. Same as ``python -m maml_sweep.aside``.
"""
from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .rundir import (
    ADAPTATION,
    ASIDE,
    CHECKPOINT,
    FITS,
    HYDRA_CONFIG,
    LOCK,
    METRICS,
    PARAMS,
    SUMMARY,
    TEST_MSE,
    RunDirError,
    _unsafe,
    file_kind,
)
from .runlock import RunLock

ASIDE_FILES = (METRICS, SUMMARY, PARAMS, CHECKPOINT, FITS, ADAPTATION, TEST_MSE, LOCK, ".hydra")
ASIDE_HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def set_aside(path: Path) -> Path:
    """Move a file of a run directory (e.g. a damaged checkpoint, or a symbolic link or FIFO in a
    run file's place) into that run directory's ``.aside/``, stamped with the UTC time; returns
    the new path. Only the run's own files move (:data:`ASIDE_FILES` in a run directory, or
    :data:`ASIDE_HYDRA_FILES` in its ``.hydra/``), never a folder; a link moves as a link.
    Refused (:class:`RunDirError`) otherwise, and (:class:`RunDirBusy`) while the run is live."""
    path = Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path}: no such file")
    mode = os.lstat(path).st_mode
    in_hydra = path.parent.name == ".hydra" and not os.path.islink(path.parent)
    run_dir = path.parent.parent if in_hydra else path.parent
    allowed = ASIDE_HYDRA_FILES if in_hydra else ASIDE_FILES
    is_run = any(os.path.lexists(run_dir / n) for n in (LOCK, SUMMARY, HYDRA_CONFIG, CHECKPOINT))
    own = path.name in allowed or (not in_hydra and path.name.endswith(".log"))  # the job log too
    if stat.S_ISDIR(mode) or not own or not is_run:
        raise RunDirError(f"{path} is not a file of a maml-sweep run directory; maml-sweep-aside moves only "
                          f"{', '.join(ASIDE_FILES)}, *.log (or .hydra/{{{','.join(ASIDE_HYDRA_FILES)}}}) of a run")
    lock_sound = os.path.lexists(run_dir / LOCK) and file_kind(os.lstat(run_dir / LOCK).st_mode) is None
    with RunLock(run_dir) if lock_sound or not os.path.lexists(run_dir / LOCK) else _no_lock():
        folder = run_dir / ASIDE
        if os.path.islink(folder) or (os.path.lexists(folder) and not folder.is_dir()):
            raise _unsafe(folder, "not a real folder")
        folder.mkdir(exist_ok=True)
        stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{'hydra-' if in_hydra else ''}{path.name}"
        target = folder / stem
        n = 1
        while os.path.lexists(target):
            target, n = folder / f"{stem}.{n}", n + 1
        os.replace(path, target)
    return target


@contextmanager
def _no_lock():
    """For setting aside a lock file that is no regular file: nobody can hold a lock on it."""
    yield



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maml-sweep-aside", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="run files to set aside (kept in RUN_DIR/.aside/)")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            target = set_aside(path)
        except (OSError, RunDirError) as exc:
            print(f"maml-sweep-aside: error: {exc}", file=sys.stderr)
            return 1
        print(f"{path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
