"""Config schemas (dataclasses registered in Hydra's ConfigStore, holding every default) and checks.

Hydra composes ``conf/``; the schemas give type checks at compose time; :func:`check_values`
rejects, before any training starts, keys no schema has (``+key`` additions), values of the right
type that make no sense, combinations that cannot mean what they say, and runs too big for the
resource caps.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from .algorithms import ALGORITHMS
from .bounds import check_bounds
from .model import ACTIVATIONS, DTYPES, INIT_SCHEMES, MLP


# Every default lives here, once (Hydra's structured-config pattern). An option's YAML in conf/
# names the option and holds only what it changes; tests/test_config.py keeps the two from drifting.


@dataclass
class ModelConfig:
    """``model=mlp``: an MLP from a scalar input to a scalar output (the notebook's 1-50-50-1)."""
    name: str = MISSING
    hidden: List[int] = field(default_factory=lambda: list(MLP.hidden))  # hidden layer sizes; any number of layers
    activation: str = MLP.activation  # relu | tanh
    init_std: float = 0.1     # every parameter starts ~ N(0, init_std^2) (init=normal)
    init: str = "normal"      # normal | truncated_normal (redrawn beyond 2 init_std; the MAML paper's code)
    zero_biases: bool = False  # true: biases start at 0 and draw nothing (the MAML paper's code)


@dataclass
class TaskConfig:
    """What every task family has. A task is ``num_points`` points drawn together; the last
    ``query_size`` of them score the meta-objective and the first ``num_points - query_size`` (the
    support set) adapt. ``query_size`` 0: all ``num_points`` adapt and score (the notebook's way)."""
    name: str = MISSING
    xmin: float = MISSING     # inputs x ~ U[xmin, xmax)
    xmax: float = MISSING
    noise: float = MISSING    # observation noise standard deviation
    num_points: int = MISSING  # points per task: support + query
    query_size: int = MISSING  # of those, held out to score; 0: the support points score


@dataclass
class StepsTaskConfig(TaskConfig):
    """``task=steps``: the notebook's random piecewise-constant ("perturbed step") functions."""
    xmin: float = -3.0
    xmax: float = 3.0
    noise: float = 0.1
    num_points: int = 100
    query_size: int = 0
    ymin: float = -3.0        # step heights ~ U[ymin, ymax]
    ymax: float = 3.0
    bins: int = 6             # number of steps


@dataclass
class SineTaskConfig(TaskConfig):
    """``task=sine``: the MAML paper's y = A sin(x - phase), K = 10 shots and 10 query points."""
    xmin: float = -5.0
    xmax: float = 5.0
    noise: float = 0.0
    num_points: int = 20
    query_size: int = 10
    amp_min: float = 0.1      # A ~ U[amp_min, amp_max]
    amp_max: float = 5.0
    phase_min: float = 0.0    # phase ~ U[phase_min, phase_max]
    phase_max: float = math.pi


@dataclass
class OptimizerConfig:
    """``optimizer=sgd``: the outer (meta) optimizer, plain gradient descent (the notebook's)."""
    name: str = MISSING
    lr: float = 0.01


@dataclass
class MomentumConfig(OptimizerConfig):
    """``optimizer=momentum``: heavy-ball momentum, v <- beta v + g; p <- p - lr v."""
    lr: float = 0.001
    beta: float = 0.9


@dataclass
class AdamConfig(OptimizerConfig):
    """``optimizer=adam``: Adam with bias correction."""
    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class AlgorithmConfig:
    """Every ``algorithm=`` option: the inner loop's settings (see maml_sweep/algorithms.py)."""
    name: str = MISSING
    inner_steps: int = 5
    inner_lr: float = 0.1
    first_order: bool = False  # drop the second-order terms (maml, metasgd); fomaml is always true
    loss_scale: float = 0.5   # objectives are loss_scale * MSE (the notebook: 0.5; the MAML paper: 1.0)


@dataclass
class TrainConfig:
    outer_steps: int = 12000  # outer (meta) updates
    meta_batch_size: int = 1  # tasks per outer update; their meta-objectives are averaged
    eval_every: int = 100     # log the validation meta-objective every this many outer steps
    blas_threads: int = 1     # BLAS threads per run (small matrices lose from threading); 0 = leave as is
    rng: str = "notebook"     # notebook: one legacy RandomState stream (init, validation task, training tasks);
    #                           streams: independent SeedSequence streams, validation tasks from eval's stream
    max_memory_gb: float = 8.0  # refuse a run whose estimated peak memory (training or evaluation) is larger
    max_hours: float = 24.0     # refuse a run whose estimated time (training + evaluation) is longer
    dtype: str = MLP.dtype    # float64 | float32: params, tasks, meta-gradient, optimizer state and evaluation
    #                           (float64 reproduces the notebook exactly; float32 is ~2x faster)
    figures: Optional[bool] = None  # validation_fits.png (the notebook's figure, ~1-2 s) when a run completes:
    #                           null: drawn for a single run, not for the jobs of a multirun; true/false: always/never


@dataclass
class EvalConfig:
    """The test protocol, run at the end of every completed run (adaptation.csv)."""
    seed: int = 0             # keys the validation tasks and the test bank (with the task config)
    num_tasks: int = 1500     # test bank size (steps: SE of the k=5 mean < 2%, docs/algorithms.md "Bank sizes")
    val_tasks: int = 32       # shared validation tasks (val_mse; rng=streams: also val_meta_objective)
    max_steps: int = 10       # adaptation steps k = 0..max_steps on the test bank
    inner_lr: Optional[float] = None      # None: the training inner_lr
    support_size: Optional[int] = None    # shots per test task; None: the task's support size
    query_size: int = 100     # held-out points per test task that score the (plain) MSE
    report_steps: List[int] = field(default_factory=lambda: [1, 5, 10])  # k of summary.json's test_*_k<k> keys


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


GROUPS = ("model", "task", "optimizer", "algorithm")
SCHEMAS = {  # (group, option) -> the schema the option's YAML extends
    ("model", "mlp"): ModelConfig,
    ("task", "steps"): StepsTaskConfig,
    ("task", "sine"): SineTaskConfig,
    ("optimizer", "sgd"): OptimizerConfig,
    ("optimizer", "momentum"): MomentumConfig,
    ("optimizer", "adam"): AdamConfig,
    **{("algorithm", name): AlgorithmConfig for name in ALGORITHMS},
}


def schema_name(group: str, option: str) -> str:
    """The ConfigStore name of an option's schema (what its YAML's defaults list extends)."""
    return f"{group}_{SCHEMAS[group, option].__name__}"


def register_configs() -> None:
    """Store every schema as ``<group>_<SchemaClass>`` and the top level as ``maml_sweep_schema``
    (outside any group, so they do not show up as options). Each YAML option in ``conf/`` extends
    its schema through its defaults list (``/<group>_<SchemaClass>@_here_``)."""
    cs = ConfigStore.instance()
    cs.store(name="maml_sweep_schema", node=Config)
    for group, option in SCHEMAS:
        cs.store(name=schema_name(group, option), node=SCHEMAS[group, option])


RNG_MODES = ("notebook", "streams")


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names the key and what is allowed."""


def _finite_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


NOTEBOOK_SEEDS = 2**32  # numpy's legacy RandomState (train.rng=notebook) takes seeds 0 .. 2**32 - 1


def check_values(cfg) -> list[str]:
    """Every problem with a composed config, one line each naming the key (empty when all is well):
    keys outside the schemas first, then values out of range and combinations that cannot mean
    what they say, then the resource bounds (:mod:`maml_sweep.bounds`), each stage only when the
    one before found nothing (it relies on it)."""
    return unknown_keys(cfg) or _value_errors(cfg) or check_bounds(cfg, default_config(cfg.task.name))


def default_config(task_name: str) -> SimpleNamespace:
    """The schemas' defaults of every group, with task family ``task_name`` (what :mod:`maml_sweep.bounds`
    measures a config's growth against)."""
    return SimpleNamespace(model=ModelConfig(), task=SCHEMAS["task", task_name](), algorithm=AlgorithmConfig(),
                           train=TrainConfig(), eval=EvalConfig())


def unknown_keys(cfg) -> list[str]:
    """Keys the schemas do not have, or lack. Hydra lets ``+group.key=value`` add any key even to a
    typed node (it adds with the struct flag lifted), so the composed config is checked here, before
    a run starts. A group's schema is the one its option's ``name`` registers; a typed node of
    another schema (``task.name=sine`` on ``task=steps``) is refused. Untyped configs (read back from
    a run directory) are checked the same way."""
    errors = []

    def match(path: str, node, schema, what: str) -> None:
        allowed = [f.name for f in dataclasses.fields(schema)]
        for key in node:
            if key not in allowed:
                errors.append(f"{path}{key}={node[key]!r} is not allowed: Key '{key}' not in '{schema.__name__}' "
                              f"({what} has: {', '.join(allowed)})")
        errors.extend(f"{path}{key} is missing: {schema.__name__} needs it" for key in allowed if key not in node)

    for group in GROUPS:
        node = cfg.get(group)
        name = node.get("name") if OmegaConf.is_dict(node) else None
        schema = SCHEMAS.get((group, name))
        typed = OmegaConf.get_type(node) if OmegaConf.is_dict(node) else None
        options = sorted(o for g, o in SCHEMAS if g == group)
        if schema is None:
            errors.append(f"{group}.name={name!r} is not allowed: must be one of {', '.join(options)} "
                          f"(choose the option, e.g. {group}={options[0]})")
        elif typed is not dict and typed is not schema:
            errors.append(f"{group}.name={name!r} is not allowed: the chosen {group} option's schema is "
                          f"{getattr(typed, '__name__', typed)}, not {schema.__name__} (choose {group}={name} instead)")
        else:
            match(f"{group}.", node, schema, f"{group}={name}")
    for key, schema in (("train", TrainConfig), ("eval", EvalConfig)):
        if OmegaConf.is_dict(cfg.get(key)):
            match(f"{key}.", cfg[key], schema, key)
    match("", {k: cfg[k] for k in cfg if k != "hydra"}, Config, "the top level")
    return errors


def _value_errors(cfg) -> list[str]:
    """Values out of range and combinations that cannot mean what they say."""
    errors = []

    def need(ok: bool, key: str, allowed: str, value: Any) -> None:
        if not ok:
            errors.append(f"{key}={value!r} is not allowed: must be {allowed}")

    def ordered(group: str, node, low: str, high: str, strict: bool = False) -> None:
        """``low`` < (or <=) ``high``, both finite, and their difference too (no overflow)."""
        lo, hi = node[low], node[high]
        ok = all(math.isfinite(v) for v in (lo, hi, hi - lo)) and (lo < hi if strict else lo <= hi)
        need(ok, f"{group}.{low}", f"finite, {'<' if strict else '<='} {group}.{high} ({hi!r}), "
             "and their difference finite", lo)

    m, t, o, a, tr, ev = cfg.model, cfg.task, cfg.optimizer, cfg.algorithm, cfg.train, cfg.eval
    hidden = list(m.hidden)
    need(len(hidden) > 0 and all(h >= 1 for h in hidden), "model.hidden", "a non-empty list of positive layer sizes", hidden)
    need(m.activation in ACTIVATIONS, "model.activation", f"one of {', '.join(sorted(ACTIVATIONS))}", m.activation)
    need(_finite_positive(m.init_std), "model.init_std", "a finite number > 0", m.init_std)
    need(m.init in INIT_SCHEMES, "model.init", f"one of {', '.join(INIT_SCHEMES)}", m.init)

    ordered("task", t, "xmin", "xmax", strict=True)
    family = SCHEMAS["task", t.name]  # unknown_keys made sure the name and the schema agree
    if family is StepsTaskConfig:
        ordered("task", t, "ymin", "ymax")
        need(t.bins >= 1, "task.bins", "an integer >= 1", t.bins)
    elif family is SineTaskConfig:
        ordered("task", t, "amp_min", "amp_max")
        ordered("task", t, "phase_min", "phase_max")
    need(math.isfinite(t.noise) and t.noise >= 0, "task.noise", "a finite standard deviation >= 0", t.noise)
    need(t.num_points >= 1, "task.num_points", "an integer >= 1", t.num_points)
    need(0 <= t.query_size < max(t.num_points, 1), "task.query_size",
         f"an integer >= 0 (0: the support points score) and < task.num_points ({t.num_points}), "
         "so that at least one point adapts", t.query_size)

    need(_finite_positive(o.lr), "optimizer.lr", "a finite number > 0", o.lr)
    if SCHEMAS["optimizer", o.name] is MomentumConfig:
        need(0 <= o.beta < 1, "optimizer.beta", "in [0, 1)", o.beta)
    if SCHEMAS["optimizer", o.name] is AdamConfig:
        need(0 <= o.beta1 < 1, "optimizer.beta1", "in [0, 1)", o.beta1)
        need(0 <= o.beta2 < 1, "optimizer.beta2", "in [0, 1)", o.beta2)
        need(_finite_positive(o.eps), "optimizer.eps", "a finite number > 0", o.eps)

    need(a.inner_steps >= 0, "algorithm.inner_steps", "an integer >= 0", a.inner_steps)
    need(_finite_positive(a.inner_lr), "algorithm.inner_lr", "a finite number > 0", a.inner_lr)
    need(_finite_positive(a.loss_scale), "algorithm.loss_scale", "a finite number > 0", a.loss_scale)
    fixed = ALGORITHMS[a.name]().fixed_first_order
    choosers = [n for n in ALGORITHMS if ALGORITHMS[n]().fixed_first_order is None]
    need(fixed is None or a.first_order == fixed, "algorithm.first_order",
         f"{str(fixed).lower()} with algorithm={a.name} (only {' and '.join(choosers)} let it choose)", a.first_order)

    need(tr.outer_steps >= 1, "train.outer_steps", "an integer >= 1", tr.outer_steps)
    need(tr.meta_batch_size >= 1, "train.meta_batch_size", "an integer >= 1", tr.meta_batch_size)
    need(tr.eval_every >= 1, "train.eval_every", "an integer >= 1", tr.eval_every)
    need(tr.blas_threads >= 0, "train.blas_threads", "an integer >= 0 (0 leaves BLAS as it is)", tr.blas_threads)
    need(tr.rng in RNG_MODES, "train.rng", f"one of {', '.join(RNG_MODES)}", tr.rng)
    need(_finite_positive(tr.max_memory_gb), "train.max_memory_gb", "a finite number > 0", tr.max_memory_gb)
    need(_finite_positive(tr.max_hours), "train.max_hours", "a finite number > 0", tr.max_hours)
    need(tr.dtype in DTYPES, "train.dtype", f"one of {', '.join(DTYPES)}", tr.dtype)

    need(ev.seed >= 0, "eval.seed", "an integer >= 0", ev.seed)
    need(ev.num_tasks >= 2, "eval.num_tasks", "an integer >= 2", ev.num_tasks)
    need(ev.val_tasks >= 1, "eval.val_tasks", "an integer >= 1", ev.val_tasks)
    need(ev.max_steps >= 0, "eval.max_steps", "an integer >= 0", ev.max_steps)
    need(ev.inner_lr is None or _finite_positive(ev.inner_lr), "eval.inner_lr", "null (the training inner_lr) or a finite number > 0", ev.inner_lr)
    need(ev.inner_lr is None or not ALGORITHMS[a.name]().learns_inner_lr, "eval.inner_lr",
         f"null with algorithm={a.name} (it adapts with its learned rates)", ev.inner_lr)
    need(ev.support_size is None or ev.support_size >= 1, "eval.support_size", "null (the task's support size) or an integer >= 1", ev.support_size)
    need(ev.query_size >= 1, "eval.query_size", "an integer >= 1", ev.query_size)
    steps = list(ev.report_steps)
    need(len(steps) > 0 and all(0 <= k <= ev.max_steps for k in steps), "eval.report_steps",
         f"a non-empty list of steps k in 0..eval.max_steps ({ev.max_steps})", steps)
    if tr.rng == "notebook":
        need(0 <= cfg.seed < NOTEBOOK_SEEDS, "seed", "an integer in [0, 2**32) with train.rng=notebook", cfg.seed)
    else:
        need(cfg.seed >= 0, "seed", "an integer >= 0", cfg.seed)
    return errors
