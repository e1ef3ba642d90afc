"""The ``maml-sweep`` command: Hydra composes the config, ``train.run`` does the work.

What the user sees when a run does not complete is one line on stderr, never a traceback: a refused
directory or a bad value (exit 2), a failed run (exit 1; ``HYDRA_FULL_ERROR=1`` re-raises), an
interrupt with the exact command that resumes it (exit 130 for SIGINT, 143 for SIGTERM). In a multirun a refused or
failed job prints its line and the sweep goes on; the sweep then exits 1.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.maml_sweep_lockstep.lockstep_launcher import LockstepLauncher
from hydra_plugins.maml_sweep_search.search_sweeper import SearchSweeper

from . import console, logs, resume, rundir, rundir_read, stopping, sweep
from .config import ConfigError, register_configs
from .search import trial as search_trial
from .train import StopSignals, run

register_configs()
# Hydra scans hydra_plugins/ for plugins, but cannot list it in an editable install (pip install -e):
# register the search sweeper (importing it does not import Optuna) and the lockstep launcher explicitly.
Plugins.instance().register(SearchSweeper)
Plugins.instance().register(LockstepLauncher)
# What is imported so far lives as long as the process: keep it out of the collector's full passes
# (a joblib worker without psutil runs gc.collect() after every job: ~15 ms over these objects).
gc.freeze()
log = logging.getLogger(__name__)
_RESUME: list = []  # [makes the resume command of the run in progress], for an interrupt that escapes it
_SAID: list[str] = []  # the interrupt line, once printed


def main() -> None:
    """Entry point: Hydra's main, with a stray Ctrl-C (before a run starts or after it ended)
    turned into one line."""
    logging.raiseExceptions = False  # a log line that cannot be written (full disk) is not the run's failure
    for s in (signal.SIGINT, signal.SIGTERM):  # a run's StopSignals puts these back when it ends
        signal.signal(s, _after_a_stop)
    sys.argv[1:], resuming = resume.fill_in(logs.take_verbose_flag(sys.argv[1:]))
    if resuming:
        print(resuming, flush=True)
    try:
        _hydra_main()
    except KeyboardInterrupt:
        if not _SAID and not sweep.open_sweeps():  # an open sweep says how to finish it at exit
            where = f"; resume with: {_RESUME[-1]()}" if _RESUME else ""
            print(f"maml-sweep: interrupted{where}", file=sys.stderr)
        _leaving()
        sys.exit(130)


def _after_a_stop(signum, frame) -> None:
    """The CLI's SIGINT/SIGTERM handler outside a run: once the run took a stop, a later signal is
    only noted while the CLI says goodbye; before that, Python's default (SIGINT: KeyboardInterrupt,
    one line below; SIGTERM ends the process)."""
    if StopSignals.taken:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _leaving() -> None:
    """The process has said why it stops: further Ctrl-Cs are ignored at the C level (Python's own
    shutdown resets handlers to the default, so one landing then would kill it by SIGINT, exit -2)."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


