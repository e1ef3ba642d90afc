"""``run(cfg, out_dir)``: train one meta-learning experiment into a run directory. No Hydra here.

By default the loop replays the notebook's single legacy random stream (``RandomState(seed)``: init
params, then the validation task, then ``meta_batch_size`` training tasks per outer step), so the
default config reproduces the notebook's printed trajectory. State is checkpointed at every
evaluation; a rerun in the same directory skips a finished run and resumes an unfinished one,
exactly. A completed run ends with the test-bank evaluation (adaptation.csv) and the figure.
"""
from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from . import evaluate, rundir, scratch_cache, streams
from .algorithms import MAML
from .components import build
from .config import CAPS, ConfigError, check_values
from .figures import panel_steps, plot_validation_fits

log = logging.getLogger(__name__)

EXPLODED = 1e6  # a meta-objective above this (or non-finite) counts as diverged


def run(cfg, out_dir, on_accept=None) -> dict:
    """Train (or resume, or skip) the experiment ``cfg`` in ``out_dir``; returns its summary dict.

    In this order: a directory holding a run of another config is refused untouched
    (:class:`ConfigError`); ``on_accept()`` is called (the CLI records ``.hydra/`` there); bad values
    are recorded as a failed run and raised (:class:`ConfigError`); then a finished run is skipped,
    an unfinished one resumed from its checkpoint, or a new one started.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chash = config_hash(cfg)
    check_run_dir(out_dir, chash)
    if on_accept is not None:
        on_accept()
    errors = check_values(cfg)
    if errors:
        rundir.write_json(out_dir / rundir.SUMMARY, {"status": rundir.FAILED, "steps": 0, "error": "; ".join(errors)})
        raise ConfigError("; ".join(errors))
    previous = rundir.read_summary(out_dir)
    if previous is not None and previous["status"] in rundir.FINISHED:
        log.info("%s already %s at step %d: skipped", out_dir, previous["status"], previous["steps"])
        return previous

    threads = cfg.train.blas_threads
    with threadpool_limits(threads) if threads > 0 else nullcontext():
        return Trainer(cfg, out_dir, chash).train(rundir.load_checkpoint(out_dir))


def config_hash(cfg) -> str:
    """The hash that identifies a run's config (``summary.json``'s ``config_hash``)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else copy.deepcopy(dict(cfg))
    for cap in CAPS:  # raising a resource cap resumes the same run
        plain.get("train", {}).pop(cap, None)
    return rundir.config_hash(plain)


def check_run_dir(out_dir: Path, chash: str) -> None:
    """Raise :class:`ConfigError` if ``out_dir`` holds a run of a config other than ``chash``'s."""
    found = rundir.recorded_config_hash(out_dir)
    if found is not None and found != chash:
        raise ConfigError(
            f"{out_dir} holds a run of another config (hash {found}, this config {chash}); "
            "choose a new hydra.run.dir / hydra.sweep.dir instead of mixing them")


