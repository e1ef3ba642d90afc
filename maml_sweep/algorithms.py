"""Meta-learning algorithms, by name (:data:`ALGORITHMS`, ``algorithm=<name>``). Each is a class
following the :class:`Algorithm` protocol: it declares its config ``schema`` (:class:`AlgorithmConfig`
or a subclass holding its own hyperparameters), is built from that config (``cls(cfg.algorithm)``),
turns a meta-batch of tasks into an outer-update direction for its meta-parameters and knows how to
adapt them to one task. docs/extending.md shows how to add one.

Meta-parameters are a dict: the model's parameters (see :mod:`maml_sweep.model`) plus any the
algorithm learns besides (Meta-SGD's per-parameter inner learning rates ``lr_<name>``).

| name      | outer direction                                            | inner loop adapts |
|-----------|------------------------------------------------------------|-------------------|
| maml      | gradient through the unrolled inner loop (second order)    | all parameters    |
| fomaml    | the same without second-order terms                        | all parameters    |
| anil      | second-order gradient, inner loop on the output layer only | output layer      |
| metasgd   | gradient wrt parameters and per-parameter inner rates      | all, learned rates|
| reptile   | params - adapted params, averaged over tasks               | all parameters    |
| pretrain  | gradient of the loss on all task points, no inner loop     | all (fine-tuning) |
| scratch   | none: the random initialisation is kept                    | all (fine-tuning) |
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence

import numpy as np
from autograd import value_and_grad
from autograd.tracer import isbox
from omegaconf import MISSING

from . import batched, fast, fast_anil, maml
from .checks import Checks, registrar
from .maml import InnerLoop
from .model import MLP
from .tasks import Task


@dataclass
class AlgorithmConfig:
    """Every ``algorithm=`` option's schema, or the base of one with hyperparameters of its own: the
    inner loop's settings (see maml_sweep/algorithms.py)."""
    name: str = MISSING
    inner_steps: int = 5
    inner_lr: float = 0.1
    first_order: bool = False  # drop the second-order terms (maml, metasgd); fomaml is always true
    loss_scale: float = 0.5   # objectives are loss_scale * MSE (the notebook: 0.5; the MAML paper: 1.0)


class Algorithm(Protocol):
    """What the trainer, the evaluation and ``config.check_values`` use of an algorithm. Plain class
    attributes: ``schema`` (its config dataclass), ``label`` (its init's name in adaptation.csv),
    ``learns_inner_lr`` (adapts with learned rates, whatever eval.inner_lr says),
    ``fixed_first_order`` (what algorithm.first_order must be; None: the config chooses). Built
    by ``cls(config)`` from a node of its schema (None: the schema's defaults)."""

    schema: ClassVar[type]
    label: ClassVar[str]
    learns_inner_lr: ClassVar[bool]
    fixed_first_order: ClassVar[bool | None]

    def __init__(self, config=None) -> None: ...

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        """Its own value checks on the composed config (its hyperparameters): ``c.need(...)``."""

    def caveats(self, inner: InnerLoop) -> list[str]: ...

    def init(self, model: MLP, params: dict, inner: InnerLoop) -> dict: ...

    def direction(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop): ...

    def objective(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop) -> float: ...

    def adapt(self, model: MLP, meta: dict, task: Task, inner: InnerLoop) -> list[dict]: ...

    def adaptation_mse(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop) -> np.ndarray: ...


ALGORITHMS: dict[str, type[Algorithm]] = {}  # algorithm=<name> -> its class


register_algorithm = registrar(ALGORITHMS)  # @register_algorithm("name"): algorithm=name runs the class


def model_params(model: MLP, meta: dict) -> dict:
    """The model's own parameters out of a meta-parameter dict."""
    return {k: meta[k] for k in model.names}


def pooled(tasks: Sequence[Task]) -> list[Task]:
    """Each task with its support and query points as one support set (and no inner loop, the
    meta-objective of these is the loss on all of a task's points)."""
    return [task if task.x_query is None else
            Task(np.concatenate([task.x, task.x_query]), np.concatenate([task.y, task.y_query]))
            for task in tasks]


def _fast_applies(model: MLP, inner: InnerLoop) -> bool:
    """The fast path's tape covers this model and inner loop (all parameters adapted)."""
    return fast.supports(model) and inner.only is None


