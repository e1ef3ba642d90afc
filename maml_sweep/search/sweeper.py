"""The Hydra sweeper behind ``-m sweep=optuna``: ask a trial, launch its runs through the configured
launcher, tell the result; persistent and resumable.

Trial ``n`` with ``seeds: S`` is the jobs ``n*S .. n*S+S-1`` (run directories ``<sweep dir>/<job>``),
on the paired seeds ``seed, seed+1, ..., seed+S-1`` (``seed`` untouched when S is 1); its value is
their mean ``val_mse``, inf when any of them diverged or is not finite. A trial whose run was pruned
is told pruned; one whose run was interrupted stays running in the study and is resumed (the same
parameters, the same run directories, from their checkpoints) by the same command, which then asks
for new trials until the study holds ``n_trials``. In-process launchers (basic) run one trial at a
time; others keep ``n_jobs`` trials in flight, a free slot taking the next trial at once.
"""
from __future__ import annotations

import logging
import math
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from .. import rundir, sweep
from . import settings as search_settings
from . import space as search_space
from . import study as studies
from .trial import study_errors

log = logging.getLogger(__name__)
RESULTS = "optimization_results.yaml"  # the best trial, written in the sweep directory at the end


class SearchSweeper(Sweeper):
    """Optuna search, ask-and-tell, every run through Hydra's launcher (see the module docstring)."""

    def __init__(self, **settings):
        self.settings, self.unknown = search_settings.split(settings)  # unknown keys: refused with the rest
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        settings, sweep_dir = self.settings, Path(self.config.hydra.sweep.dir)
        errors, space = search_settings.check(settings, self.unknown, arguments)  # also before the sweep started
        if errors:
            _refuse(errors, sweep_dir)
        if settings.seeds > 1:  # the paired seeds replace any seed=... of the command line
            space.fixed = [f for f in space.fixed if f.lstrip("+~").split("=", 1)[0] != "seed"]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / sweep.RECORD)
        url = studies.storage_url(settings.storage, sweep_dir)
        try:
            study = studies.open_study(url, settings.study_name, settings.pruner)
        except (*study_errors(), ImportError) as exc:  # unreachable server, missing driver, bad URL
            _refuse([f"hydra.sweeper.storage={studies.shown_url(url)}: cannot open the study "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"], sweep_dir)
        Search(self, study, space).run()


class Search:
    """One command's part of a study: resumes orphaned trials, asks new ones up to ``n_trials``."""

    def __init__(self, sweeper: SearchSweeper, study, space: search_space.Space):
        self.sweeper, self.study, self.space = sweeper, study, space
        self.settings = sweeper.settings
        base = int(sweeper.config.get("seed", 0) or 0)
        self.seeds = [base + k for k in range(self.settings.seeds)] if self.settings.seeds > 1 else None
        self.stopping = False

    def run(self) -> None:
        from optuna.trial import TrialState

        resumable = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                     if studies.is_orphan(t)]
        for t in resumable:
            log.info("search: resuming trial %d (%s)", t.number, " ".join(search_space.overrides(t.params)))
        if _in_process(self.sweeper.launcher):
            self.serial(resumable)
        else:
            self.parallel(resumable)
        self.write_results()

    def next_trial(self, resumable: list):
        """(number, params) of the next trial to run: an orphan first, else a new one; None when done."""
        if self.stopping:
            return None
        if resumable:
            t = resumable.pop(0)
            self.study._storage.set_trial_user_attr(t._trial_id, studies.WORKER, studies.worker_id())
            return t.number, t.params
        if len(self.study.get_trials(deepcopy=False)) >= self.settings.n_trials:
            return None
        number = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = studies.sampler(self.settings.sampler, self.settings.seed, number)
        trial = self.study.ask(self.space.distributions)
        trial.set_user_attr(studies.WORKER, studies.worker_id())
        if self.seeds:
            trial.set_user_attr(studies.SEEDS, self.seeds)
        return trial.number, trial.params

    def serial(self, resumable: list) -> None:
        while (nxt := self.next_trial(resumable)) is not None:
            self.tell(nxt[0], self.launch(*nxt))

    def parallel(self, resumable: list) -> None:
        """Up to ``n_jobs`` trials in flight, each launched from its own thread; the study is only
        touched here. Ctrl-C: no new trials; the runs in flight (signalled too, from the terminal)
        checkpoint and end, then the interrupt goes on (the sweep's resume command is printed)."""
        slots, interrupted = self.settings.n_jobs, False
        with ThreadPoolExecutor(slots, thread_name_prefix="trial") as pool:
            running: dict = {}
            while True:
                while len(running) < slots and (nxt := self.next_trial(resumable)) is not None:
                    running[pool.submit(self.launch, *nxt)] = nxt[0]
                if not running:
                    break
                try:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    self.stopping = interrupted = True
                    continue
                for future in done:
                    self.tell(running.pop(future), future.result())
        if interrupted:
            raise KeyboardInterrupt

    def launch(self, number: int, params: dict) -> list:
        """Run trial ``number``'s jobs (one per seed) through the launcher; their JobReturns."""
        trial_overrides = self.space.fixed + search_space.overrides(params)
        jobs = [trial_overrides + ([f"seed={s}"] if self.seeds else []) for s in (self.seeds or [None])]
        first = number * len(jobs)
        sweep.launched(Path(self.sweeper.config.hydra.sweep.dir), range(first, first + len(jobs)))
        return list(self.sweeper.launcher.launch(jobs, initial_job_idx=first))

    def tell(self, number: int, returns: list) -> None:
        """Tell the study how trial ``number`` ended, from its runs' summaries."""
        from optuna.trial import TrialState

        statuses, values, steps = [], [], []
        for ret in returns:
            summary = _summary(ret)
            statuses.append(summary.get("status"))
            steps.append(f"{summary.get('steps')}/{summary.get('outer_steps')}")
            value = summary.get("val_mse") if summary.get("status") == rundir.COMPLETED else None
            values.append(math.inf if value is None or not math.isfinite(value) else float(value))
        if any(s in (rundir.INTERRUPTED, rundir.RUNNING, None) for s in statuses):
            self.stopping = True  # left running in the study: the same command resumes it
            log.info("search: trial %d interrupted; it resumes from its checkpoints when the command is rerun", number)
            return
        if rundir.PRUNED in statuses:
            self.study.tell(number, state=TrialState.PRUNED)
            log.info("search: trial %d pruned at step %s", number, ", ".join(steps))
        elif all(s == rundir.FAILED for s in statuses):
            self.study.tell(number, state=TrialState.FAIL)
            log.info("search: trial %d failed", number)
        else:
            value = sum(values) / len(values)
            self.study.tell(number, value)
            best = self.best()
            log.info("search: trial %d val_mse %s%s", number, f"{value:.4g}",
                     f" (best {best.value:.4g}, trial {best.number})" if best else "")

    def best(self):
        """The best finished trial with a finite value, or None."""
        from optuna.trial import TrialState

        done = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
        return min(done, key=lambda t: t.value) if done else None

    def write_results(self) -> None:
        best = self.best()
        if best is None:
            return
        results = {"name": self.study.study_name, "best_trial": best.number, "best_value": best.value,
                   "best_params": dict(best.params)}
        with rundir.atomic_path(Path(self.sweeper.config.hydra.sweep.dir) / RESULTS) as tmp:
            tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(results)))


def _summary(ret) -> dict:
    """The summary of the run behind a JobReturn ({} when it has none or it is unreadable)."""
    where = ret.working_dir
    if ret.hydra_cfg is not None:
        where = ret.hydra_cfg.hydra.runtime.output_dir
    try:
        return rundir.read_summary(Path(where)) or {} if where else {}
    except rundir.DamagedFile:
        return {}


def _in_process(launcher) -> bool:
    return type(launcher).__name__ == "BasicLauncher"


def _refuse(errors: list[str], sweep_dir: Path) -> None:
    sweep.close(sweep_dir)  # nothing ran: no "stopped early" line at exit
    for line in errors:
        print(f"maml-sweep: error: {line}", file=sys.stderr)
    sys.exit(2)
