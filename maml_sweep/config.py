"""Config schemas (dataclasses registered in Hydra's ConfigStore) and value checks.

Hydra composes ``conf/``; the schemas give type checks at compose time; :func:`check_values`
rejects values of the right type that make no sense, before any training starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING

from .algorithms import ALGORITHMS
from .model import ACTIVATIONS, DTYPES
from .tasks import TASK_FAMILIES


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: List[int] = field(default_factory=lambda: [50, 50])
    activation: str = "relu"
    init_std: float = 0.1


@dataclass
class TaskConfig:
    name: str = MISSING
    xmin: float = -3.0
    xmax: float = 3.0
    noise: float = 0.0
    num_points: int = 100
    support_size: int = II(".num_points")  # points that adapt
    query_size: int = 0  # other points that score; 0: the support points score (the notebook)


@dataclass
class StepsTaskConfig(TaskConfig):
    ymin: float = -3.0
    ymax: float = 3.0
    bins: int = 6


@dataclass
class SineTaskConfig(TaskConfig):
    amp_min: float = 0.1
    amp_max: float = 5.0
    phase_min: float = 0.0
    phase_max: float = math.pi


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 0.01


@dataclass
class MomentumConfig(OptimizerConfig):
    beta: float = 0.9


@dataclass
class AdamConfig(OptimizerConfig):
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class AlgorithmConfig:
    name: str = MISSING
    inner_steps: int = 5
    inner_lr: float = 0.1
    first_order: bool = False
    loss_scale: float = 0.5  # objectives are loss_scale * MSE (the notebook: 0.5; the MAML paper: 1.0)


@dataclass
class TrainConfig:
    outer_steps: int = 12000
    meta_batch_size: int = 1
    eval_every: int = 100
    blas_threads: int = 1
    rng: str = "notebook"  # notebook: one legacy RandomState stream; streams: independent SeedSequence streams
    dtype: str = "float64"  # float64 | float32: params, tasks, meta-gradient, optimizer state, evaluation
    figures: bool = False  # draw validation_fits.png at the end of a completed run (~1-2 s per run)


@dataclass
class EvalConfig:
    seed: int = 0             # keys the validation tasks and the test bank (with the task config)
    num_tasks: int = 300      # test bank size
    val_tasks: int = 32       # validation tasks (rng=streams; the notebook mode keeps its single task)
    max_steps: int = 10       # adaptation steps k = 0..max_steps on the test bank
    inner_lr: Optional[float] = None      # None: the training inner_lr
    support_size: Optional[int] = None    # shots per test task; None: task.support_size
    query_size: int = 100     # held-out points per test task that score the MSE


@dataclass
class Config:
    # Typed by the schema each group option extends (see register_configs).
    model: Any = MISSING
    task: Any = MISSING
    optimizer: Any = MISSING
    algorithm: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0


SCHEMAS = {
    ("model", "mlp"): ModelConfig,
    ("task", "steps"): StepsTaskConfig,
    ("task", "sine"): SineTaskConfig,
    ("optimizer", "sgd"): OptimizerConfig,
    ("optimizer", "momentum"): MomentumConfig,
    ("optimizer", "adam"): AdamConfig,
    ("algorithm", "base"): AlgorithmConfig,
}


def register_configs() -> None:
    """Store every schema as ``<group>_<name>_schema`` and the top level as ``maml_sweep_schema``
    (outside any group, so they do not show up as options).

    Each YAML option in ``conf/`` extends its schema through its defaults list, so the YAML holds
    the values and the dataclass the types.
    """
    cs = ConfigStore.instance()
    cs.store(name="maml_sweep_schema", node=Config)
    for (group, name), node in SCHEMAS.items():
        cs.store(name=f"{group}_{name}_schema", node=node)


RNG_MODES = ("notebook", "streams")


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names the key and what is allowed."""


