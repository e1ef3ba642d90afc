"""The reference meta-gradient against finite differences and an independent first-order version."""
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten
from autograd.test_util import check_grads

from maml_sweep.config import StepsTaskConfig
from maml_sweep.maml import InnerLoop, adapt, inner_loss, meta_objective, meta_value_and_grad
from maml_sweep.model import MLP, param_names, param_shapes
from maml_sweep.tasks import make_tasks


def small_problem(hidden, activation="tanh", seed=0, n=12):
    rng = np.random.RandomState(seed)
    model = MLP(hidden, activation)
    params = model.init(rng, 0.5)
    tasks = [make_tasks(StepsTaskConfig(name="steps", num_points=n, bins=3), "float64").sample(rng) for _ in range(2)]
    return model, params, tasks


def test_param_names_follow_the_notebook():
    assert param_names((50, 50)) == ["W1", "b1", "W2", "b2", "w3", "b3"]
    assert param_names((7,)) == ["W1", "b1", "w2", "b2"]
    assert param_shapes((4, 5, 6)) == {"W1": (1, 4), "b1": (4,), "W2": (4, 5), "b2": (5,), "W3": (5, 6),
                                       "b3": (6,), "w4": (6,), "b4": ()}
    assert param_shapes((4,), dim=3)["W1"] == (3, 4)  # inputs of any dimension: W1 is (dim, h1)


def test_params_saved_with_a_vector_W1_predict_the_same():
    """Runs saved before inputs had a dimension stored W1 as (h1,): read as (1, h1)."""
    model = MLP((5, 4))
    params = model.init(np.random.RandomState(0), 0.3)
    old = {**params, "W1": params["W1"].reshape(-1)}
    x = np.linspace(-2, 2, 7)
    assert np.array_equal(model.predict(old, x), model.predict(params, x))


@pytest.mark.parametrize("hidden", [(6,), (5, 4), (4, 3, 5)])
@pytest.mark.parametrize("steps", [0, 1, 5])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_meta_gradient_matches_finite_differences(hidden, steps, activation):
    model, params, tasks = small_problem(hidden, activation)
    inner = InnerLoop(lr=0.05, steps=steps, loss_scale=0.5)
    flat, unflatten = flatten(params)
    value, g = meta_value_and_grad(model.predict, params, tasks, inner)
    assert np.isclose(value, np.mean([meta_objective(model.predict, params, t, inner) for t in tasks]))
    # Central differences along random directions against the gradient dict itself.
    rng = np.random.RandomState(1)
    f = lambda v: meta_value_and_grad(model.predict, unflatten(v), tasks, inner)[0]
    for _ in range(3):
        d = rng.randn(flat.size)
        eps = 1e-6
        numeric = (f(flat + eps * d) - f(flat - eps * d)) / (2 * eps)
        assert np.isclose(flatten(g)[0] @ d, numeric, rtol=1e-5, atol=1e-8)
    check_grads(f, modes=["rev"], order=1)(flat)


def test_first_order_equals_query_gradient_at_adapted_params():
    model, params, tasks = small_problem((5, 4))
    inner = InnerLoop(lr=0.1, steps=3, first_order=True, loss_scale=0.5)
    _, g = meta_value_and_grad(model.predict, params, tasks, inner)
    # Independent first-order MAML: plain numpy adaptation, then the loss gradient there.
    expected = []
    for task in tasks:
        p = dict(params)
        for _ in range(3):
            gi = grad(lambda q: inner_loss(model.predict, q, task.x, task.y, 0.5))(p)
            p = {k: p[k] - 0.1 * gi[k] for k in p}
        expected.append(flatten(grad(lambda q: inner_loss(model.predict, q, task.x, task.y, 0.5))(p))[0])
    assert np.allclose(flatten(g)[0], np.mean(expected, axis=0), rtol=1e-12, atol=1e-14)
    second = meta_value_and_grad(model.predict, params, tasks, InnerLoop(lr=0.1, steps=3, loss_scale=0.5))[1]
    assert not np.allclose(flatten(g)[0], flatten(second)[0])


def test_adapt_returns_the_whole_trajectory_and_lowers_the_loss():
    model, params, tasks = small_problem((8, 8))
    traj = adapt(model.predict, params, tasks[0], InnerLoop(lr=0.1, steps=4, loss_scale=0.5))
    losses = [inner_loss(model.predict, p, tasks[0].x, tasks[0].y, 0.5) for p in traj]
    assert len(traj) == 5 and losses[-1] < losses[0]
