"""``hydra/launcher=lockstep``: a sweep's jobs run back to back in long-lived worker processes, one per core.

What it saves against ``hydra/launcher=joblib`` (which runs the same jobs the same way, one loky
task each): every worker imports maml-sweep once and receives the sweep's context (Hydra's config
loader, the master config, the task function) once, when it starts, not with every job; and a job's
config is composed by Hydra once per *group* (jobs whose overrides differ only in plain values,
e.g. ``seed=0,1,2`` or ``optimizer.lr=0.01,0.1``) and per process: the other jobs of the group get
a copy of it with their values set (:class:`GroupComposer`, which the sweeper's own check of every
job's config uses too). Each job then goes through Hydra's ``run_job`` as under joblib: its own
run directory, log file, callbacks (``sweep_summary.csv``), status, lock, checkpoint and resume.

Runs are trained one after another in a worker, not stacked: the numbers are the very ones of a
run launched alone (same code path, same process-level settings).

Stopping: as for joblib (:mod:`maml_sweep.stopping`): the sweep's process writes the stop file, each
worker's watch passes the signal to its running job, a job that starts after the stop returns at
once. A signal that reaches an idle worker only stops it from starting more jobs.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


class GroupComposer:
    """Hydra's config loader, composing once per group of jobs (see the module docstring).

    ``load_sweep_config(master, overrides)`` composes with Hydra the first job of a group (its
    *template*); a later job whose overrides are the template's keys, in the same order, changed
    only in plain values (no config group, no ``+``/``~``, no ``hydra.*`` key, no mapping value)
    gets a copy of the template's config with those values set as Hydra sets them
    (``OmegaConf.update(merge=True)``) and its own ``hydra.overrides.task`` and
    ``hydra.job.override_dirname``. Anything else, or a value the copy refuses, is composed by
    Hydra (which gives its own error). Every other attribute is the wrapped loader's."""

    def __init__(self, inner):
        self.inner = inner
        self.templates: dict = {}  # group key -> (overrides as parsed, composed config)
        self.composed = 0  # configs composed by Hydra (the rest were copies)

    def __getattr__(self, name):
        if name in ("inner", "templates", "composed"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getstate__(self) -> dict:
        return {"inner": self.inner}  # templates are per process

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["inner"])

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = _parse(sweep_overrides)
        key = None if parsed is None else group_key(parsed, self._is_group)
        if key is not None and key in self.templates:
            derived = _derived(self.templates[key], parsed, master_config)
            if derived is not None:
                return derived
        config = self.inner.load_sweep_config(master_config, list(sweep_overrides))
        self.composed += 1
        if key is not None and key not in self.templates:  # a pristine copy: the job's own is made read-only
            self.templates[key] = (parsed, copy.deepcopy(config))
        return config

    def _is_group(self, key: str) -> bool:
        try:
            return bool(self.inner.repository.group_exists(key))
        except AttributeError:  # a loader without a repository: treat every key as a group (compose)
            return True


def _parse(overrides: Sequence[str]) -> list[Override] | None:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:  # Hydra composes it and says what is wrong
        return None


def group_key(parsed: list[Override], is_group) -> tuple | None:
    """What jobs of one group share: each override's text, except a plain value's (its key only);
    None when the overrides name a key twice (Hydra applies them in order; composed each time)."""
    keys = [o.key_or_group for o in parsed]
    if len(set(keys)) != len(keys):
        return None
    return tuple(("value", o.key_or_group) if _plain(o, is_group) else ("text", o.input_line) for o in parsed)


def _plain(o: Override, is_group) -> bool:
    """True for ``key=value`` that sets one value of the config (no group, package, add or delete)."""
    return (o.type == OverrideType.CHANGE and o.package is None and o.value_type == ValueType.ELEMENT
            and not o.is_hydra_override() and not isinstance(o.value(), dict) and not is_group(o.key_or_group))


def _derived(template, parsed: list[Override], master_config: DictConfig) -> DictConfig | None:
    """The template's config with ``parsed``'s values set; None when a value does not fit."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    base_parsed, base_config = template
    config = copy.deepcopy(base_config)
    try:
        for new, old in zip(parsed, base_parsed):
            if new.input_line != old.input_line:
                OmegaConf.update(config, new.key_or_group, new.value(), merge=True)
    except (OmegaConfBaseException, HydraException, ValueError, TypeError, KeyError):
        # Hydra composes it, with its error
        return None
    dirname = config.hydra.job.config.override_dirname
    with open_dict(config.hydra):
        config.hydra.overrides.task = [o.input_line for o in parsed]
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=parsed, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
    OmegaConf.copy_cache(from_config=master_config, to_config=config)
    return config


def cores(n_jobs: int) -> int:
    """Worker processes for ``hydra.launcher.n_jobs`` (-1: every core)."""
    return (os.cpu_count() or 1) if n_jobs == -1 else n_jobs


def check_n_jobs(n_jobs) -> str | None:
    """Why ``hydra.launcher.n_jobs`` is not usable, or None."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not (n_jobs >= 1 or n_jobs == -1):
        return f"hydra.launcher.n_jobs={n_jobs}: a whole number >= 1, or -1 for every core"
    return None


