"""``sweep_summary.csv``: one row per run of a multirun, built from the run directories, and the
sweep's progress (runs finished of planned, rate, ETA).

Written by the :class:`SweepSummary` Hydra callback after every job (inside the worker, so it works
with every launcher) and at the end of the multirun; a lock serialises concurrent writers.

A row's status is what :func:`rundir_read.read_state` reads (``killed`` for a summary saying running while
nobody holds the run's lock), except ``failed`` for a job this sweep refused (its directory holds
another config's run; recorded in ``.sweep_refused.json``) and, once the sweep has ended, for a job
directory left without a summary.

A sweep started into a directory holding another sweep's record (``multirun.yaml`` with other
overrides or sweeper settings) is refused as a whole before anything is written there.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import re
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import logs, resume, rundir, rundir_read, runlock, runs_index, stopping
from .console import SweepConsole, shown_path
from .resume import rerun_command

log = logging.getLogger(__name__)
PLAN = ".sweep_plan.json"
REFUSED = ".sweep_refused.json"  # job number -> why this sweep's job was refused (its dir is untouched)
RECORD = "multirun.yaml"  # Hydra's record of the sweep
SUMMARY_LOCK = ".sweep_summary.lock"  # serialises the writers of sweep_summary.csv
SWEEP_LOCK = ".sweep.lock"  # held by the process that runs the sweep, for the sweep's life
SWEEP_FILES = (PLAN, REFUSED, RECORD, SUMMARY_LOCK, SWEEP_LOCK)  # regular files of a sweep directory

SWEEP_SUMMARY = "sweep_summary.csv"
HEADLINE = ("status", "steps", "outer_steps", "val_mse", "val_meta_objective", "train_meta_objective", "wall_s",
            "ms_per_step", "diverged_step", "error")


def summary_rows(sweep_dir: Path, ended: bool | set[int] = False) -> list[dict]:
    """One dict per job: job number, overrides (joined, and one column per key: a deleted key's
    cell is empty), status (a :mod:`rundir` status word) and headline metrics. A job this sweep
    refused is failed; ``ended``: the sweep is over (True), or these jobs are (a search worker's own,
    while other workers' jobs may still be starting), so such a job left without a summary failed too."""
    refused = _read_json(Path(sweep_dir) / REFUSED) or {}
    rows = []
    for run in rundir_read.sweep_jobs(sweep_dir):
        state = rundir_read.read_state(run)
        try:
            overrides = rundir_read.read_overrides(run)
            row = {"job": int(run.name), "overrides": " ".join(o.text for o in overrides)}
        except rundir.DamagedFile as e:
            overrides, row = [], {"job": int(run.name), "overrides": f"({e})"}
        row.update({o.key: o.value for o in overrides})
        status, summary = state.status, state.summary
        if run.name in refused:
            status, summary = rundir.FAILED, {"error": f"refused: {refused[run.name]}"}
        elif status == rundir.NO_SUMMARY and (ended is True or int(run.name) in (ended or ())) \
                and not runlock.is_live(run):
            status, summary = rundir.FAILED, {"error": "the job ended without writing a summary (see its log)"}
        row.update({k: summary.get(k) for k in HEADLINE}, status=status)
        row.update({k: v for k, v in summary.items() if k.startswith("test_")})
        rows.append(row)
    return rows


def record_refusal(sweep_dir: Path, job: int, message: str) -> None:
    """Note that this sweep refused job ``job`` (its directory is left untouched)."""
    with _locked(Path(sweep_dir) / SUMMARY_LOCK):
        refused = _read_json(Path(sweep_dir) / REFUSED) or {}
        refused[str(job)] = message
        rundir.write_json(Path(sweep_dir) / REFUSED, refused)


def _read_json(path: Path):
    try:
        return json.loads(rundir.read_text(path))
    except (OSError, ValueError, RecursionError):  # DamagedRunFile (a link, FIFO) is a ValueError
        return None


def write_sweep_summary(sweep_dir: Path, ended: bool | set[int] = False) -> list[dict]:
    """(Re)write ``sweep_summary.csv`` in ``sweep_dir`` atomically; returns its rows."""
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir / SUMMARY_LOCK):
        rows = summary_rows(sweep_dir, ended)
        path = sweep_dir / SWEEP_SUMMARY
        from .safe_text import csv_frame  # pandas: imported only where a table is written

        with rundir.atomic_path(path) as tmp:
            csv_frame(summary_frame(rows)).to_csv(tmp, index=False, lineterminator="\n")
    return rows


