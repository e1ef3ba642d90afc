"""``hydra/launcher=slurm`` (Hydra's submitit SLURM launcher) with one clear line instead of a flood
when the cluster keeps no job accounting.

submitit polls ``sacct`` for job states. On a cluster without accounting storage every poll fails
and logs "Bypassing sacct error ... status may be inaccurate" (and sacct prints its own error),
several times per job. Nothing is wrong: submitit then learns that a job ended from its result
file. :class:`QuietSacct` asks ``sacct`` once before submitting; if it fails, it says so in one
line and stops submitit's polling of ``sacct`` for this sweep.
(Hydra takes launchers only from its ``hydra_plugins`` package, so this is a callback, not a launcher.)
"""
from __future__ import annotations

import logging
import subprocess

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


def accounting_error() -> str | None:
    """None when ``sacct`` answers; else its error message (e.g. "Slurm accounting storage is disabled")."""
    try:
        subprocess.run(["sacct", "--parsable2", "--noheader", "-X", "-j", "1"], capture_output=True,
                       text=True, check=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        return (exc.stderr or exc.stdout or f"exit {exc.returncode}").strip().splitlines()[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None


class QuietSacct(Callback):
    """A Hydra callback: before a SLURM multirun, checks ``sacct`` once; without job accounting it
    says so in one line and stops submitit's polling of ``sacct`` in this (the submitting) process."""

    def on_multirun_start(self, config, **kwargs) -> None:
        if not str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
            return
        error = accounting_error()
        if error is None:
            return
        from submitit.slurm.slurm import SlurmJob

        log.info("SLURM job accounting is not available (sacct: %s): job states come from submitit's "
                 "result files, and sacct is not polled.", error, extra={"console": True})  # once, on the console
        SlurmJob.watcher._make_command = lambda: None  # update() then skips the sacct call