def _untraced(params: dict) -> bool:
    """No autograd box among the params: a numpy-only path may run."""
    return not any(isbox(v) for v in params.values())


def meta_value_and_grad(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop):
    """The meta-gradient: a fast batched path where one applies (all parameters adapted:
    :mod:`fast`; the head only, ANIL: :mod:`fast_anil`), else the autograd reference."""
    if _fast_applies(model, inner):
        return fast.fast_meta_value_and_grad(model, params, tasks, inner)
    if fast_anil.applies(model, inner):
        return fast_anil.value_and_grad(model, params, tasks, inner)
    return maml.meta_value_and_grad(model.predict, params, tasks, inner)


def meta_objective(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop, lrs=None):
    """Mean meta-objective (differentiable by autograd): fast path where it applies."""
    if _fast_applies(model, inner):
        return fast.meta_loss(model, params, tasks, inner, lr=lrs)
    if lrs is None and fast_anil.applies(model, inner) and _untraced(params):
        return fast_anil.meta_objective(model, params, tasks, inner)
    return maml.batch_meta_objective(model.predict, params, tasks, inner, lrs)


def adaptation_mse(model: MLP, params: dict, tasks: Sequence[Task], inner: InnerLoop, lrs=None) -> np.ndarray:
    """Test-bank adaptation curves (T, steps + 1): the fast path's tape where it applies (all
    parameters adapted), ANIL's head-only path, else the batched numpy loop; all float64 MSE."""
    if _fast_applies(model, inner):
        return fast.adaptation_mse(model, params, tasks, inner, lrs)
    if lrs is None and fast_anil.applies(model, inner):
        return fast_anil.adaptation_mse(model, params, tasks, inner)
    return batched.adaptation_mse(model, params, tasks, inner, lrs)


@register_algorithm("maml")
class MAML:
    """Model-Agnostic Meta-Learning (Finn et al. 2017), second order unless algorithm.first_order;
    the base every algorithm here extends."""

    schema = AlgorithmConfig
    label = "trained"  # the init's name in adaptation.csv
    learns_inner_lr = False  # True: adapts with learned rates, whatever eval.inner_lr says
    fixed_first_order = None  # what algorithm.first_order must be; None: the config chooses

    def __init__(self, config=None):
        self.config = self.schema() if config is None else config

    @classmethod
    def check(cls, cfg, c: Checks) -> None:
        """Its own value checks (none here; algorithm.* common to all: ``config.check_values``)."""

    def caveats(self, inner: InnerLoop) -> list[str]:
        """Warnings about running this algorithm with ``inner`` (none by default)."""
        return []

    def inner(self, model: MLP, inner: InnerLoop) -> InnerLoop:
        """The inner loop this algorithm runs, from the configured one."""
        return inner

    def init(self, model: MLP, params: dict, inner: InnerLoop) -> dict:
        """Meta-parameters from freshly drawn model parameters."""
        return dict(params)

    def direction(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop):
        """(training loss, outer-update direction as a dict like ``meta``) for a meta-batch."""
        return meta_value_and_grad(model, meta, tasks, self.inner(model, inner))

    def objective(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop) -> float:
        """Mean query loss after this algorithm's inner loop (the validation meta-objective)."""
        return float(meta_objective(model, model_params(model, meta), tasks, self.inner(model, inner)))

    def adapt(self, model: MLP, meta: dict, task: Task, inner: InnerLoop) -> list[dict]:
        """Model parameters along the inner loop on ``task``: [initial, ..., adapted]."""
        return maml.adapt(model.predict, model_params(model, meta), task, self.inner(model, inner))

    def adaptation_mse(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop) -> np.ndarray:
        """Plain MSE on each task's query set after k = 0..inner.steps steps, shape (T, steps + 1)."""
        return adaptation_mse(model, model_params(model, meta), tasks, self.inner(model, inner))


@register_algorithm("fomaml")
class FOMAML(MAML):
    """First-order MAML: the meta-gradient without second-order terms, whatever the inner loop says."""

    fixed_first_order = True

    def inner(self, model: MLP, inner: InnerLoop) -> InnerLoop:
        return dataclasses.replace(inner, first_order=True)