def summary_frame(rows: list[dict]):
    """sweep_summary.csv's table: job, overrides, one column per override key whose value differs
    between jobs (a key every job sets alike is in ``overrides`` only), headline metrics, then the
    test statistics (``test_mse_k<k>``, median, trimmed mean, blow-up fraction per report step)."""
    keys, tests = [], []
    for row in rows:
        keys += [k for k in row if k not in keys and k not in ("job", "overrides", *HEADLINE)
                 and not k.startswith("test_")]
        tests += [k for k in row if k.startswith("test_") and k not in tests]
    varying = [k for k in keys if len({str(r.get(k)) for r in rows}) > 1]
    tests.sort(key=runs_index.test_order)
    import pandas as pd

    return pd.DataFrame(rows, columns=["job", "overrides", *varying, *HEADLINE, *tests])


def sweep_problems(config) -> list[str]:
    """Why the sweep cannot run, one line each naming the override or setting (empty: it can): what
    the basic sweeper cannot expand, or a search's bad settings and space (:mod:`.search.settings`)."""
    target = str(config.hydra.sweeper.get("_target_", ""))
    if "maml_sweep_search" in target:
        from .search.settings import problems

        return problems(config)
    problem = _basic_sweep_problem(config) if target.endswith("BasicSweeper") else None
    return [problem] if problem else []


def _basic_sweep_problem(config) -> str | None:
    """One line on an override the basic sweeper cannot expand (``range(0,3,0)``, ``interval(0,3)``),
    naming it and what is allowed; None when every override expands."""
    parser = OverridesParser.create()
    for arg in _sweep_arguments(config):
        try:
            override = parser.parse_override(arg)
            if override.is_interval_sweep():
                return (f"{arg} is not allowed: the basic sweeper expands lists (a,b), range(start,stop[,step]), "
                        "choice(...) and glob(...); interval(...) is for a search (sweep=optuna, docs/sweeps.md)")
            if override.is_sweep_override():
                list(override.sweep_string_iterator())
        except (HydraException, ValueError, TypeError) as exc:
            return f"{arg} is not allowed: {exc}"
    return None


def _sweep_arguments(config) -> list[str]:
    """The basic sweeper's input: ``hydra.sweeper.params`` then the command line's overrides."""
    return ([f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
            + list(config.hydra.overrides.task))


def planned_jobs(config) -> int | None:
    """Jobs this multirun launches: Optuna's ``n_trials``, or the basic sweeper's grid size
    (its own expansion of ``hydra.sweeper.params`` and the command line); None if unknown."""
    sweeper = config.hydra.sweeper
    if "n_trials" in sweeper:
        return int(sweeper.n_trials) * int(sweeper.get("seeds", 1))
    try:
        overrides = OverridesParser.create().parse_overrides(_sweep_arguments(config))
        return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))
    except (HydraException, ValueError):
        return None


