"""Log lines that say where they come from: in a multirun every line names its job.

Hydra configures logging for each job (console and ``maml_sweep.log``); under a parallel launcher
(joblib, submitit, SLURM) the jobs' lines interleave on one terminal, so :func:`tag_job` prefixes
every line of a job with ``[job N]`` (Hydra's ``hydra.job.num``).
"""
from __future__ import annotations

import logging


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
