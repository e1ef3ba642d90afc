"""Each algorithm's outer direction: learning on a short run, and checks against definitions."""
import dataclasses

import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten

from maml_sweep.algorithms import ALGORITHMS, model_params
from maml_sweep.config import SineTaskConfig, StepsTaskConfig
from maml_sweep.maml import InnerLoop, inner_loss
from maml_sweep.model import MLP
from maml_sweep.optim import SGD, Adam
from maml_sweep.tasks import make_tasks

MODEL = MLP((12, 12), "tanh")
INNER = InnerLoop(lr=0.05, steps=2, loss_scale=0.5)
DIST = make_tasks(StepsTaskConfig(name="steps", num_points=30, query_size=15, bins=3), "float64")


def tasks(seed, n):
    rng = np.random.RandomState(seed)
    return [DIST.sample(rng) for _ in range(n)]


def meta_objective(algorithm, meta, batch, inner=INNER):
    total = 0.0
    for task in batch:
        adapted = algorithm.adapt(MODEL, meta, task, inner)[-1]
        total += inner_loss(MODEL.predict, adapted, *task.query, inner.loss_scale)
    return total / len(batch)


def fresh(algorithm, seed=0):
    return algorithm.init(MODEL, MODEL.init(np.random.RandomState(seed), 0.3), INNER)


@pytest.mark.parametrize("name", [n for n in ALGORITHMS if n != "scratch"])
def test_each_algorithm_lowers_its_objective_on_held_out_tasks_in_a_short_run(name):
    """The meta-objective for the meta-learners; pretrain's is the loss on pooled task data."""
    algorithm = ALGORITHMS[name]()
    meta = fresh(algorithm)
    opt = Adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    state = opt.init(meta)
    held_out = tasks(99, 20)
    objective = (lambda m: algorithm.direction(MODEL, m, held_out, INNER)[0]) if name == "pretrain" \
        else (lambda m: meta_objective(algorithm, m, held_out))
    before = objective(meta)
    rng = np.random.RandomState(1)
    for _ in range(60):
        _, direction = algorithm.direction(MODEL, meta, [DIST.sample(rng) for _ in range(4)], INNER)
        meta, state = opt.update(meta, direction, state)
    assert objective(meta) < 0.9 * before


def test_scratch_never_moves_its_initialisation():
    algorithm = ALGORITHMS["scratch"]()
    meta = fresh(algorithm)
    loss, direction = algorithm.direction(MODEL, meta, tasks(0, 2), INNER)
    assert np.isfinite(loss) and all(np.all(d == 0) for d in direction.values())


def test_fomaml_is_maml_without_second_order_terms():
    batch, meta = tasks(0, 3), fresh(ALGORITHMS["maml"]())
    _, g_fo = ALGORITHMS["fomaml"]().direction(MODEL, meta, batch, INNER)
    _, g_so = ALGORITHMS["maml"]().direction(MODEL, meta, batch, INNER)

    # Independent first-order MAML: adapt with plain numpy steps, then the query gradient there.
    def loss_grad(p, x, y):
        return grad(lambda q: 0.5 * np.mean((y - MODEL.predict(q, x)) ** 2))(p)

    expected = []
    for task in batch:
        p = dict(meta)
        for _ in range(INNER.steps):
            g = loss_grad(p, task.x, task.y)
            p = {k: p[k] - INNER.lr * g[k] for k in p}
        expected.append(flatten(loss_grad(p, *task.query))[0])
    assert np.allclose(flatten(g_fo)[0], np.mean(expected, axis=0), rtol=1e-12, atol=1e-15)
    assert not np.allclose(flatten(g_fo)[0], flatten(g_so)[0], rtol=1e-3)


def test_reptile_moves_towards_the_adapted_parameters():
    algorithm = ALGORITHMS["reptile"]()
    batch, meta = tasks(0, 2), fresh(algorithm)
    _, direction = algorithm.direction(MODEL, meta, batch, INNER)
    adapted = []
    for task in batch:  # phi: plain gradient descent on the support set
        p = dict(meta)
        for _ in range(INNER.steps):
            g = grad(lambda q: inner_loss(MODEL.predict, q, task.x, task.y, INNER.loss_scale))(p)
            p = {k: p[k] - INNER.lr * g[k] for k in p}
        adapted.append(p)
    eps = 0.3
    updated, _ = SGD(lr=eps).update(meta, direction, {})
    for k in meta:  # theta + eps * (mean phi - theta)
        target = meta[k] + eps * (np.mean([a[k] for a in adapted], axis=0) - meta[k])
        assert np.allclose(updated[k], target, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["metasgd", "anil", "maml", "pretrain"])