@contextmanager
def _locked(lock_path: Path):
    fd = rundir.open_fd(lock_path, os.O_RDWR | os.O_CREAT)  # never through a link
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def unsafe_sweep_entry(sweep_dir: Path) -> str | None:
    """Why a sweep may not use ``sweep_dir``: a sweep file that is a link or no regular file, a job
    directory that is a link or no folder, or a job directory a run would refuse
    (:func:`rundir.unsafe_entry`); None when all are sound. Read-only."""
    try:
        names = os.listdir(sweep_dir)
    except OSError:
        return None
    for name in sorted(names, key=rundir_read.natural_key):
        path = Path(sweep_dir) / name
        mode = os.lstat(path).st_mode
        if name in SWEEP_FILES + (SWEEP_SUMMARY,) and rundir.file_kind(mode) is not None:
            return (f"{path} is {rundir.file_kind(mode)}, not a regular file; move it away or choose a new "
                    "hydra.sweep.dir")
        if name.isdigit():
            if not stat.S_ISDIR(mode):
                return f"{path} is {rundir.file_kind(mode) or 'a file'}, not a job folder; move it away or " \
                       "choose a new hydra.sweep.dir"
            unsafe = rundir.unsafe_entry(path)
            if unsafe is not None:
                return str(unsafe)
    return None


def sweep_identity(config) -> dict:
    """What makes two multiruns the same sweep: the command line's task overrides and the sweeper's
    settings (its parameter grid, seed), except a search's ``n_trials`` (a larger one continues it)."""
    hydra_cfg = config.hydra
    sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=False)
    sweeper.pop("n_trials", None)
    return {"task": list(hydra_cfg.overrides.task), "sweeper": sweeper}


def check_sweep_dir(config) -> str | None:
    """Why this multirun may not use its sweep directory (another sweep's record is there), or None."""
    record = Path(config.hydra.sweep.dir) / RECORD
    if not record.exists():
        return None
    try:  # read as a run's records are: a regular file, bounded, aliases capped
        before = sweep_identity(OmegaConf.create(rundir_read.read_yaml_text(rundir.read_text(record))))
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException, AttributeError, KeyError, TypeError) as exc:
        return f"{record} is unreadable ({type(exc).__name__}); choose a new hydra.sweep.dir"
    now = sweep_identity(config)
    if before == now:
        return None
    what = "overrides " + " ".join(before["task"]) if before["task"] != now["task"] else "sweeper settings"
    recorded = rundir_read.read_sweep_overrides(Path(config.hydra.sweep.dir)) or (before["task"], [])
    why = resume.sweep_refusal(Path(config.hydra.sweep.dir), before["task"], recorded[1], now["task"])
    return (f"{config.hydra.sweep.dir} holds another sweep ({what}); nothing was written there; {why} "
            "(or choose a new hydra.sweep.dir)")


_OPEN: list = []  # sweep dirs of multiruns started in this process and not yet ended
_CONSOLES: dict = {}  # sweep dir -> its SweepConsole (in the launching process)
_LAUNCHED: dict[Path, set[int]] = {}  # a search's sweep dir -> the job numbers this worker launched


def _stop_console(sweep_dir: Path) -> SweepConsole | None:
    """Stop the sweep's console (its last job lines are printed) and quiet mode; returns it."""
    console = _CONSOLES.pop(Path(sweep_dir), None)
    if console is not None:
        console.stop()
    if not _CONSOLES:
        os.environ.pop(logs.QUIET_ENV, None)
    return console


def swept_keys(config) -> list[str]:
    """The override keys this multirun varies: the sweeper's parameters and the command line's
    sweep overrides (``a=1,2``, ``range(...)``, ``choice(...)``, ...), in that order."""
    params = config.hydra.sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException:
        return []
    return list(dict.fromkeys(o.key_or_group for o in overrides if o.is_sweep_override()))


_SWEEP_LOCKS: list = []  # the sweep directory locks this process holds (released when it exits)


def _stopped_early() -> None:
    """At exit of a multirun that never reached its end (e.g. a joblib worker died): bring
    sweep_summary.csv up to date (dead runs show killed) and say how to finish the sweep."""
    for sweep_dir, command in _OPEN:
        _stop_console(sweep_dir)
        rows = write_sweep_summary(sweep_dir, ended=True)
        done = sum(r["status"] in rundir.FINISHED for r in rows)
        print(f"maml-sweep: the sweep stopped early ({done} runs finished and kept, the others' state in "
              f"{sweep_dir / SWEEP_SUMMARY}); resume the sweep with: {command}", file=sys.stderr)
    _OPEN.clear()