def _finite_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_values(cfg) -> list[str]:
    """Every problem with the values of a composed config, one line each (empty when all is well)."""
    errors = []

    def need(ok: bool, key: str, allowed: str, value: Any) -> None:
        if not ok:
            errors.append(f"{key}={value!r} is not allowed: must be {allowed}")

    m, t, o, a, tr, ev = cfg.model, cfg.task, cfg.optimizer, cfg.algorithm, cfg.train, cfg.eval
    hidden = list(m.hidden)
    need(len(hidden) > 0 and all(h >= 1 for h in hidden), "model.hidden", "a non-empty list of positive layer sizes", hidden)
    need(m.activation in ACTIVATIONS, "model.activation", f"one of {', '.join(sorted(ACTIVATIONS))}", m.activation)
    need(_finite_positive(m.init_std), "model.init_std", "a finite number > 0", m.init_std)
    need(t.name in TASK_FAMILIES, "task.name", f"one of {', '.join(TASK_FAMILIES)}", t.name)
    need(math.isfinite(t.xmin) and math.isfinite(t.xmax) and t.xmin < t.xmax, "task.xmin", f"finite and < task.xmax ({t.xmax})", t.xmin)
    for low, high in (("ymin", "ymax"), ("amp_min", "amp_max"), ("phase_min", "phase_max")):
        if low in t:
            need(math.isfinite(t[low]) and math.isfinite(t[high]) and t[low] <= t[high], f"task.{low}", f"finite and <= task.{high} ({t[high]})", t[low])
    need(math.isfinite(t.noise) and t.noise >= 0, "task.noise", "a finite standard deviation >= 0", t.noise)
    if "bins" in t:
        need(t.bins >= 1, "task.bins", "an integer >= 1", t.bins)
    need(t.num_points >= 1, "task.num_points", "an integer >= 1", t.num_points)
    if t.support_size != t.num_points:  # set on its own rather than taken from num_points
        need(t.support_size >= 1, "task.support_size", "an integer >= 1", t.support_size)
    need(t.query_size >= 0, "task.query_size", "an integer >= 0 (0: score on the support points)", t.query_size)
    need(_finite_positive(o.lr), "optimizer.lr", "a finite number > 0", o.lr)
    for key in ("beta", "beta1", "beta2"):
        if key in o:
            need(0 <= o[key] < 1, f"optimizer.{key}", "in [0, 1)", o[key])
    if "eps" in o:
        need(_finite_positive(o.eps), "optimizer.eps", "a finite number > 0", o.eps)
    need(a.name in ALGORITHMS, "algorithm.name", f"one of {', '.join(ALGORITHMS)}", a.name)
    need(a.inner_steps >= 0, "algorithm.inner_steps", "an integer >= 0", a.inner_steps)
    need(_finite_positive(a.inner_lr), "algorithm.inner_lr", "a finite number > 0", a.inner_lr)
    need(_finite_positive(a.loss_scale), "algorithm.loss_scale", "a finite number > 0", a.loss_scale)
    need(tr.outer_steps >= 1, "train.outer_steps", "an integer >= 1", tr.outer_steps)
    need(tr.meta_batch_size >= 1, "train.meta_batch_size", "an integer >= 1", tr.meta_batch_size)
    need(tr.eval_every >= 1, "train.eval_every", "an integer >= 1", tr.eval_every)
    need(tr.blas_threads >= 0, "train.blas_threads", "an integer >= 0 (0 leaves BLAS as it is)", tr.blas_threads)
    need(tr.rng in RNG_MODES, "train.rng", f"one of {', '.join(RNG_MODES)}", tr.rng)
    need(tr.dtype in DTYPES, "train.dtype", f"one of {', '.join(DTYPES)}", tr.dtype)
    need(ev.seed >= 0, "eval.seed", "an integer >= 0", ev.seed)
    need(ev.num_tasks >= 2, "eval.num_tasks", "an integer >= 2", ev.num_tasks)
    need(ev.val_tasks >= 1, "eval.val_tasks", "an integer >= 1", ev.val_tasks)
    need(ev.max_steps >= 0, "eval.max_steps", "an integer >= 0", ev.max_steps)
    need(ev.inner_lr is None or _finite_positive(ev.inner_lr), "eval.inner_lr", "null (the training inner_lr) or a finite number > 0", ev.inner_lr)
    need(ev.support_size is None or ev.support_size >= 1, "eval.support_size", "null (task.support_size) or an integer >= 1", ev.support_size)
    need(ev.query_size >= 1, "eval.query_size", "an integer >= 1", ev.query_size)
    need(cfg.seed >= 0, "seed", "an integer >= 0", cfg.seed)
    return errors