def test_directions_match_finite_differences(name):
    algorithm = ALGORITHMS[name]()
    batch = tasks(3, 2)
    meta = fresh(algorithm)
    if name == "metasgd":  # distinct learning rates so that their gradients are exercised
        rng = np.random.RandomState(5)
        meta = {k: v * rng.uniform(0.5, 1.5, np.shape(v)) if k.startswith("lr_") else v for k, v in meta.items()}
    flat, unflatten = flatten(meta)
    loss, direction = algorithm.direction(MODEL, meta, batch, INNER)
    g = flatten(direction)[0]
    f = lambda v: algorithm.direction(MODEL, unflatten(v), batch, INNER)[0]
    rng = np.random.RandomState(0)
    for _ in range(3):
        d = rng.randn(flat.size)
        numeric = (f(flat + 1e-6 * d) - f(flat - 1e-6 * d)) / 2e-6
        assert np.isclose(g @ d, numeric, rtol=1e-5, atol=1e-9)
    if name == "metasgd":
        lr_part = np.concatenate([np.ravel(direction[k]) for k in direction if k.startswith("lr_")])
        assert np.linalg.norm(lr_part) > 0


def test_anil_adapts_only_the_output_layer():
    algorithm = ALGORITHMS["anil"]()
    meta = fresh(algorithm)
    adapted = algorithm.adapt(MODEL, meta, tasks(0, 1)[0], INNER)[-1]
    changed = sorted(k for k in meta if not np.array_equal(meta[k], adapted[k]))
    assert changed == ["b3", "w3"]


def test_metasgd_learns_rates_for_every_parameter_and_saves_them_by_name():
    algorithm = ALGORITHMS["metasgd"]()
    meta = fresh(algorithm)
    assert sorted(k for k in meta if k.startswith("lr_")) == sorted(f"lr_{k}" for k in MODEL.names)
    assert all(np.all(meta[f"lr_{k}"] == INNER.lr) and np.shape(meta[f"lr_{k}"]) == np.shape(meta[k])
               for k in MODEL.names)
    assert sorted(model_params(MODEL, meta)) == sorted(MODEL.names)


def test_loss_scale_scales_the_objective_and_its_gradient():
    batch, meta = tasks(0, 2), fresh(ALGORITHMS["pretrain"]())
    a = ALGORITHMS["pretrain"]().direction(MODEL, meta, batch, INNER)
    b = ALGORITHMS["pretrain"]().direction(MODEL, meta, batch, dataclasses.replace(INNER, loss_scale=1.0))
    assert np.isclose(b[0], 2 * a[0]) and np.allclose(flatten(b[1])[0], 2 * flatten(a[1])[0])


def test_sine_tasks_follow_the_maml_paper():
    rng = np.random.RandomState(0)
    dist = make_tasks(SineTaskConfig(name="sine", num_points=40, query_size=30), "float64")
    for _ in range(20):
        task = dist.sample(rng)
        assert task.x.shape == (10,) and task.x_query.shape == (30,)
        x = np.concatenate([task.x, task.x_query])
        y = np.concatenate([task.y, task.y_query])
        assert np.all((-5 <= x) & (x <= 5))
        # y = A sin(x - phase): least squares on sin and cos recovers A in [0.1, 5] exactly
        coef, *_ = np.linalg.lstsq(np.c_[np.sin(x), np.cos(x)], y, rcond=None)
        assert np.allclose(np.c_[np.sin(x), np.cos(x)] @ coef, y)
        assert 0.1 <= np.hypot(*coef) <= 5.0


def test_every_algorithm_declares_the_interface_as_plain_class_attributes(monkeypatch, compose_cfg):
    """The Algorithm protocol's attributes are plain class attributes (no property), the schema a
    dataclass extending AlgorithmConfig; config.check_values reads them without building one."""
    import inspect

    from maml_sweep.algorithms import AlgorithmConfig
    from maml_sweep.config import check_values
    for name, cls in ALGORITHMS.items():
        for attr in ("schema", "label", "learns_inner_lr", "fixed_first_order"):
            value = inspect.getattr_static(cls, attr)
            assert not isinstance(value, property), (name, attr)
        assert dataclasses.is_dataclass(cls.schema) and issubclass(cls.schema, AlgorithmConfig)
        assert cls.fixed_first_order in (None, True, False)

    def refuse(self, config=None):
        raise AssertionError("config.check_values built an algorithm")

    for cls in set(ALGORITHMS.values()):
        monkeypatch.setattr(cls, "__init__", refuse)
    for name in ALGORITHMS:
        assert check_values(compose_cfg([f"algorithm={name}"])) == []
