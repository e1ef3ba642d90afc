"""``maml-sweep-aside FILE...``: set damaged run files aside so the run can start over.

Each file (e.g. ``outputs/runs/X/checkpoint.npz``) moves into its run directory's ``.aside/``,
stamped with the UTC time; nothing is deleted. The next run in that directory then starts over
(a summary set aside: resumes from the checkpoint if there is a sound one; a checkpoint set aside:
starts from step 0). Refused while the run is live. Same as ``python -m maml_sweep.aside``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import rundir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maml-sweep-aside", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="run files to set aside (kept in RUN_DIR/.aside/)")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            target = rundir.set_aside(path)
        except (OSError, rundir.RunDirError) as exc:
            print(f"maml-sweep-aside: error: {exc}", file=sys.stderr)
            return 1
        print(f"{path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
