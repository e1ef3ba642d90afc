"""The exclusive, whole-life lock on a run directory (``flock`` on ``.run.lock``).

Held by the one process that owns the run, for its whole life; the kernel releases it when that
process dies, SIGKILL included. It holds the owner's PID and host; :func:`is_live` tells a live run
from a dead one.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .rundir import LOCK, DamagedRunFile, RunDirBusy, open_fd, read_text


class RunLock:
    """The exclusive, whole-life lock on a run directory (``flock`` on ``.run.lock``).

    ``acquire()`` takes it without waiting or raises :class:`RunDirBusy` naming the holder; the
    holder's PID, host and start time are written into the file (best effort: a full disk must not
    stop a run that only reads). The kernel releases it when the process exits or dies."""

    def __init__(self, run_dir: Path, name: str = LOCK):
        self.path = Path(run_dir) / name
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = lock_holder(self.path.parent, self.path.name)
            raise RunDirBusy(f"{self.path.parent} is in use by {holder}; wait for "
                             "it to end (or stop it) or choose another hydra.run.dir / hydra.sweep.dir") from None
        self._fd = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        data = (json.dumps(holder) + "\n").encode()
        try:  # write over the old holder first, then cut: a reader never sees an empty file
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except OSError:
            pass
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_live(run_dir: Path) -> bool:
    """True while a process holds ``run_dir``'s lock (also when it is this very process)."""
    try:
        fd = open_fd(Path(run_dir) / LOCK)
    except (OSError, DamagedRunFile):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def lock_holder(run_dir: Path, name: str = LOCK) -> str:
    """``PID n on host h (since HH:MM:SS UTC)`` from the lock file, or ``another process``.
    A holder that has just taken the lock may not have written itself yet: up to 20 reads,
    10 ms apart."""
    tries = 20
    for attempt in range(tries):
        try:
            info = json.loads(read_text(Path(run_dir) / name, 4096))
            since = time.strftime("%H:%M:%S UTC", time.gmtime(info["since"]))
            return f"PID {info['pid']} on host {info['host']} (since {since})"
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            if attempt + 1 < tries:
                time.sleep(0.01)
    return "another process"
