"""Stopping a sweep cleanly: Ctrl-C or SIGTERM to any process of a multirun stops every job and
starts no new one; no worker outlives the sweep's process by more than a few seconds.

- The sweep's process (the one that runs Hydra's launcher) catches SIGINT and SIGTERM for the
  sweep's life (:func:`install`): it notes the first signal and writes it to ``SWEEP_DIR/.sweep_stop``;
  the launcher goes on collecting its jobs, so Hydra's end of the multirun writes
  ``sweep_summary.csv``, prints the resume line and exits ``128 + signal`` (130, 143).
- A job that starts after that returns at once, leaving no directory (:func:`job_may_start`).
- A worker process (joblib's loky workers) watches, every :data:`POLL_S` seconds
  (:func:`watch_worker`): the stop file (its running job gets the same signal, unless the job got
  one already, e.g. from a Ctrl-C to the whole process group) and its parent (when the sweep's
  process is gone, even by SIGKILL, the job gets SIGTERM, and the worker exits once the job has
  written its final status, at most :data:`ORPHAN_GRACE_S` seconds later).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from . import rundir

STOP_FILE = ".sweep_stop"  # {"signal": name, "signum": n}: the sweep was asked to stop
SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.5
ORPHAN_GRACE_S = 8.0

_received: list[int] = []  # signals the sweep's process got (first one decides the exit code)
_watched: dict = {}  # this worker's watch: {"sweep_dir": Path}


def install(sweep_dir: Path) -> None:
    """In the sweep's process: from now on SIGINT/SIGTERM stop the sweep (see the module docstring)."""
    sweep_dir = Path(sweep_dir)
    (sweep_dir / STOP_FILE).unlink(missing_ok=True)  # a stop is per invocation
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum, frame):
        first = not _received
        _received.append(signum)
        if first:
            rundir.write_json(sweep_dir / STOP_FILE, {"signal": signal.Signals(signum).name, "signum": signum})
    for s in SIGNALS:
        signal.signal(s, handle)


def received() -> int | None:
    """The first stop signal the sweep's process got, or None."""
    return _received[0] if _received else None


def stop_signal(sweep_dir: Path) -> int | None:
    """The signal the sweep in ``sweep_dir`` was stopped by, or None while it goes on."""
    try:
        return int(_read(Path(sweep_dir) / STOP_FILE)["signum"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read(path: Path) -> dict:
    import json

    return json.loads(rundir.read_text(path, 4096))


def job_may_start(sweep_dir: Path, out_dir: Path) -> bool:
    """False when the sweep was stopped: the job must not run; its directory, just made by Hydra
    and still empty, is removed so the sweep's table does not show a job that never started."""
    if stop_signal(sweep_dir) is None:
        return True
    try:
        os.rmdir(out_dir)
    except OSError:
        pass  # not empty: a run's directory from before, left as it is
    return False


def watch_worker(sweep_dir: Path) -> None:
    """In a worker process of a parallel launcher: start (once) the watch described above."""
    _watched["sweep_dir"] = Path(sweep_dir)
    if _watched.get("thread"):
        return
    parent = os.getppid()

    def loop():
        from .train import StopSignals

        while True:
            time.sleep(POLL_S)
            orphan = os.getppid() != parent
            signum = signal.SIGTERM if orphan else stop_signal(_watched["sweep_dir"])
            job = StopSignals.active
            if signum and job is not None and not job.received:
                os.kill(os.getpid(), signum)
            if orphan:
                end = time.monotonic() + ORPHAN_GRACE_S
                while StopSignals.active is not None and time.monotonic() < end:
                    time.sleep(0.05)
                os._exit(128 + signal.SIGTERM)

    _watched["thread"] = threading.Thread(target=loop, name="maml-sweep-watch", daemon=True)
    _watched["thread"].start()
