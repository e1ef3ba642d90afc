"""``run(cfg, out_dir)``: train one meta-learning experiment into a run directory. No Hydra here.

By default the loop replays the notebook's single legacy random stream (``RandomState(seed)``: init
params, then the validation task, then ``meta_batch_size`` training tasks per outer step), so the
default config reproduces the notebook's printed trajectory. State is checkpointed at every
evaluation; a rerun in the same directory skips a finished run and resumes an unfinished one,
exactly. A completed run ends with the test-bank evaluation (adaptation.csv) and the figure.

Once a run directory is accepted (empty or this config's run, and its lock taken), every way out
leaves a final status in ``summary.json``: completed, diverged, interrupted (a signal at any phase)
or failed (any exception, with its text).
"""
from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict
from threadpoolctl import threadpool_limits

from . import evaluate, metrics_csv, rundir, runlock, scratch_cache, stats, streams
from .algorithms import Scratch
from .checkpoint import load_checkpoint, save_checkpoint
from .components import build
from .config import ConfigError, check_values
from .figures import panel_steps, plot_validation_fits
from .model import MLP
from .rundir import COMPLETED, DIVERGED, FAILED, INTERRUPTED, PRUNED, RUNNING
from .tasks import Task

log = logging.getLogger(__name__)

EXPLODED = 1e6  # a meta-objective above this (or non-finite) counts as diverged


def init_params(model: MLP, rng, model_cfg) -> dict:
    """The model's initial parameters as ``model_cfg`` (init_std, init, zero_biases) asks."""
    return model.init(rng, model_cfg.init_std, model_cfg.init, model_cfg.zero_biases)


def scratch_key(model_cfg) -> dict:
    """What keys the scratch init's stream: the model config, without the init options at their
    defaults (so configs from before those options existed keep their scratch init)."""
    key = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    if key.get("init") == "normal":
        del key["init"]
    if key.get("zero_biases") is False:
        del key["zero_biases"]
    return key


def run(cfg, out_dir, on_accept=None, on_eval=None) -> dict:
    """Train (or resume, or skip) the experiment ``cfg`` in ``out_dir``; returns its summary dict.

    Refused untouched (:class:`rundir.RunDirError`): a directory with foreign files, another
    config's run, a damaged summary or checkpoint, or a live run (its lock held). A finished run
    of this config is skipped without writing anything. Otherwise, holding the directory's lock for
    the whole run: ``on_accept()`` (the CLI records ``.hydra/``), bad values recorded as a failed
    run and raised (:class:`ConfigError`), then a resume from the checkpoint or a new run. Any
    exception is recorded as ``failed`` and raised; a signal ends the run as ``interrupted``.
    ``on_eval(step, vals) -> bool`` (a search's pruner, :mod:`maml_sweep.search.trial`) sees each
    evaluation's ``val_mse`` after its checkpoint; True before the last step ends the run as ``pruned``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chash = rundir.run_hash(cfg)
    previous = check_run_dir(out_dir, cfg)
    if previous is not None and previous["status"] in rundir.FINISHED:
        return _skipped(out_dir, previous)
    with runlock.RunLock(out_dir), StopSignals() as stop:
        previous = check_run_dir(out_dir, cfg)  # again under the lock: now nobody else writes here
        if previous is not None and previous["status"] in rundir.FINISHED:
            return _skipped(out_dir, previous)
        checkpoint = load_checkpoint(out_dir)  # after the config check; never unpickles
        removed = rundir.remove_temp_files(out_dir)
        if removed:
            log.info("%s: removed temp files of a killed write: %s", out_dir, " ".join(removed))
        summary = _run_accepted(cfg, out_dir, chash, previous, checkpoint, stop, on_accept, started, on_eval)
    stop.forward()
    return summary


def _skipped(out_dir: Path, previous: dict) -> dict:
    log.info("%s already %s at step %d: skipped", out_dir, previous["status"], previous.get("steps", 0))
    return previous


def _run_accepted(cfg, out_dir: Path, chash: str, previous: dict | None, checkpoint: dict | None,
                  stop: "StopSignals", on_accept, started: float, on_eval=None) -> dict:
    """The accepted run, from the CLI's record to the final summary, whatever happens in between;
    ``started``: perf_counter() when :func:`run` was called (the set-up's start)."""
    outcome, trainer, state = Outcome(), None, None
    try:
        if on_accept is not None:
            on_accept()
        errors = check_values(cfg)
        if errors:
            raise ConfigError("; ".join(errors))
        trainer = Trainer(cfg, out_dir, chash)
        trainer.on_eval = on_eval
        state = trainer.resume_state(checkpoint) if checkpoint else trainer.fresh_state()
        if checkpoint and previous and previous.get("steps") == state.step:
            outcome.train_loss = _number(previous.get("train_meta_objective"))  # no step may run to renew it
        trainer.setup_s = time.perf_counter() - started
        threads = cfg.train.blas_threads
        with threadpool_limits(threads) if threads > 0 else nullcontext():
            trainer.train(state, outcome, stop)
    except Interrupted as exc:
        outcome.interrupted(str(exc), forced=True)
    except Exception as exc:
        outcome.status, outcome.error = FAILED, _error_text(exc)
        raise
    finally:
        stop.defer()  # from here on a signal is only noted: the final summary must get written
        if trainer is not None and state is not None:
            summary = trainer.finish(state, outcome)
        else:
            summary = {"steps": 0, **(previous or {}), "status": outcome.status, "error": outcome.error,
                       "seed": cfg.seed, "config_hash": chash}
            rundir.write_json(out_dir / rundir.SUMMARY, summary)
    return summary


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (ConfigError, rundir.RunDirError)) else f"{type(exc).__name__}: {exc}"