@hydra.main(config_path="pkg://maml_sweep.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg) -> float:
    """Train one run; return its final shared-validation MSE ``val_mse`` (inf unless completed) for sweepers."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    out_dir = Path(hc.runtime.output_dir)
    if multirun and not stopping.job_may_start(Path(hc.sweep.dir), out_dir):
        return math.inf  # the sweep was stopped (Ctrl-C, SIGTERM): no new job starts
    if multirun and not _in_process_launcher(hc):
        stopping.watch_worker(Path(hc.sweep.dir))  # stops its job with the sweep, or when orphaned
        logs.tag_job(hc.job.num)  # parallel jobs' lines interleave: each says which job it is
    if multirun and cfg.train.figures is None:
        cfg.train.figures = False  # a sweep's jobs skip the per-run figure; the report draws the best fits
    _RESUME[:] = [lambda: resume_command(hc)]  # made only when needed: it reads the sweep's record

    accepted = []

    def record() -> None:  # the directory is accepted: ours for this run
        accepted.append(True)
        log.info("run directory: %s", out_dir)  # not before: a refused directory gets no log file
        rundir.save_hydra_record(out_dir, {
            "config.yaml": OmegaConf.to_yaml(cfg, resolve=True),  # self-contained: readers need no resolver
            "hydra.yaml": OmegaConf.to_yaml({"hydra": hc}),
            "overrides.yaml": OmegaConf.to_yaml(list(hc.overrides.task)),
            **search_trial.record_text(hc),  # a search's trial number (.hydra/trial.json)
        })

    job = f"job {hc.job.num} ({' '.join(hc.overrides.task)}): " if multirun else ""
    try:
        summary = run(cfg, out_dir, on_accept=record, on_eval=search_trial.reporter(hc) if multirun else None)
    except (ConfigError, rundir.RunDirError) as exc:
        if not multirun:  # a ConfigError lists one bad value per "; "-separated part
            _fail(str(exc).split("; ") if isinstance(exc, ConfigError)
                  else [str(exc) + _other_run(out_dir, cfg, hc)], 2)
        if not accepted:  # refused: nothing was written in the run directory, so the sweep records it
            sweep.record_refusal(Path(hc.sweep.dir), hc.job.num, str(exc))
        _print_error(job + str(exc))
        return math.inf
    except Exception as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        recorded = out_dir / rundir.SUMMARY  # named only where it exists (a full disk may have stopped it)
        where = f" (recorded in {recorded})" if accepted and recorded.is_file() else ""
        message = f"{job}run failed: {type(exc).__name__}: {exc}{where}"
        if not multirun:
            _fail([message], 1)
        _print_error(message)
        return math.inf
    if summary["status"] == rundir.INTERRUPTED and (not multirun or _in_process_launcher(hc)):
        if multirun:
            sweep.write_sweep_summary(Path(hc.sweep.dir))  # Hydra's on_job_end will not run
            sweep.close(Path(hc.sweep.dir))  # this line is the sweep's last word
        _SAID.append(f"maml-sweep: {job}{summary['error'] or rundir.INTERRUPTED} at step {summary['steps']}"
                     f"/{summary.get('outer_steps', '?')}, checkpoint kept; resume with: {resume_command(hc)}")
        print(_SAID[-1], file=sys.stderr)
        _leaving()
        by = [s for s in StopSignals.SIGNALS if s.name in str(summary.get("error"))] or [signal.SIGINT]
        sys.exit(128 + by[0])  # 130 SIGINT, 143 SIGTERM; with the basic launcher this also stops the rest of the sweep
    if not multirun:
        for line in console.run_end_lines(out_dir, summary):
            log.info(line, extra={"console": True})
    value = summary.get("val_mse") if summary["status"] == rundir.COMPLETED else None
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf  # never a NaN to a sweeper


def resume_command(hc) -> str:
    """The shell command that resumes this run, or this job's whole sweep, in its own directory."""
    if hc.mode != RunMode.MULTIRUN:
        return sweep.rerun_command(list(hc.overrides.task), list(hc.overrides.hydra), "hydra.run.dir",
                                   Path(hc.runtime.output_dir))
    task, hydra_args = list(hc.overrides.task), list(hc.overrides.hydra)
    record = Path(hc.sweep.dir) / sweep.RECORD
    if record.exists():  # the sweep's own command line, not this job's expansion of it
        recorded = OmegaConf.load(record).hydra.overrides
        task, hydra_args = list(recorded.task), list(recorded.hydra)
    return sweep.rerun_command(task, hydra_args, "hydra.sweep.dir", Path(hc.sweep.dir))


def _other_run(out_dir: Path, cfg, hc) -> str:
    """``; it differs in KEY (...); resume that run with: ...`` when ``out_dir`` holds another config's run."""
    found = rundir_read.read_state(out_dir).summary.get("config_hash")
    if not found or found in rundir.accepted_hashes(cfg):
        return ""
    why = resume.run_refusal(out_dir, list(hc.overrides.task))
    return f"; {why}" if why else ""


def _print_error(message: str) -> None:
    print(f"maml-sweep: error: {message}", file=sys.stderr)


def _fail(lines: list[str], code: int) -> None:
    for line in lines:
        _print_error(line)
    sys.exit(code)


def _in_process_launcher(hc) -> bool:
    """True when the jobs of this multirun run one after another in this very process."""
    return str(hc.launcher.get("_target_", "")).endswith("BasicLauncher")


if __name__ == "__main__":
    main()
