"""Log lines: which reach the console, and in a multirun every line names its job.

Hydra configures logging for each job (console and ``maml_sweep.log``). In a multirun the console
shows one line per finished job (:mod:`maml_sweep.console`), so :class:`QuietConsole` keeps the
jobs' INFO lines (every evaluation step) in their log files unless ``-v`` or ``hydra.verbose``
is given. Under a parallel launcher (joblib, submitit, SLURM) the jobs' lines interleave on one
terminal when shown, so :func:`tag_job` prefixes every line of a job with ``[job N]``.
"""
from __future__ import annotations

import logging
import os

QUIET_ENV = "MAML_SWEEP_QUIET"  # "1": a multirun without -v; its jobs' INFO lines stay in their log files
VERBOSE_FLAGS = ("-v", "--verbose")


class QuietConsole(logging.Filter):
    """On console handlers (``conf/config.yaml``): while :data:`QUIET_ENV` is set, only warnings,
    errors and records logged with ``extra={"console": True}`` pass; log files get every line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.WARNING or getattr(record, "console", False)
                or os.environ.get(QUIET_ENV) != "1")


_VERBOSE: list[bool] = []


def take_verbose_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``-v``/``--verbose`` (not Hydra flags), remembering that it was given."""
    kept = [a for a in argv if a not in VERBOSE_FLAGS]
    if len(kept) != len(argv):
        _VERBOSE.append(True)
    return kept


def verbose() -> bool:
    """True when the command line asked for the jobs' lines on the console (``-v``)."""
    return bool(_VERBOSE)


class JobTag(logging.Filter):
    """Prefixes each record's message with ``tag`` once, whichever handler sees it first."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "job_tag", None):
            record.msg = f"{self.tag} {record.msg}"
            record.job_tag = self.tag
        return True


def tag_job(num: int | str) -> None:
    """Tag every line the root logger's handlers write from now on with ``[job num]``."""
    tag = JobTag(f"[job {num}]")
    for handler in logging.getLogger().handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, JobTag)]
        handler.addFilter(tag)
