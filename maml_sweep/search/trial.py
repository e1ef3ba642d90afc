"""The job's side of a search: report ``val_mse`` to the job's trial at each evaluation and say when
the pruner stops it (the ``on_eval`` seam of :func:`maml_sweep.train.run`).

The job finds its trial from its own Hydra config: the sweeper's settings (storage, study name,
``seeds``) and the job number (trial ``job // seeds``, seed index ``job % seeds``). With several
seeds, the first seed's run reports its curve and every seed's run stops once the trial is pruned.
"""
from __future__ import annotations

import json
import logging
import math

log = logging.getLogger(__name__)
SWEEPER_TARGET = "hydra_plugins.maml_sweep_search.search_sweeper.SearchSweeper"
TRIAL = "trial.json"  # in the run's .hydra/: study, trial number, seed index (see :func:`trial_record`)


def job_trial(hc) -> tuple[int, int] | None:
    """(trial number, seed index) of this job when it runs in a search, else None."""
    sweeper = hc.sweeper
    if str(sweeper.get("_target_", "")) != SWEEPER_TARGET:
        return None
    seeds = int(sweeper.get("seeds", 1))
    return divmod(int(hc.job.num), seeds)


def trial_record(hc) -> dict | None:
    """What the run directory keeps of its trial (``.hydra/trial.json``), or None outside a search."""
    found = job_trial(hc)
    if found is None:
        return None
    return {"study_name": str(hc.sweeper.study_name), "trial": found[0], "seed_index": found[1]}


def study_errors() -> tuple:
    """What reaching a study can raise: a missing trial or study (KeyError), a storage error
    (Optuna's, the database driver's through SQLAlchemy), a file or network error."""
    from optuna.exceptions import OptunaError
    from sqlalchemy.exc import SQLAlchemyError

    return (OptunaError, SQLAlchemyError, KeyError, ValueError, RuntimeError, OSError)


class Reporter:
    """``reporter(step, vals) -> True`` when the run should stop as pruned."""

    def __init__(self, trial, study, seed_index: int):
        self.trial, self.study, self.seed_index = trial, study, seed_index
        self.reported = set(study._storage.get_trial(trial._trial_id).intermediate_values)
        self.broken = False

    def __call__(self, step: int, vals: dict) -> bool:
        if self.broken:
            return False
        try:
            if self.seed_index > 0:  # the first seed's run reports; this one reads the trial as it is now
                now = self.study._storage.get_trial(self.trial._trial_id)
                return bool(self.study.pruner.prune(self.study, now))
            value = vals["val_mse"]
            if step not in self.reported and math.isfinite(value):
                self.trial.report(value, step)
                self.reported.add(step)
            return bool(self.trial.should_prune())
        except study_errors() as exc:  # the study is out of reach: train on, unpruned
            self.broken = True
            log.warning("search: cannot report to trial %d (%s: %s); the run goes on without pruning",
                        self.trial.number, type(exc).__name__, exc)
            return False


def reporter(hc) -> Reporter | None:
    """The job's reporter, or None outside a search (or when its trial cannot be found: one warning)."""
    found = job_trial(hc)
    if found is None:
        return None
    from optuna.trial import Trial

    from . import study as studies

    number, seed_index = found
    try:
        url = studies.storage_url(hc.sweeper.storage, hc.sweep.dir)
        storage = studies.open_storage(url)
        study = studies.open_study(url, str(hc.sweeper.study_name), str(hc.sweeper.pruner), storage=storage)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        return Reporter(Trial(study, trial_id), study, seed_index)
    except study_errors() as exc:
        log.warning("search: trial %d not found in the study (%s: %s); the run goes on without pruning",
                    number, type(exc).__name__, exc)
        return None


def record_text(hc) -> dict[str, str]:
    """``{"trial.json": text}`` for :func:`rundir.save_hydra_record`, or {} outside a search."""
    record = trial_record(hc)
    return {TRIAL: json.dumps(record, sort_keys=True) + "\n"} if record else {}