def check_run_dir(out_dir: Path, cfg) -> dict | None:
    """Read-only: raise :class:`rundir.RunDirError` unless ``out_dir`` is empty or a run of the
    config ``cfg`` (:func:`rundir.accepted_hashes`); returns its summary (None when it has none)."""
    unsafe = rundir.unsafe_entry(out_dir)
    if unsafe is not None:
        raise unsafe
    foreign = rundir.foreign_files(out_dir)
    if foreign:
        shown = " ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise rundir.RunDirError(
            f"{out_dir} holds files that are not a maml-sweep run ({shown}); nothing was written there: "
            "choose an empty or new hydra.run.dir / hydra.sweep.dir")
    summary = rundir.read_summary(out_dir)
    found = summary["config_hash"] if summary is not None else (load_checkpoint(out_dir) or {}).get("config_hash")
    hashes = rundir.accepted_hashes(cfg)
    if found is not None and found not in hashes:
        raise rundir.RunDirError(
            f"{out_dir} holds a run of another config (hash {found}, this config {hashes[0]}); "
            "choose a new hydra.run.dir / hydra.sweep.dir instead of mixing them")
    return summary


def check_before_start(config) -> list[str]:
    """Why a single run of the composed ``config`` (with its ``hydra`` node) may not start, as lines
    (empty when it may): a ``hydra.output_subdir`` (Hydra would write ``.hydra/`` before the
    directory is checked), bad values, or a run directory :func:`check_run_dir` refuses. Read-only:
    called before Hydra creates or writes anything, so a refused run leaves every file as it was and
    a bad value leaves no new directory."""
    if config.hydra.get("output_subdir") is not None:
        return [f"hydra.output_subdir={config.hydra.output_subdir} is not allowed: maml-sweep writes the run's "
                ".hydra/ record itself once the directory is accepted; leave hydra.output_subdir unset (null)"]
    cfg = copy.deepcopy(config)
    with open_dict(cfg):
        del cfg["hydra"]
    errors = check_values(cfg)
    if errors:
        return errors
    out_dir = Path(str(config.hydra.run.dir))
    if not out_dir.is_dir():
        return []
    try:
        previous = check_run_dir(out_dir, cfg)
        if (previous is None or previous["status"] not in rundir.FINISHED) and runlock.is_live(out_dir):
            raise rundir.RunDirBusy(f"{out_dir} is in use by {runlock.lock_holder(out_dir)}; wait for it to end "
                                    "(or stop it) or choose another hydra.run.dir")
    except rundir.RunDirError as exc:
        return [str(exc)]
    return []


