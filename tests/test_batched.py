"""Batched adaptation (evaluation, Reptile) against the reference inner loop, task by task."""
import dataclasses

import numpy as np
import pytest

from maml_sweep import batched
from maml_sweep.config import GPTaskConfig, SineTaskConfig
from maml_sweep.maml import InnerLoop, adapt
from maml_sweep.model import MLP
from maml_sweep.tasks import make_tasks


@pytest.mark.parametrize("hidden", [(5,), (6, 4), (3, 5, 4)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("variant", ["plain", "rates", "only", "2-D", "3-D rates"])
def test_batched_adaptation_equals_the_reference_per_task(hidden, activation, variant):
    dim = int(variant[0]) if variant[0].isdigit() else 1  # inputs of more dimensions: task=gp
    model = MLP(hidden, activation, dim=dim)
    rng = np.random.RandomState(0)
    params = model.init(rng, 0.5)
    family = make_tasks(SineTaskConfig(name="sine", num_points=16, query_size=9), "float64") if dim == 1 else \
        make_tasks(GPTaskConfig(name="gp", num_points=16, query_size=9, dim=dim), "float64")
    tasks = [family.sample(rng) for _ in range(4)]
    inner = InnerLoop(lr=0.03, steps=3, loss_scale=1.0)
    lrs = None
    if variant.endswith("rates"):
        lrs = {k: rng.uniform(0.01, 0.05, np.shape(v)) for k, v in params.items()}
    if variant == "only":
        inner = dataclasses.replace(inner, only=tuple(model.names[-2:]))
    curves = batched.adaptation_mse(model, params, tasks, inner, lrs)
    final = batched.adapt_many(model, params, tasks, inner, lrs)
    for t, task in enumerate(tasks):
        trajectory = adapt(model.predict, params, task, inner, lrs)
        xq, yq = task.query
        expected = [np.mean((yq - model.predict(p, xq)) ** 2) for p in trajectory]
        assert np.allclose(curves[t], expected, rtol=1e-12, atol=1e-14)
        assert all(np.allclose(final[k][t], trajectory[-1][k], rtol=1e-12, atol=1e-14) for k in params)
