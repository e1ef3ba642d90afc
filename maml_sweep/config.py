"""Config schemas (dataclasses registered in Hydra's ConfigStore) and value checks.

Hydra composes ``conf/``; the schemas give type checks at compose time; :func:`check_values`
rejects values of the right type that make no sense, before any training starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .model import ACTIVATIONS


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: List[int] = field(default_factory=lambda: [50, 50])
    activation: str = "relu"
    init_std: float = 0.1


@dataclass
class TaskConfig:
    name: str = "steps"
    xmin: float = -3.0
    xmax: float = 3.0
    ymin: float = -3.0
    ymax: float = 3.0
    noise: float = 0.1
    bins: int = 6
    num_points: int = 100


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
    name: str = "maml"
    inner_steps: int = 5
    inner_lr: float = 0.1
    first_order: bool = False


@dataclass
class TrainConfig:
    outer_steps: int = 12000
    meta_batch_size: int = 1
    eval_every: int = 100
    blas_threads: int = 1


@dataclass
class Config:
    # Typed by the schema each group option extends (see register_configs).
    model: Any = MISSING
    task: Any = MISSING
    optimizer: Any = MISSING
    algorithm: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


SCHEMAS = {
    ("model", "mlp"): ModelConfig,
    ("task", "steps"): TaskConfig,
    ("optimizer", "sgd"): OptimizerConfig,
    ("optimizer", "momentum"): MomentumConfig,
    ("optimizer", "adam"): AdamConfig,
    ("algorithm", "maml"): AlgorithmConfig,
}


def register_configs() -> None:
    """Store every schema under ``schema/<group>/<name>`` and the top level as ``maml_sweep_schema``.

    Each YAML option in ``conf/`` extends its schema through its defaults list, so the YAML holds
    the values and the dataclass the types.
    """
    cs = ConfigStore.instance()
    cs.store(name="maml_sweep_schema", node=Config)
    for (group, name), node in SCHEMAS.items():
        cs.store(group=f"schema/{group}", name=name, node=node)


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

    m, t, o, a, tr = cfg.model, cfg.task, cfg.optimizer, cfg.algorithm, cfg.train
    hidden = list(m.hidden)
    need(len(hidden) > 0 and all(h >= 1 for h in hidden), "model.hidden", "a non-empty list of positive layer sizes", hidden)
    need(m.activation in ACTIVATIONS, "model.activation", f"one of {', '.join(sorted(ACTIVATIONS))}", m.activation)
    need(_finite_positive(m.init_std), "model.init_std", "a finite number > 0", m.init_std)
    need(math.isfinite(t.xmin) and math.isfinite(t.xmax) and t.xmin < t.xmax, "task.xmin", f"finite and < task.xmax ({t.xmax})", t.xmin)
    need(math.isfinite(t.ymin) and math.isfinite(t.ymax) and t.ymin <= t.ymax, "task.ymin", f"finite and <= task.ymax ({t.ymax})", t.ymin)
    need(math.isfinite(t.noise) and t.noise >= 0, "task.noise", "a finite standard deviation >= 0", t.noise)
    need(t.bins >= 1, "task.bins", "an integer >= 1", t.bins)
    need(t.num_points >= 1, "task.num_points", "an integer >= 1", t.num_points)
    need(_finite_positive(o.lr), "optimizer.lr", "a finite number > 0", o.lr)
    for key in ("beta", "beta1", "beta2"):
        if key in o:
            need(0 <= o[key] < 1, f"optimizer.{key}", "in [0, 1)", o[key])
    if "eps" in o:
        need(_finite_positive(o.eps), "optimizer.eps", "a finite number > 0", o.eps)
    need(a.inner_steps >= 0, "algorithm.inner_steps", "an integer >= 0", a.inner_steps)
    need(_finite_positive(a.inner_lr), "algorithm.inner_lr", "a finite number > 0", a.inner_lr)
    need(tr.outer_steps >= 1, "train.outer_steps", "an integer >= 1", tr.outer_steps)
    need(tr.meta_batch_size >= 1, "train.meta_batch_size", "an integer >= 1", tr.meta_batch_size)
    need(tr.eval_every >= 1, "train.eval_every", "an integer >= 1", tr.eval_every)
    need(tr.blas_threads >= 0, "train.blas_threads", "an integer >= 0 (0 leaves BLAS as it is)", tr.blas_threads)
    need(cfg.seed >= 0, "seed", "an integer >= 0", cfg.seed)
    return errors