def finished_here(config) -> bool:
    """True when ``hydra.run.dir`` of the composed ``config`` holds a finished (completed or diverged)
    run of this very config: the run will be skipped without writing, so a read-only directory is fine."""
    cfg = copy.deepcopy(config)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        previous = check_run_dir(Path(str(config.hydra.run.dir)), cfg)
    except rundir.RunDirError:
        return False
    return previous is not None and previous["status"] in rundir.FINISHED


class Interrupted(KeyboardInterrupt):
    """A signal that stops the run at once (outside the training loop, or a second one in it);
    the message is the signal's name."""


@dataclass
class TrainState:
    """Everything a resume needs, consistent after every outer step. ``params`` and each array in
    ``opt_state`` map parameter names to arrays; ``snapshots`` are (step, params) for the figure."""

    step: int
    params: dict
    opt_state: dict
    rng_state: object  # streams.get_state() of the training-task stream
    val_tasks: list
    snapshots: list = field(default_factory=list)
    train_s: float = 0.0  # seconds spent in the training loop, over all sessions
    config_hash: str = ""

    def to_checkpoint(self) -> dict:
        """A plain tree for :func:`maml_sweep.checkpoint.save_checkpoint` (tasks as dicts of arrays)."""
        tasks = [{k: v for k, v in t._asdict().items() if v is not None} for t in self.val_tasks]
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state,
                "rng_state": self.rng_state, "val_tasks": tasks, "snapshots": self.snapshots,
                "train_s": self.train_s, "config_hash": self.config_hash}

    @classmethod
    def from_checkpoint(cls, tree: dict) -> "TrainState":
        tasks = [Task(**t) for t in tree["val_tasks"]]
        return cls(step=int(tree["step"]), params=tree["params"], opt_state=tree["opt_state"],
                   rng_state=tree["rng_state"], val_tasks=tasks,
                   snapshots=[(int(s), p) for s, p in tree["snapshots"]], train_s=float(tree["train_s"]),
                   config_hash=tree["config_hash"])


@dataclass
class Outcome:
    """How the run is going / ended: ``status`` is one of :data:`rundir.STATUSES`. ``forced``: stopped
    at once, so the last checkpoint (not the current state) is the resume point."""

    status: str = RUNNING
    error: str | None = None
    diverged_step: int | None = None
    train_loss: float = math.nan
    val: dict | None = None  # last validation: {"val_meta_objective": ..., "val_mse": ...} (Trainer.validate)
    forced: bool = False

    def interrupted(self, signal_name: str, forced: bool) -> None:
        self.status, self.forced = INTERRUPTED, forced
        self.error = f"stopped at once by {signal_name}" if forced else f"stopped by {signal_name}"


