"""The study: where it is stored, how it samples and prunes, and a quiet Optuna.

One source for the names the settings take (:data:`SAMPLERS`, :data:`PRUNERS`) and for the default
storage (:data:`DEFAULT_DB` in the sweep directory). Optuna is imported inside the functions.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import time
import warnings
from datetime import datetime
from pathlib import Path

DEFAULT_DB = "optuna.db"  # sqlite:///<hydra.sweep.dir>/optuna.db unless hydra.sweeper.storage says otherwise
SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("none", "median", "successive_halving", "hyperband", "wilcoxon")
WORKER = "worker"  # a trial's user attribute: host:pid of the sweeper that runs it
SEEDS = "seeds"  # a trial's user attribute: the paired seeds it is evaluated on
SQLITE_WAIT_S = 60  # how long a write waits for SQLite's lock (runs report while the sweeper tells)
UNCLAIMED_S = 60  # a running trial without a worker this old was asked by a command that died at once


def storage_url(storage: str | None, sweep_dir) -> str:
    """The storage the settings name: None -> SQLite in the sweep directory; an URL (``scheme://``)
    as given; anything else is a journal file path (made absolute: jobs may run elsewhere)."""
    if storage is None or str(storage).strip() == "":
        return f"sqlite:///{Path(sweep_dir).absolute() / DEFAULT_DB}"
    storage = str(storage)
    return storage if "://" in storage else str(Path(storage).absolute())


def shown_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://..."


@functools.cache
def open_storage(url: str):
    """An Optuna storage for :func:`storage_url`'s result (a path: ``JournalStorage`` on that file),
    one per process (the basic launcher's runs share the sweeper's: no schema check per run)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    quiet()
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    engine = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": SQLITE_WAIT_S}}
    return _racing(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine))


def _racing(make, tries: int = 3):
    """``make()``, again after a pause when another worker created the same schema or study at the
    same moment (an empty database's first two workers both create its tables)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(tries):
        try:
            return make()
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == tries - 1:
                raise
            time.sleep(0.5 + attempt)


def sampler(name: str, seed: int | None, number: int):
    """The sampler ``name`` seeded for the trial numbered ``number`` of a search seeded ``seed``,
    so that trial draws the same parameters whether the search was interrupted before it or not."""
    import optuna

    trial_seed = None if seed is None else int.from_bytes(
        hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "little")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=trial_seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=trial_seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=trial_seed, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=trial_seed, warn_independent_sampling=False)


def missing_sampler_package(name: str) -> str | None:
    """The package a sampler needs that is not installed (cmaes needs ``cmaes``, gp ``torch``), or None."""
    import importlib.util

    needs = {"cmaes": "cmaes", "gp": "torch"}.get(name)
    return needs if needs and importlib.util.find_spec(needs) is None else None


def pruner(name: str):
    """The pruner ``name`` (:data:`PRUNERS`), with Optuna's defaults."""
    import optuna

    return {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
            "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
            "hyperband": optuna.pruners.HyperbandPruner, "wilcoxon": optuna.pruners.WilcoxonPruner}[name]()


def open_study(url: str, name: str, pruner_name: str, storage=None):
    """The study ``name`` in ``url`` (created when new), minimising, with the pruner ``pruner_name``."""
    import optuna

    storage = storage or open_storage(url)
    return _racing(lambda: optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                               pruner=pruner(pruner_name), load_if_exists=True))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_orphan(trial) -> bool:
    """A running trial whose sweeper is gone (an interrupted command on this host): it may be resumed.
    A trial of a sweeper on another host, or of a live one here, is left to its owner."""
    owner = str(trial.user_attrs.get(WORKER, ""))
    if not owner:  # none recorded: its command died right after asking, or is about to record itself
        started = trial.datetime_start
        return started is not None and (datetime.now() - started).total_seconds() > UNCLAIMED_S
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def quiet() -> None:
    """Optuna's messages through the logging of the process (Hydra's: no colour codes), warnings
    only; no alembic or experimental-feature chatter."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    for name in ("alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