@register_algorithm("anil")
class ANIL(MAML):
    """Almost No Inner Loop (Raghu et al. 2019): the inner loop adapts the output layer only."""

    fixed_first_order = False  # always second order

    def inner(self, model: MLP, inner: InnerLoop) -> InnerLoop:
        return dataclasses.replace(inner, first_order=False, only=tuple(model.names[-2:]))


@register_algorithm("metasgd")
class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): per-parameter inner learning rates ``lr_<name>``, learned too."""

    learns_inner_lr = True  # algorithm.inner_lr only initialises the rates; eval.inner_lr has no effect

    @staticmethod
    def rates(model: MLP, meta: dict) -> dict:
        return {k: meta[f"lr_{k}"] for k in model.names}

    def init(self, model: MLP, params: dict, inner: InnerLoop) -> dict:
        rates = {f"lr_{k}": np.full(np.shape(v), float(inner.lr), dtype=np.asarray(v).dtype)
                 for k, v in params.items()}
        return {**params, **rates}

    def direction(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop):
        if _fast_applies(model, inner):  # one pass, no autograd: d/d params and d/d rates together
            value, g, g_lr = fast.fast_meta_value_and_grad_lrs(model, model_params(model, meta),
                                                                self.rates(model, meta), tasks, inner)
            return value, {**g, **{f"lr_{k}": v for k, v in g_lr.items()}}
        return value_and_grad(
            lambda m: meta_objective(model, model_params(model, m), tasks, inner, self.rates(model, m)))(meta)

    def objective(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop) -> float:
        return float(meta_objective(model, model_params(model, meta), tasks, inner, self.rates(model, meta)))

    def adapt(self, model: MLP, meta: dict, task: Task, inner: InnerLoop) -> list[dict]:
        return maml.adapt(model.predict, model_params(model, meta), task, inner, self.rates(model, meta))

    def adaptation_mse(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop) -> np.ndarray:
        return adaptation_mse(model, model_params(model, meta), tasks, inner, self.rates(model, meta))


@register_algorithm("reptile")
class Reptile(MAML):
    """Reptile (Nichol et al. 2018): the direction is params - adapted params, averaged over the
    meta-batch; with SGD of rate eps that is Reptile's interpolation towards the adapted params.
    With one inner step, params - adapted = inner_lr x the support-loss gradient: joint training
    on the pooled support sets (Nichol et al., Sec. 5), no meta-learning."""

    def caveats(self, inner: InnerLoop) -> list[str]:
        if inner.steps == 1:
            return ["algorithm=reptile with algorithm.inner_steps=1 is joint training, not meta-learning: "
                    "its direction is inner_lr x the gradient of the support loss (compare algorithm=pretrain); "
                    "Reptile needs inner_steps > 1"]
        return []

    fixed_first_order = False  # no meta-gradient: nothing to make first order

    def direction(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop):
        inner = self.inner(model, inner)
        if _fast_applies(model, inner):
            loss, adapted = fast.adapted_mean(model, meta, tasks, inner)
            return loss, {k: meta[k] - adapted[k] for k in meta}
        adapted = batched.adapt_many(model, meta, tasks, inner)
        xq, yq = batched.stack(tasks)[2:]
        loss = inner.loss_scale * np.mean((batched.forward(model, adapted, xq) - yq) ** 2)
        return float(loss), {k: meta[k] - adapted[k].mean(axis=0) for k in meta}


@register_algorithm("pretrain")
class Pretrain(MAML):
    """Baseline: one model trained on the pooled tasks (no inner loop), fine-tuned per task."""

    fixed_first_order = False  # no inner loop in training

    label = "pretrain"

    def direction(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop):
        return meta_value_and_grad(model, meta, pooled(tasks), dataclasses.replace(inner, steps=0))


@register_algorithm("scratch")
class Scratch(MAML):
    """Baseline: the random initialisation, never meta-trained, fine-tuned per task."""

    fixed_first_order = False  # never trained

    label = "scratch"

    def direction(self, model: MLP, meta: dict, tasks: Sequence[Task], inner: InnerLoop):
        loss = meta_objective(model, meta, pooled(tasks), dataclasses.replace(inner, steps=0))
        return loss, {k: np.zeros_like(np.asarray(v)) for k, v in meta.items()}