class Trainer:
    """One run's training loop, its bookkeeping and its files."""

    def __init__(self, cfg, out_dir: Path, chash: str):
        self.cfg, self.out_dir, self.chash = cfg, out_dir, chash
        self.model, self.tasks, self.algorithm, self.optimizer, self.inner = build(cfg)
        self.outer_steps = cfg.train.outer_steps
        self.meta_batch_size, self.eval_every = cfg.train.meta_batch_size, cfg.train.eval_every
        self.snapshot_steps = set(panel_steps(self.outer_steps))
        self.shared_val = evaluate.validation_tasks(self.tasks, cfg.task, cfg.eval)
        self.val_inner = evaluate.val_inner(self.inner, cfg.eval)
        for caveat in self.algorithm.caveats(self.inner):
            log.warning(caveat)
        self.versions = rundir.package_versions()
        self.saved_step = 0  # the step of the checkpoint on disk (the resume point)
        self.results: dict | None = None  # a completed run's test-bank numbers (write_results)
        self.setup_s: float | None = None  # this session's seconds from run() to the loop (set by run)
        self.on_eval = None  # on_eval(step, vals) -> True: stop as pruned (see run)

    def fresh_state(self) -> TrainState:
        """Step 0. The notebook mode draws init, then its single validation task, then training
        tasks from one stream; otherwise validation tasks come from their own keyed stream."""
        init_rng, task_rng = streams.training_streams(self.cfg.seed, self.cfg.train.rng)
        params = self.algorithm.init(self.model, init_params(self.model, init_rng, self.cfg.model), self.inner)
        if self.cfg.train.rng == "notebook":
            val_tasks = [self.tasks.sample(task_rng)]
        else:
            val_tasks = self.shared_val
        return TrainState(step=0, params=params, opt_state=self.optimizer.init(params),
                          rng_state=streams.get_state(task_rng), val_tasks=val_tasks, config_hash=self.chash)

    def resume_state(self, checkpoint: dict) -> TrainState:
        """The state saved in ``checkpoint``; :class:`rundir.DamagedRunFile` if it does not fit this config."""
        path = self.out_dir / rundir.CHECKPOINT
        fresh = self.fresh_state()
        try:
            state = TrainState.from_checkpoint(checkpoint)
            wrong = _misfit(state, fresh, self.outer_steps, (self.chash, *rundir.accepted_hashes(self.cfg)))
            if wrong is None:  # the RNG state must load into this config's kind of stream
                streams.set_state(streams.training_streams(0, self.cfg.train.rng)[1], state.rng_state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            raise rundir.DamagedRunFile(path, f"wrong layout: {type(exc).__name__} {exc}") from None
        if wrong is not None:
            raise rundir.DamagedRunFile(path, f"{wrong} do not fit this config")
        state.config_hash = self.chash  # a run recorded under an older hash continues under this one
        self.saved_step = state.step
        log.info("resuming %s from step %d", self.out_dir, state.step)
        return state

    def train(self, state: TrainState, outcome: Outcome, stop: "StopSignals") -> None:
        """The training loop, then (when completed) the final checkpoint, params, test-bank
        evaluation and figure. ``state`` and ``outcome`` are updated in place."""
        self.write_summary(state, outcome)
        rng = streams.training_streams(0, self.cfg.train.rng)[1]
        streams.set_state(rng, state.rng_state)
        metrics = metrics_csv.MetricsLog(self.out_dir, keep_until_step=state.step)
        try:
            with stop.in_loop(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.loop(state, rng, metrics, outcome, stop)
        finally:
            metrics.close()
            state.rng_state = streams.get_state(rng)  # after the last step done (a forced stop saves nothing)
        if outcome.status == INTERRUPTED:
            with stop.held():
                self.save_checkpoint(state)
        elif outcome.status == COMPLETED:
            t0 = time.perf_counter()
            with stop.held():
                self.save_checkpoint(state)
            self.write_results(state, outcome)
            self.results["writes_s"] = time.perf_counter() - t0 - self.results["eval_s"]

    def loop(self, state: TrainState, rng, metrics, outcome: Outcome, stop: "StopSignals") -> None:
        """Outer steps from state.step + 1 on; ``state`` is consistent after every step, except its
        ``rng_state``, taken where the state is saved (each checkpoint, and by :meth:`train` at the end)."""
        start_step, start_train_s, t0 = state.step, state.train_s, time.perf_counter()
        for step in range(state.step + 1, self.outer_steps + 1):
            batch = [self.tasks.sample(rng) for _ in range(self.meta_batch_size)]
            train_loss, grads = self.algorithm.direction(self.model, state.params, batch, self.inner)
            outcome.train_loss = float(train_loss)
            if not _finite(train_loss, grads):
                outcome.status, outcome.diverged_step = DIVERGED, step
                return
            params, opt_state = self.optimizer.update(state.params, grads, state.opt_state)
            state.step, state.params, state.opt_state = step, params, opt_state
            state.train_s = start_train_s + time.perf_counter() - t0
            if step in self.snapshot_steps:
                state.snapshots.append((step, params))
            if step % self.eval_every == 0 or step == self.outer_steps:
                vals = outcome.val = self.validate(state)
                val = vals["val_meta_objective"]
                state.train_s = start_train_s + time.perf_counter() - t0
                metrics.append(step, val, vals["val_mse"], float(train_loss), state.train_s)
                self.log_progress(step, vals, train_loss, start_step, t0)
                # the notebook's rule: its validation task exploding is divergence; a blown-up task of the
                # shared validation only makes val_mse inf (selection refuses it), training goes on
                if self.cfg.train.rng == "notebook" and not (math.isfinite(val) and val < EXPLODED):
                    outcome.status, outcome.diverged_step = DIVERGED, step
                    return
                state.rng_state = streams.get_state(rng)  # here, not every step: ~24 us for the legacy stream
                with stop.held():
                    self.save_checkpoint(state)
                    self.write_summary(state, outcome)  # steps current at every checkpoint
                if self.on_eval is not None and self.on_eval(step, vals) and step < self.outer_steps:
                    outcome.status = PRUNED
                    return
            if stop.received:
                outcome.interrupted(stop.received, forced=False)
                return
        outcome.status = COMPLETED

    def save_checkpoint(self, state: TrainState) -> None:
        save_checkpoint(self.out_dir, state.to_checkpoint())
        self.saved_step = state.step

    def write_results(self, state: TrainState, outcome: Outcome) -> None:
        """A completed run's test-bank evaluation (into ``self.results``), then its params and figure."""
        if outcome.val is None:  # resumed at the very end: the last step's validation is not in memory
            outcome.val = self.validate(state)
        t0 = time.perf_counter()
        results = self.evaluate(state.params)
        results["eval_s"] = time.perf_counter() - t0
        rundir.save_params(self.out_dir / rundir.PARAMS, state.params)
        if self.cfg.train.figures is not False:  # null (the default) draws; the CLI sets false for multirun jobs
            adapt = lambda meta, task: self.algorithm.adapt(self.model, meta, task, self.inner)
            plot_validation_fits(self.model.predict, adapt, state.snapshots, state.val_tasks[0],
                                 (self.cfg.task.xmin, self.cfg.task.xmax), self.out_dir / rundir.FITS)
        self.results = results

    def validate(self, state: TrainState) -> dict:
        """``val_mse``: plain MSE on the held-out points of the shared validation tasks
        (``eval.val_tasks`` tasks of the test protocol from the keyed validation stream, the same in
        every rng mode) after ``eval.val_step`` adaptation steps (default ``inner_steps``) at the
        test's step size, mean over tasks, inf if any task's is not finite; computed at steps that are
        multiples of ``eval.val_every`` and at the last step, NaN at the other evaluations. Model
        selection uses it (the last step's).
        ``val_meta_objective``: the notebook mode's mean meta-objective (loss_scale x query MSE after
        the inner loop) on its single validation task from the legacy stream; otherwise loss_scale x
        ``val_mse``."""
        val_mse = math.nan
        if state.step % self.cfg.eval.val_every == 0 or state.step == self.outer_steps:
            mse = self.algorithm.adaptation_mse(self.model, state.params, self.shared_val, self.val_inner)[:, -1]
            val_mse = float(stats.mean(mse))
        if self.cfg.train.rng == "notebook":
            objective = self.algorithm.objective(self.model, state.params, state.val_tasks, self.inner)
        else:
            objective = self.inner.loss_scale * val_mse
        return {"val_meta_objective": objective, "val_mse": val_mse}

    def evaluate(self, params: dict) -> dict:
        """Adaptation curves on the test bank for the trained init and the scratch baseline, into
        adaptation.csv; returns the headline numbers for summary.json."""
        ev, label = self.cfg.eval, self.algorithm.label
        bank = evaluate.test_bank(self.tasks, self.cfg.task, ev)
        inner = evaluate.eval_inner(self.inner, ev)
        trained = lambda tasks: self.algorithm.adaptation_mse(self.model, params, tasks, inner)
        mse = {label: evaluate.in_chunks(trained, bank, label)}
        baseline = Scratch(self.cfg.algorithm)  # the untrained init, adapted by the plain inner loop
        if label != baseline.label:
            def scratch_mse():
                rng = streams.keyed_stream(scratch_key(self.cfg.model), ev.seed, baseline.label)
                scratch = init_params(self.model, rng, self.cfg.model)
                curves = lambda tasks: baseline.adaptation_mse(self.model, scratch, tasks, inner)
                return evaluate.in_chunks(curves, bank, baseline.label)

            mse[baseline.label] = scratch_cache.scratch_mse(self.cfg, self.model, bank, inner, scratch_mse)
        keys = evaluate.record(self.out_dir, mse, label, ev.report_steps, self.inner.steps)
        return {**keys, "noise_floor": float(self.tasks.noise) ** 2}

    def log_progress(self, step: int, vals: dict, train_loss: float, start_step: int, t0: float) -> None:
        rate = (step - start_step) / max(time.perf_counter() - t0, 1e-9)
        eta = (self.outer_steps - step) / rate if rate > 0 else math.inf
        log.info("step %d/%d  val_meta_objective %.3f  val_mse %.3f  train %.3f  %.0f steps/s  ETA %s",
                 step, self.outer_steps, vals["val_meta_objective"], vals["val_mse"], float(train_loss), rate,
                 _duration(eta))

    def finish(self, state: TrainState, outcome: Outcome) -> dict:
        """The final summary (status, steps of the resume point, results of a completed run)."""
        if outcome.status == RUNNING:  # an exception escaped before the outcome was set
            outcome.status = FAILED
        summary = self.write_summary(state, outcome, self.results if outcome.status == COMPLETED else None)
        log.info("%s: %s at step %d (%s ms per outer step)", self.out_dir, outcome.status,
                 outcome.diverged_step or summary["steps"],
                 f"{summary['ms_per_step']:.2f}" if summary["ms_per_step"] else "-")
        return summary

    def write_summary(self, state: TrainState, outcome: Outcome, results: dict | None = None) -> dict:
        """``summary.json`` for ``state`` as it is (or, stopped at once, as last checkpointed).
        ``ms_per_step``: loop seconds over all sessions per outer step done. Where the rest of a
        run's time goes (this session): ``setup_s`` before the loop (directory checks and lock,
        config checks, tasks, init or checkpoint); after a completed loop ``eval_s`` (test bank) and
        ``writes_s`` (final checkpoint, params, figure)."""
        completed = outcome.status == COMPLETED
        summary = {
            # steps never ahead of the checkpoint: a stopped or failed run resumes from saved_step
            "status": outcome.status, "steps": state.step if outcome.status in rundir.FINISHED else self.saved_step,
            "outer_steps": self.outer_steps,
            **(outcome.val if completed else {"val_meta_objective": math.nan, "val_mse": math.nan}),
            "train_meta_objective": outcome.train_loss,
            "wall_s": state.train_s, "ms_per_step": 1e3 * state.train_s / state.step if state.step else None,
            "setup_s": self.setup_s,
            "diverged_step": outcome.diverged_step, "error": outcome.error, "seed": self.cfg.seed,
            "config_hash": self.chash, "versions": self.versions, **(results or {}),
        }
        rundir.write_json(self.out_dir / rundir.SUMMARY, summary)
        return summary


def _misfit(state: TrainState, fresh: TrainState, outer_steps: int, hashes: tuple[str, ...]) -> str | None:
    """What of a restored ``state`` does not fit this config's ``fresh`` one (names the part), or None."""
    tasks = lambda s: [sorted(t._asdict().items()) for t in s.val_tasks]
    checks = [("params", _layout(state.params) == _layout(fresh.params)),
              ("optimizer state", _layout(state.opt_state) == _layout(fresh.opt_state)),
              ("step", 0 <= state.step <= outer_steps),
              ("RNG state", _layout(state.rng_state) == _layout(fresh.rng_state) and _rng_in_range(state.rng_state)),
              ("validation tasks", _layout(tasks(state)) == _layout(tasks(fresh))),
              ("figure snapshots", all(_layout(p) == _layout(fresh.params) for _, p in state.snapshots)),
              ("config hash", state.config_hash in hashes)]
    return next((what for what, ok in checks if not ok), None)


def _rng_in_range(rng_state) -> bool:
    """The integers of a stream state (of the layout :func:`streams.get_state` gives) within the
    ranges numpy assumes: it does not check them all itself (a legacy position past 624 crashes it)."""
    if isinstance(rng_state, tuple):  # RandomState: (name, key (624,) uint32, pos, has_gauss, cached_gaussian)
        _, key, pos, has_gauss, gauss = rng_state
        return 0 <= int(pos) <= len(key) and int(has_gauss) in (0, 1) and math.isfinite(float(gauss))
    inner = rng_state["state"]  # PCG64: 128-bit state and increment, a buffered 32-bit half
    return (all(0 <= int(inner[k]) < 2 ** 128 for k in ("state", "inc")) and int(rng_state["has_uint32"]) in (0, 1)
            and 0 <= int(rng_state["uinteger"]) < 2 ** 32)


def _layout(tree):
    """The nesting, names, shapes and dtypes of a tree of dicts, lists and arrays, with its strings
    (e.g. an RNG state's generator name), for checkpoint checks."""
    if isinstance(tree, dict):
        return {k: _layout(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_layout(v) for v in tree]
    if isinstance(tree, str):
        return tree
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):  # JSON numbers: kind only
        return ((), "f" if isinstance(tree, float) else "i")
    if isinstance(tree, (np.ndarray, np.generic)):
        kind = tree.dtype.kind
        return (np.shape(tree), "i" if kind == "u" and np.ndim(tree) == 0 else kind)
    return type(tree).__name__


def _finite(loss, grads: dict) -> bool:
    """Loss finite and below EXPLODED, and no NaN or inf in any gradient (a sum would show one)."""
    total = sum(float(_sum(g, axis=None)) for g in grads.values())  # the ufunc, not np.sum's wrapper
    return math.isfinite(loss) and loss < EXPLODED and math.isfinite(total)


_sum = np.add.reduce


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class StopSignals:
    """Within ``with``: SIGINT, SIGTERM and SIGUSR2 (submitit's preemption signal) stop the run.

    Inside :meth:`in_loop` the first signal only sets ``received`` (the loop stops after the current
    outer step, with a checkpoint); a second one, or any signal outside the loop (start, evaluation,
    final writes), raises :class:`Interrupted` at once (inside :meth:`held`, right after the write).
    After :meth:`defer` signals are only noted,
    so the final summary always gets written. Signal handlers can only be set in the main thread;
    elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
    active: "StopSignals | None" = None  # the one in force in this process (a sweep worker's watch reads it)
    taken: "str | None" = None  # the signal the latest run in this process stopped on (the CLI then ignores more)

    def __init__(self):
        self.received: str | None = None
        self._signum: int | None = None
        self._old: dict = {}
        self._graceful = False
        self._deferred = False
        self._holding = False
        self._cut = False  # a signal that would have stopped the run at once came inside held()

    def _handle(self, signum, frame):
        first = self.received is None
        if first:
            self.received, self._signum = signal.Signals(signum).name, signum
            StopSignals.taken = self.received
        if self._deferred or (self._graceful and first):
            return
        if self._holding:
            self._cut = True
            return
        raise Interrupted(signal.Signals(signum).name)

    @contextmanager
    def in_loop(self):
        """The training loop: a first signal asks it to stop after the current step."""
        if self.received:  # arrived just before: stop at once
            raise Interrupted(self.received)
        self._graceful = True
        try:
            yield self
        finally:
            self._graceful = False

    @contextmanager
    def held(self):
        """A write that must not be cut (the checkpoint and the summary beside it): a signal inside
        that would stop the run at once stops it right after the write."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._cut:
            raise Interrupted(self.received)

    def defer(self) -> None:
        """From now on only note signals."""
        self._deferred = True

    def forward(self) -> None:
        """Pass the received signal on to the handler that was there before (e.g. submitit's
        preemption handler, which requeues the job; the requeued job resumes from the checkpoint)."""
        old = self._old.get(self._signum)
        if callable(old) and old is not signal.default_int_handler:
            old(self._signum, None)

    def __enter__(self) -> "StopSignals":
        StopSignals.taken = None
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
            StopSignals.active = self
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        if StopSignals.active is self:
            StopSignals.active = None