class Trainer:
    """One run's training loop, its bookkeeping and its files."""

    def __init__(self, cfg, out_dir: Path, chash: str):
        self.cfg, self.out_dir, self.chash = cfg, out_dir, chash
        self.model, self.tasks, self.algorithm, self.optimizer, self.inner = build(cfg)
        self.outer_steps = cfg.train.outer_steps
        self.meta_batch_size, self.eval_every = cfg.train.meta_batch_size, cfg.train.eval_every
        self.snapshot_steps = set(panel_steps(self.outer_steps))

    def fresh_state(self) -> dict:
        """Step 0. The notebook mode draws init, then its single validation task, then training
        tasks from one stream; otherwise validation tasks come from their own keyed stream."""
        init_rng, task_rng = streams.training_streams(self.cfg.seed, self.cfg.train.rng)
        params = self.algorithm.init(self.model, self.model.init(init_rng, self.cfg.model.init_std), self.inner)
        if self.cfg.train.rng == "notebook":
            val_tasks = [self.tasks.sample(task_rng)]
        else:
            val_tasks = evaluate.validation_tasks(self.tasks, self.cfg.task, self.cfg.eval)
        return {"step": 0, "params": params, "opt_state": self.optimizer.init(params),
                "rng_state": streams.get_state(task_rng), "val_tasks": val_tasks, "snapshots": [],
                "train_s": 0.0, "config_hash": self.chash}

    def train(self, checkpoint: dict | None) -> dict:
        state = checkpoint or self.fresh_state()
        if checkpoint:
            log.info("resuming %s from step %d", self.out_dir, state["step"])
        rng = streams.training_streams(0, self.cfg.train.rng)[1]
        streams.set_state(rng, state["rng_state"])
        metrics = rundir.MetricsLog(self.out_dir, keep_until_step=state["step"])
        start_step, start_train_s = state["step"], state["train_s"]
        outcome = {"status": rundir.RUNNING, "error": None, "diverged_step": None, "train_loss": math.nan}
        self.write_summary(state, outcome, steps_run=0, loop_s=0.0)
        t0 = time.perf_counter()
        stop = StopSignals()
        try:
            with stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.loop(state, rng, metrics, outcome, stop, t0)
        except KeyboardInterrupt:  # a second signal: stop now; the last checkpoint stays the resume point
            outcome.update(status=rundir.INTERRUPTED, error="stopped at once by a second signal", forced=True)
            raise
        except Exception as exc:
            outcome.update(status=rundir.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            metrics.close()
            loop_s = time.perf_counter() - t0
            state["train_s"] = start_train_s + loop_s
            state["rng_state"] = streams.get_state(rng)
            summary = self.finish(state, outcome, state["step"] - start_step, loop_s)
        stop.forward()
        return summary

    def loop(self, state: dict, rng, metrics, outcome: dict, stop: "StopSignals", t0: float) -> None:
        """Outer steps from state["step"] + 1 on; ``state`` is consistent after every step."""
        start_step, start_train_s = state["step"], state["train_s"]
        for step in range(state["step"] + 1, self.outer_steps + 1):
            batch = [self.tasks.sample(rng) for _ in range(self.meta_batch_size)]
            train_loss, grads = self.algorithm.direction(self.model, state["params"], batch, self.inner)
            outcome["train_loss"] = float(train_loss)
            if not _finite(train_loss, grads):
                outcome.update(status=rundir.DIVERGED, diverged_step=step)
                return
            params, opt_state = self.optimizer.update(state["params"], grads, state["opt_state"])
            state.update(step=step, params=params, opt_state=opt_state)
            if step in self.snapshot_steps:
                state["snapshots"].append((step, params))
            if step % self.eval_every == 0 or step == self.outer_steps:
                val = outcome["val"] = self.validate(state)
                state["train_s"] = start_train_s + time.perf_counter() - t0
                state["rng_state"] = streams.get_state(rng)
                metrics.append(step, val, float(train_loss), state["train_s"])
                self.log_progress(step, val, train_loss, start_step, t0)
                if not (math.isfinite(val) and val < EXPLODED):
                    outcome.update(status=rundir.DIVERGED, diverged_step=step)
                    return
                rundir.save_checkpoint(self.out_dir, state)
            if stop.received:
                outcome.update(status=rundir.INTERRUPTED, error=f"stopped by {stop.received}")
                return
        outcome["status"] = rundir.COMPLETED

    def validate(self, state: dict) -> float:
        """Mean meta-objective over the validation tasks: query loss after the inner loop."""
        return self.algorithm.objective(self.model, state["params"], state["val_tasks"], self.inner)

    def evaluate(self, params: dict) -> dict:
        """Adaptation curves on the test bank for the trained init and the scratch baseline, into
        adaptation.csv; returns the headline numbers for summary.json."""
        ev = self.cfg.eval
        bank = evaluate.test_bank(self.tasks, self.cfg.task, ev)
        inner = evaluate.eval_inner(self.inner, ev)
        mse = self.algorithm.adaptation_mse(self.model, params, bank, inner)
        rows = evaluate.summarise(self.algorithm.label, mse)
        if self.algorithm.label != "scratch":
            def scratch_mse():
                rng = streams.keyed_stream(self.cfg.model, ev.seed, "scratch")
                scratch = self.model.init(rng, self.cfg.model.init_std)
                return MAML().adaptation_mse(self.model, scratch, bank, inner)

            rows += evaluate.summarise("scratch", scratch_cache.scratch_mse(self.cfg, self.model, bank, inner,
                                                                           scratch_mse))
        rundir.write_adaptation_csv(self.out_dir / rundir.ADAPTATION, rows)
        curve = mse.mean(axis=0)
        ks = sorted({min(1, ev.max_steps), min(self.inner.steps, ev.max_steps), ev.max_steps})
        return {**{f"test_mse_k{k}": float(curve[k]) for k in ks},
                "test_mse_at_inner_steps": float(curve[min(self.inner.steps, ev.max_steps)]),
                "noise_floor": float(self.tasks.noise) ** 2, "n_test_tasks": len(bank)}

    def log_progress(self, step: int, val: float, train_loss: float, start_step: int, t0: float) -> None:
        rate = (step - start_step) / max(time.perf_counter() - t0, 1e-9)
        eta = (self.outer_steps - step) / rate if rate > 0 else math.inf
        log.info("step %d/%d  val_meta_objective %.3f  train %.3f  %.0f steps/s  ETA %s",
                 step, self.outer_steps, val, float(train_loss), rate, _duration(eta))

    def finish(self, state: dict, outcome: dict, steps_run: int, loop_s: float) -> dict:
        """Save what the outcome calls for and the summary; returns the summary."""
        status = outcome["status"]
        if status in (rundir.COMPLETED, rundir.INTERRUPTED) and not outcome.get("forced"):
            rundir.save_checkpoint(self.out_dir, state)
        extra = {}
        if status == rundir.COMPLETED:
            rundir.save_params(self.out_dir / rundir.PARAMS, state["params"])
            t0 = time.perf_counter()
            extra = self.evaluate(state["params"])
            extra["eval_s"] = time.perf_counter() - t0
            if self.cfg.train.get("figures", False):
                adapt = lambda meta, task: self.algorithm.adapt(self.model, meta, task, self.inner)
                plot_validation_fits(self.model.predict, adapt, state["snapshots"], state["val_tasks"][0],
                                     (self.cfg.task.xmin, self.cfg.task.xmax), self.out_dir / rundir.FITS)
        summary = self.write_summary(state, outcome, steps_run, loop_s, extra)
        log.info("%s: %s at step %d (%s ms per outer step)", self.out_dir, status,
                 outcome["diverged_step"] or state["step"],
                 f"{summary['ms_per_step']:.2f}" if summary["ms_per_step"] else "-")
        return summary

    def write_summary(self, state: dict, outcome: dict, steps_run: int, loop_s: float, extra=None) -> dict:
        val = math.nan
        if outcome["status"] == rundir.COMPLETED:  # the last step always validates; not when resumed at the end
            val = outcome["val"] if "val" in outcome else self.validate(state)
        summary = {
            "status": outcome["status"], "steps": state["step"], "outer_steps": self.outer_steps,
            "val_meta_objective": val, "train_meta_objective": outcome["train_loss"],
            "wall_s": state["train_s"], "ms_per_step": 1e3 * loop_s / steps_run if steps_run else None,
            "diverged_step": outcome["diverged_step"], "error": outcome["error"], "seed": self.cfg.seed,
            "config_hash": self.chash, "versions": rundir.package_versions(), **(extra or {}),
        }
        rundir.write_json(self.out_dir / rundir.SUMMARY, summary)
        return summary


def _finite(loss, grads: dict) -> bool:
    """Loss finite and below EXPLODED, and no NaN or inf in any gradient (a sum would show one)."""
    return math.isfinite(loss) and loss < EXPLODED and math.isfinite(sum(float(np.sum(g)) for g in grads.values()))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class StopSignals:
    """Within ``with``: SIGINT, SIGTERM and SIGUSR2 (submitit's preemption signal) set
    ``received`` so the loop stops after the current outer step; a second one stops at once.
    Signal handlers can only be set in the main thread; elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.received: str | None = None
        self._signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.received:
            raise KeyboardInterrupt(self.received)
        self.received, self._signum = signal.Signals(signum).name, signum

    def forward(self) -> None:
        """Pass the received signal on to the handler that was there before (e.g. submitit's
        preemption handler, which requeues the job; the requeued job resumes from the checkpoint)."""
        old = self._old.get(self._signum)
        if callable(old) and old is not signal.default_int_handler:
            old(self._signum, None)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