def open_sweeps() -> list[Path]:
    """Sweep directories of multiruns this process started and has not ended."""
    return [d for d, _ in _OPEN]


def close(sweep_dir: Path) -> None:
    """This process ends the sweep in ``sweep_dir`` itself (e.g. on an interrupt, with its own message)."""
    _OPEN[:] = [(d, c) for d, c in _OPEN if d != Path(sweep_dir)]
    _stop_console(sweep_dir)


def release(sweep_dir: Path) -> None:
    """Let go of ``sweep_dir``'s sweep lock (the sweep has ended)."""
    for lock in [lock for lock in _SWEEP_LOCKS if lock.path.parent == Path(sweep_dir)]:
        lock.release()
        _SWEEP_LOCKS.remove(lock)


class WorkerDied(CompactHydraException):
    """A joblib worker process died (killed, out of memory): Hydra prints this one line, not a traceback."""


def _worker_deaths_in_one_line() -> None:
    """Hydra's joblib launcher lets loky's ``TerminatedWorkerError`` escape, which Hydra prints as a
    30-line traceback: raise :class:`WorkerDied` (one line with the workers' exit codes) instead."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    launch = JoblibLauncher.launch
    if getattr(launch, "one_line_deaths", False):
        return

    def launch_one_line(self, *args, **kwargs):
        try:
            return launch(self, *args, **kwargs)
        except TerminatedWorkerError as exc:
            codes = re.search(r"exit codes of the workers are (\{[^}]*\})", str(exc))
            raise WorkerDied(f"maml-sweep: error: a joblib worker process died (exit codes "
                             f"{codes.group(1) if codes else 'unknown'}: killed, or out of memory); the sweep "
                             "stopped with it") from None

    launch_one_line.one_line_deaths = True
    JoblibLauncher.launch = launch_one_line


def _refuse(refusal: str | None) -> None:
    """Stop this command with one line and exit 2 when there is a ``refusal``."""
    if refusal is not None:
        print(f"maml-sweep: error: {refusal}", file=sys.stderr)
        sys.exit(2)


class SweepSummary(Callback):
    """Keeps ``sweep_summary.csv`` current in a multirun's sweep directory and shows the sweep on
    the console (:class:`maml_sweep.console.SweepConsole`). Refuses a sweep into another sweep's
    directory."""

    def on_run_start(self, config, **kwargs) -> None:
        """A single run: refuse a run directory that cannot be one, before Hydra creates it."""
        run_dir = str(config.hydra.run.dir).strip()
        if not run_dir:
            _refuse("hydra.run.dir is empty (that would write the run into the current directory); "
                    "give the run a directory of its own")
        from .train import check_before_start, finished_here  # here: the trainer's imports are not the callback's

        unusable = rundir.unusable_dir(Path(run_dir), "hydra.run.dir")
        if unusable and not (Path(run_dir).is_dir() and finished_here(config)):  # a finished run: skipped, read-only ok
            _refuse(unusable)

        problems = check_before_start(config)
        if problems and "holds a run of another config" in problems[-1]:  # say what differs and how to resume it
            why = resume.run_refusal(Path(run_dir), list(config.hydra.overrides.task))
            problems[-1] += f"; {why}" if why else ""
        if problems:  # each on its own line, as the run itself would print them
            for line in problems[:-1]:
                print(f"maml-sweep: error: {line}", file=sys.stderr)
            _refuse(problems[-1])

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        problems = sweep_problems(config)  # before anything is written (the sweeper would raise a traceback)
        for line in problems[:-1]:
            print(f"maml-sweep: error: {line}", file=sys.stderr)
        _refuse(problems[-1] if problems else None)
        _refuse(rundir.unusable_dir(sweep_dir, "hydra.sweep.dir"))
        if config.hydra.get("output_subdir") is not None:
            _refuse(f"hydra.output_subdir={config.hydra.output_subdir} is not allowed: maml-sweep writes each run's "
                    ".hydra/ record itself once its directory is accepted; leave hydra.output_subdir unset (null)")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        _refuse(unsafe_sweep_entry(sweep_dir))
        try:  # one sweep at a time in a directory: held until this process exits. A search's workers share
            if not _shared(config):  # theirs: the study hands each trial (its own run directory) to one worker
                _SWEEP_LOCKS.append(runlock.RunLock(sweep_dir, SWEEP_LOCK).acquire())
        except rundir.RunDirError as exc:
            _refuse(f"another sweep is running in {sweep_dir}: {exc}")
        _refuse(check_sweep_dir(config))
        stopping.install(sweep_dir)  # Ctrl-C/SIGTERM from here on: stop every job, start none
        if str(config.hydra.launcher.get("_target_", "")).endswith("JoblibLauncher"):
            _worker_deaths_in_one_line()
        rundir.write_json(sweep_dir / PLAN, {"planned": planned_jobs(config), "started": time.time()})
        (sweep_dir / REFUSED).unlink(missing_ok=True)  # refusals are per invocation
        import pandas  # noqa: F401 - write_sweep_summary needs it, also at exit, when no import may register atexit

        if not _OPEN:
            atexit.register(_stopped_early)
        _OPEN.append((sweep_dir, _sweep_command(config)))
        verbose = logs.verbose() or bool(config.hydra.verbose)
        if not verbose:  # the jobs' step lines go to their log files only (inherited by worker processes)
            os.environ[logs.QUIET_ENV] = "1"
        planned = planned_jobs(config)
        print(f"sweep: {planned or '?'} runs into {shown_path(sweep_dir)}; each run logs into its own directory"
              + ("" if verbose else " (-v also prints those lines here)"), flush=True)
        _CONSOLES[sweep_dir] = SweepConsole(sweep_dir, planned, swept_keys(config),
                                            lambda: _read_json(sweep_dir / REFUSED)).start()

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        write_sweep_summary(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config, **kwargs) -> None:
        """Last word of a sweep that did not complete cleanly: one line, exit 130 when runs were
        interrupted (with the command that resumes the sweep), else exit 1 when runs failed."""
        sweep_dir = Path(config.hydra.sweep.dir)
        console = _stop_console(sweep_dir)
        close(sweep_dir)
        rows = write_sweep_summary(sweep_dir, ended=_LAUNCHED.get(sweep_dir, set()) if _shared(config) else True)
        if console is not None:
            print("\n".join(console.final_lines(rows, sweep_dir / SWEEP_SUMMARY)), flush=True)
        release(sweep_dir)
        bad = [r for r in rows if r["status"] in (rundir.FAILED, rundir.KILLED)]
        stopped = [r for r in rows if r["status"] == rundir.INTERRUPTED]
        failed = f"{len(bad)} of {len(rows)} runs failed (jobs {', '.join(str(r['job']) for r in bad)}; " \
                 f"see {sweep_dir / SWEEP_SUMMARY})" if bad else ""
        signum = stopping.received()
        if stopped or signum:
            also = f"; {failed}" if failed else ""
            print(f"maml-sweep: {len(stopped)} of {len(rows)} runs interrupted, checkpoints kept{also}; "
                  f"resume the sweep with: {_sweep_command(config)}", file=sys.stderr)
            sys.exit(128 + (signum or 2))  # 130 for SIGINT, 143 for SIGTERM
        if bad:
            print(f"maml-sweep: {failed}", file=sys.stderr)
            sys.exit(1)


def _shared(config) -> bool:
    """A search: its workers share the sweep directory (the study hands each trial to one of them)."""
    return "maml_sweep_search" in str(config.hydra.sweeper.get("_target_", ""))


def launched(sweep_dir: Path, jobs) -> None:
    """A search worker notes the job numbers it launched: at its end only those count as ended."""
    _LAUNCHED.setdefault(Path(sweep_dir), set()).update(jobs)


def _sweep_command(config) -> str:
    return rerun_command(list(config.hydra.overrides.task), list(config.hydra.overrides.hydra),
                         "hydra.sweep.dir", Path(config.hydra.sweep.dir))