class LockstepLauncher(Launcher):
    """Hydra's launcher for ``hydra/launcher=lockstep`` (conf/hydra/launcher/lockstep.yaml)."""

    def __init__(self, n_jobs: int = -1) -> None:
        problem = check_n_jobs(n_jobs)
        if problem:
            import sys

            print(f"maml-sweep: error: {problem}", file=sys.stderr)
            sys.exit(2)
        self.n_jobs = n_jobs
        self.config = self.hydra_context = self.task_function = None
        self.pool: ProcessPoolExecutor | None = None  # the workers, for every launch of this sweep
        self.workers = 0
        self._lock = threading.Lock()

    def setup(self, *, hydra_context, task_function, config) -> None:
        if not isinstance(hydra_context.config_loader, GroupComposer):  # the sweeper's check composes through it too
            hydra_context.config_loader = GroupComposer(hydra_context.config_loader)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs on the sweep's worker processes, in order; one JobReturn per job. A search
        launches again and again (from several threads): the workers stay for the whole sweep."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        if not job_overrides:
            return []
        pool = self._pool(len(job_overrides))
        log.info("lockstep: %d jobs on %d worker processes", len(job_overrides), self.workers)
        futures = [pool.submit(_run_job, initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        return [f.result() for f in futures]

    def _pool(self, jobs: int) -> ProcessPoolExecutor:
        """The worker processes (started at the first launch: min(cores, its jobs), at least 2 for a
        search, which launches one trial at a time); they end when the sweep's process does."""
        import cloudpickle  # functions by value where they must be (Hydra's task function)

        with self._lock:
            if self.pool is None:
                self.workers = max(1, min(cores(self.n_jobs), max(jobs, 2)))
                payload = cloudpickle.dumps((self.hydra_context, self.config, self.task_function,
                                             Singleton.get_state()))
                self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                                initializer=_start_worker, initargs=(payload,))
            return self.pool


# In a worker process: the sweep's context, set once by _start_worker.
_WORKER: dict = {"signal": None, "in_job": False}


def _start_worker(payload: bytes) -> None:
    """A worker's start: the sweep's context (imports maml-sweep once), signals noted while idle."""
    import pickle

    hydra_context, config, task_function, singleton_state = pickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    _WORKER.update(hydra_context=hydra_context, config=config, task_function=task_function)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _note_signal)


def _note_signal(signum, frame) -> None:
    """A stop signal outside a run's own handling: no further job starts in this worker; one that
    arrives in a job before or after its run stops that job (a run forwards its own with frame None)."""
    first = _WORKER["signal"] is None
    _WORKER["signal"] = _WORKER["signal"] or signum
    if frame is not None and first and _WORKER["in_job"]:
        raise KeyboardInterrupt(signal.Signals(signum).name)


def _not_started(overrides: list[str]) -> JobReturn:
    ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
    ret.return_value = math.inf
    return ret


def _portable(ret: JobReturn) -> JobReturn:
    """``ret`` as it can travel back to the sweep's process: the configs' structured-config types do
    not pickle, so the job's config is left out and its Hydra config is cut to the job's directory."""
    output_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg is not None else None
    ret.cfg, ret.hydra_cfg = None, OmegaConf.create({"hydra": {"runtime": {"output_dir": output_dir}}})
    if ret.status == JobStatus.FAILED:  # the exception as text: its own type may not pickle either
        ret.return_value = RuntimeError(f"{type(ret._return_value).__name__}: {ret._return_value}")
    return ret


def _run_job(idx: int, overrides: list[str]) -> JobReturn:
    """Job ``idx`` as Hydra's joblib launcher runs it (its config composed through the group's)."""
    if _WORKER["signal"] is not None:
        return _not_started(overrides)
    hydra_context, master = _WORKER["hydra_context"], _WORKER["config"]
    _WORKER["in_job"] = True
    config = None
    try:
        config = hydra_context.config_loader.load_sweep_config(master, overrides)
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
            config.hydra.job.num = idx
        # run_job sets HydraConfig itself (each set copies the hydra node: not once more here)
        ret = run_job(hydra_context=hydra_context, config=config, task_function=_WORKER["task_function"],
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        return _portable(ret)
    except KeyboardInterrupt:  # a signal before or after the run: its directory says what it left
        if config is not None:  # stopped before the run wrote anything: no empty job directory is left
            try:
                os.rmdir(Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir))
            except (OSError, OmegaConfBaseException):
                pass  # not empty (the run's own files), or never made
        return _not_started(overrides)
    except (HydraException, OmegaConfBaseException) as exc:  # composing failed: the sweep's process gets it as text
        return JobReturn(overrides=overrides, status=JobStatus.FAILED,
                         _return_value=RuntimeError(f"{type(exc).__name__}: {exc}"))
    finally:
        _WORKER["in_job"] = False
