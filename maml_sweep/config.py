"""Config schemas (dataclasses registered in Hydra's ConfigStore, holding every default) and checks.

Hydra composes ``conf/``; the schemas give type checks at compose time; :func:`check_values`
rejects, before any training starts, keys no schema has (``+key`` additions), values of the right
type that make no sense, combinations that cannot mean what they say, and runs too big for the
resource caps.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from .algorithms import ALGORITHMS, AlgorithmConfig  # noqa: F401 (AlgorithmConfig: every algorithm's base schema)
from .bounds import check_bounds, estimates
from .checks import Checks, finite_positive
from .model import ACTIVATIONS, DTYPES, INIT_SCHEMES, MLP
from .optim import OPTIMIZERS, AdamConfig, MomentumConfig, OptimizerConfig  # noqa: F401
from .tasks import TASK_FAMILIES, GPTaskConfig, SineTaskConfig, StepsTaskConfig, TaskConfig  # noqa: F401

# Every default lives in a schema, once (Hydra's structured-config pattern): the top level's and the
# model's here, each task family's next to its sampler (maml_sweep/tasks.py), each optimizer's and
# algorithm's next to its class (maml_sweep/optim.py, maml_sweep/algorithms.py). An option's YAML in
# conf/ names the option and holds only what it changes; tests/test_config.py keeps the two from drifting.


@dataclass
class ModelConfig:
    """``model=mlp``: an MLP from the task's inputs (task.dim, 1 for most families) to a scalar output
    (the notebook's 1-50-50-1)."""
    name: str = MISSING
    hidden: List[int] = field(default_factory=lambda: list(MLP.hidden))  # hidden layer sizes; any number of layers
    activation: str = MLP.activation  # relu | tanh
    init_std: float = 0.1     # every parameter starts ~ N(0, init_std^2) (init=normal)
    init: str = "normal"      # normal | truncated_normal (redrawn beyond 2 init_std; the MAML paper's code)
    zero_biases: bool = False  # true: biases start at 0 and draw nothing (the MAML paper's code)


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
    val_tasks: int = 250      # shared validation tasks (val_mse): a 5% difference is 2 paired SEs (docs/algorithms.md)
    val_every: int = 1000     # outer steps between shared validations (at evaluation steps; always the last step)
    max_steps: int = 10       # adaptation steps k = 0..max_steps on the test bank
    inner_lr: Optional[float] = None      # None: the training inner_lr
    support_size: Optional[int] = None    # shots per test task; None: the task's support size
    query_size: int = 100     # held-out points per test task that score the (plain) MSE
    report_steps: List[int] = field(default_factory=lambda: [1, 5, 10])  # k of summary.json's test_*_k<k> keys
    val_step: Optional[int] = None  # k that val_mse (selection) scores; None: algorithm.inner_steps


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
_OWN_SCHEMAS = {("model", "mlp"): ModelConfig}  # (group, option) -> schema, for options declared here


class _Schemas(Mapping):
    """(group, option) -> the schema the option's YAML extends: this module's, and each registered
    task family's, optimizer's and algorithm's own (read from their registries at every use, so one
    registered later is known)."""

    def _all(self) -> dict:
        return {**_OWN_SCHEMAS, **{("task", n): f.schema for n, f in TASK_FAMILIES.items()},
                **{("optimizer", n): o.schema for n, o in OPTIMIZERS.items()},
                **{("algorithm", n): a.schema for n, a in ALGORITHMS.items()}}

    def __getitem__(self, key):
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


SCHEMAS = _Schemas()


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


NOTEBOOK_SEEDS = 2**32  # numpy's legacy RandomState (train.rng=notebook) takes seeds 0 .. 2**32 - 1


def check_values(cfg) -> list[str]:
    """Every problem with a composed config, one line each naming the key (empty when all is well):
    keys outside the schemas first, then values out of range and combinations that cannot mean
    what they say, then the resource bounds (:mod:`maml_sweep.bounds`), each stage only when the
    one before found nothing (it relies on it)."""
    return unknown_keys(cfg) or _huge_integers(cfg) or _value_errors(cfg) or check_bounds(cfg, default_config(cfg))


def _huge_integers(cfg) -> list[str]:
    """Integers that do not fit in 64 bits (``train.outer_steps=10**400``: arithmetic on them overflows)."""
    tree = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else dict(cfg)
    tree.pop("hydra", None)
    errors = []

    def walk(value, name: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{name}[{i}]")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            errors.append(f"{name}={value} is not allowed: must be an integer below 2**63")

    walk(tree, "")
    return errors


def resource_estimates(cfg) -> list:
    """:func:`maml_sweep.bounds.estimates` of a composed config (against its schemas' defaults)."""
    return estimates(cfg, default_config(cfg))


def default_config(cfg) -> SimpleNamespace:
    """The schemas' defaults for ``cfg``'s task family and algorithm (what the resource bounds
    compare a config against)."""
    return SimpleNamespace(model=ModelConfig(), task=SCHEMAS["task", cfg.task.name](),
                           algorithm=SCHEMAS["algorithm", cfg.algorithm.name](), train=TrainConfig(),
                           eval=EvalConfig())


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
        if group not in cfg or OmegaConf.is_missing(cfg, group):  # ~model on the command line
            options = sorted(o for g, o in SCHEMAS if g == group)
            errors.append(f"{group} is missing: choose one of {', '.join(f'{group}={o}' for o in options)}")
            continue
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
    match("", {k: None if OmegaConf.is_missing(cfg, k) else cfg[k] for k in cfg if k != "hydra"}, Config,
          "the top level")
    return errors


def _value_errors(cfg) -> list[str]:
    """Values out of range and combinations that cannot mean what they say."""
    c = Checks()
    need, ordered = c.need, c.ordered

    m, t, o, a, tr, ev = cfg.model, cfg.task, cfg.optimizer, cfg.algorithm, cfg.train, cfg.eval
    hidden = list(m.hidden)
    need(len(hidden) > 0 and all(h >= 1 for h in hidden), "model.hidden", "a non-empty list of positive layer sizes",
         hidden)
    need(m.activation in ACTIVATIONS, "model.activation", f"one of {', '.join(sorted(ACTIVATIONS))}", m.activation)
    need(finite_positive(m.init_std), "model.init_std", "a finite number > 0", m.init_std)
    need(m.init in INIT_SCHEMES, "model.init", f"one of {', '.join(INIT_SCHEMES)}", m.init)

    ordered("task", t, "xmin", "xmax", strict=True)
    need(math.isfinite(t.noise) and t.noise >= 0, "task.noise", "a finite standard deviation >= 0", t.noise)
    need(t.num_points >= 1, "task.num_points", "an integer >= 1", t.num_points)
    need(0 <= t.query_size < max(t.num_points, 1), "task.query_size",
         f"an integer >= 0 (0: the support points score) and < task.num_points ({t.num_points}), "
         "so that at least one point adapts", t.query_size)
    TASK_FAMILIES[t.name].check(cfg, c)  # the family's own (unknown_keys made sure the name and schema agree)

    need(finite_positive(o.lr), "optimizer.lr", "a finite number > 0", o.lr)
    OPTIMIZERS[o.name].check(cfg, c)

    need(a.inner_steps >= 0, "algorithm.inner_steps", "an integer >= 0", a.inner_steps)
    need(finite_positive(a.inner_lr), "algorithm.inner_lr", "a finite number > 0", a.inner_lr)
    need(finite_positive(a.loss_scale), "algorithm.loss_scale", "a finite number > 0", a.loss_scale)
    algorithm = ALGORITHMS[a.name]
    fixed = algorithm.fixed_first_order
    choosers = [n for n in ALGORITHMS if ALGORITHMS[n].fixed_first_order is None]
    need(fixed is None or a.first_order == fixed, "algorithm.first_order",
         f"{str(fixed).lower()} with algorithm={a.name} (only {' and '.join(choosers)} let it choose)", a.first_order)
    algorithm.check(cfg, c)

    need(tr.outer_steps >= 1, "train.outer_steps", "an integer >= 1", tr.outer_steps)
    need(tr.meta_batch_size >= 1, "train.meta_batch_size", "an integer >= 1", tr.meta_batch_size)
    need(tr.eval_every >= 1, "train.eval_every", "an integer >= 1", tr.eval_every)
    need(tr.blas_threads >= 0, "train.blas_threads", "an integer >= 0 (0 leaves BLAS as it is)", tr.blas_threads)
    need(tr.rng in RNG_MODES, "train.rng", f"one of {', '.join(RNG_MODES)}", tr.rng)
    need(finite_positive(tr.max_memory_gb), "train.max_memory_gb", "a finite number > 0", tr.max_memory_gb)
    need(finite_positive(tr.max_hours), "train.max_hours", "a finite number > 0", tr.max_hours)
    need(tr.dtype in DTYPES, "train.dtype", f"one of {', '.join(DTYPES)}", tr.dtype)

    need(ev.seed >= 0, "eval.seed", "an integer >= 0", ev.seed)
    need(ev.num_tasks >= 2, "eval.num_tasks", "an integer >= 2", ev.num_tasks)
    need(ev.val_tasks >= 1, "eval.val_tasks", "an integer >= 1", ev.val_tasks)
    need(ev.max_steps >= 0, "eval.max_steps", "an integer >= 0", ev.max_steps)
    need(ev.inner_lr is None or finite_positive(ev.inner_lr), "eval.inner_lr",
         "null (the training inner_lr) or a finite number > 0", ev.inner_lr)
    need(ev.inner_lr is None or not algorithm.learns_inner_lr, "eval.inner_lr",
         f"null with algorithm={a.name} (it adapts with its learned rates)", ev.inner_lr)
    need(ev.support_size is None or ev.support_size >= 1, "eval.support_size",
         "null (the task's support size) or an integer >= 1", ev.support_size)
    need(ev.query_size >= 1, "eval.query_size", "an integer >= 1", ev.query_size)
    need(ev.val_every >= 1, "eval.val_every", "an integer >= 1", ev.val_every)
    need(ev.val_step is None or 0 <= ev.val_step <= ev.max_steps, "eval.val_step",
         f"null (algorithm.inner_steps) or a step k in 0..eval.max_steps ({ev.max_steps})", ev.val_step)
    steps = list(ev.report_steps)
    need(len(steps) > 0 and all(0 <= k <= ev.max_steps for k in steps), "eval.report_steps",
         f"a non-empty list of steps k in 0..eval.max_steps ({ev.max_steps})", steps)
    if tr.rng == "notebook":
        need(0 <= cfg.seed < NOTEBOOK_SEEDS, "seed", "an integer in [0, 2**32) with train.rng=notebook", cfg.seed)
    else:
        need(cfg.seed >= 0, "seed", "an integer >= 0", cfg.seed)
    return c.errors
