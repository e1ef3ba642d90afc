"""Every algorithm's fast path against the autograd reference (maml_sweep.maml) over the grid of
tests/test_fast.py (depths 1-3, relu/tanh, meta-batch 1 and 4, first/second order, with and
without a query split, inner steps 0-5; and on 2-D and 3-D inputs): float64 within 1e-10 relative, float32 within the
documented tolerances of tests/test_dtype.py. FOMAML is MAML's fast path with ``first_order``:
its agreement is test_fast.py's first-order cells. The default run checks 3 inner steps
of each cell; ``-m slow`` all six."""
import dataclasses

import numpy as np
import pytest
from autograd import value_and_grad
from test_dtype import TOL32_GRAD, TOL32_VALUE, as32
from test_fast import GRID, GRID_ND, GRID_ND_ALL, TOL, grid_inner_loops, grid_seed, make

from maml_sweep import fast, fast_anil, maml
from maml_sweep.algorithms import ALGORITHMS, pooled
from maml_sweep.maml import InnerLoop, inner_loss

QUICK_STEPS = (3,)


def inner_loops(first_order, every):
    return [i for i in grid_inner_loops(first_order) if every or i.steps in QUICK_STEPS]


def check(ref, got32, got64):
    """ref, got: (value, {name: array}); float64 to TOL relative per array (absolute against the
    whole norm when the reference is zero), float32 to TOL32 (value) and TOL32_GRAD of the norm."""
    (v_ref, g_ref), (v64, g64), (v32, g32) = ref, got64, got32
    assert abs(v64 - v_ref) <= TOL * abs(v_ref) and abs(v32 - v_ref) <= TOL32_VALUE * abs(v_ref)
    assert set(g64) == set(g_ref) == set(g32)
    norm = np.sqrt(sum(np.sum(np.square(g_ref[k])) for k in g_ref))
    for k in g_ref:
        ref_k = np.asarray(g_ref[k])
        assert np.shape(g64[k]) == ref_k.shape and g64[k].dtype == np.float64 and g32[k].dtype == np.float32
        assert np.linalg.norm(g64[k] - ref_k) <= TOL * max(np.linalg.norm(ref_k), 1e-3 * norm), k
        assert np.linalg.norm(g32[k] - ref_k) <= TOL32_GRAD * norm, k


def anil_loop(model, inner):
    return dataclasses.replace(inner, only=tuple(model.names[-2:]))


def rates(params, seed):
    """Distinct per-parameter inner rates around 0.1 (Meta-SGD's meta-parameters)."""
    rng = np.random.RandomState(seed)
    return {k: rng.uniform(0.05, 0.15, np.shape(v)) for k, v in params.items()}


def reptile_reference(model, params, tasks, inner):
    adapted = [maml.adapt(model.predict, params, t, inner)[-1] for t in tasks]
    loss = np.mean([inner_loss(model.predict, a, *t.query, inner.loss_scale) for a, t in zip(adapted, tasks)])
    return loss, {k: params[k] - np.mean([a[k] for a in adapted], axis=0) for k in params}


def agree(name, hidden, activation, n_tasks, first_order, split, every, **kw):
    model, params, tasks = make(hidden, activation, n_tasks, split, seed=grid_seed(hidden, activation), **kw)
    p32 = as32(params)
    for inner in inner_loops(first_order, every):
        if name == "anil":  # ANIL is second order; its path does both
            inner = anil_loop(model, inner)
            ref = maml.meta_value_and_grad(model.predict, params, tasks, inner)
            check(ref, *(fast_anil.value_and_grad(model, p, tasks, inner) for p in (p32, params)))
            assert abs(fast_anil.meta_objective(model, params, tasks, inner) - ref[0]) <= TOL * ref[0]
            if not first_order:
                check(ref, *(ALGORITHMS["anil"]().direction(model, p, tasks, inner) for p in (p32, params)))
        elif name == "metasgd":
            lrs = rates(params, inner.steps)
            meta = {**params, **{f"lr_{k}": v for k, v in lrs.items()}}
            v, g = value_and_grad(lambda m: maml.batch_meta_objective(
                model.predict, {k: m[k] for k in params}, tasks, inner, {k: m[f"lr_{k}"] for k in params}))(meta)
            check((v, g), *(ALGORITHMS["metasgd"]().direction(model, as32(meta) if m else meta, tasks, inner)
                            for m in (True, False)))
        elif name == "reptile":
            inner = dataclasses.replace(inner, first_order=False)
            ref = reptile_reference(model, params, tasks, inner)
            check(ref, *(ALGORITHMS["reptile"]().direction(model, p, tasks, inner) for p in (p32, params)))
        elif name == "pretrain":
            ref = maml.meta_value_and_grad(model.predict, params, pooled(tasks), dataclasses.replace(inner, steps=0))
            check(ref, *(ALGORITHMS["pretrain"]().direction(model, p, tasks, inner) for p in (p32, params)))


ALGOS = pytest.mark.parametrize("name", ["anil", "metasgd", "reptile", "pretrain"])


@ALGOS
@GRID
def test_fast_path_matches_reference(name, hidden, activation, n_tasks, first_order, split):
    agree(name, hidden, activation, n_tasks, first_order, split, every=False)


@pytest.mark.slow
@ALGOS
@GRID
def test_fast_path_matches_reference_every_inner_step_count(name, hidden, activation, n_tasks, first_order, split):
    agree(name, hidden, activation, n_tasks, first_order, split, every=True)


@ALGOS
@GRID_ND
def test_fast_path_matches_reference_inputs_of_any_dimension(name, dim, hidden, activation, n_tasks, first_order,
                                                             split):
    agree(name, hidden, activation, n_tasks, first_order, split, every=False, dim=dim)


@pytest.mark.slow
@ALGOS
@GRID_ND_ALL
def test_fast_path_matches_reference_inputs_of_any_dimension_whole_grid(name, dim, hidden, activation, n_tasks,
                                                                        first_order, split):
    agree(name, hidden, activation, n_tasks, first_order, split, every=True, dim=dim)


@pytest.mark.parametrize("name", ["anil", "metasgd", "reptile"])
def test_notebook_size(name):
    """The default setting (1-50-50-1 ReLU, 100 points, K=5), where the timing targets are set."""
    agree(name, (50, 50), "relu", 2, False, False, every=False, points=100, std=0.1)


@pytest.mark.parametrize("dim", [1, 2])
def test_anil_curves_match_batched(dim):
    """ANIL's adaptation curves (evaluation) equal the batched numpy loop's, float64 and float32."""
    from maml_sweep import batched
    for split in (False, True):
        model, params, tasks = make((5, 6), "tanh", 40, split, seed=17, dim=dim)
        inner = anil_loop(model, InnerLoop(0.05, 4, loss_scale=1.0))
        for p in (params, as32(params)):
            want = batched.adaptation_mse(model, p, tasks, inner)
            assert np.allclose(fast_anil.adaptation_mse(model, p, tasks, inner), want,
                               rtol=1e-12 if p is params else 1e-5, atol=0)


def test_anil_path_covers_only_the_head():
    model, params, tasks = make((4, 3), "relu", 1, False, seed=1)
    inner = InnerLoop(0.1, 2, loss_scale=0.5)
    assert fast_anil.applies(model, anil_loop(model, inner))
    assert not fast_anil.applies(model, inner)
    assert not fast_anil.applies(model, dataclasses.replace(inner, only=("W1", "b1")))


def test_relu_ties_follow_autograd():
    """Exact zeros before a ReLU (derivative 0.5 there), for ANIL, Meta-SGD and Reptile."""
    model, params, tasks = make((4, 3), "relu", 2, False, seed=2)
    params["b1"] = np.zeros(4)
    tasks = [type(t)(np.concatenate([[0.0, 0.0], t.x[2:]]), t.y) for t in tasks]
    inner = InnerLoop(0.1, 2, loss_scale=0.5)
    ref = maml.meta_value_and_grad(model.predict, params, tasks, anil_loop(model, inner))
    check(ref, *(fast_anil.value_and_grad(model, p, tasks, anil_loop(model, inner)) for p in (as32(params), params)))
    ref = reptile_reference(model, params, tasks, inner)
    check(ref, *(ALGORITHMS["reptile"]().direction(model, p, tasks, inner) for p in (as32(params), params)))


def test_results_do_not_alias_the_workspace():
    """Reptile's and Meta-SGD's results are copies: a later call leaves them as they were."""
    model, params, tasks = make((4,), "relu", 2, False, seed=10)
    inner = InnerLoop(0.1, 2, loss_scale=0.5)
    meta = ALGORITHMS["metasgd"]().init(model, params, inner)
    out = [ALGORITHMS["reptile"]().direction(model, params, tasks, inner)[1],
           ALGORITHMS["metasgd"]().direction(model, meta, tasks, inner)[1]]
    kept = [{k: np.copy(v) for k, v in o.items()} for o in out]
    other = model.init(np.random.RandomState(1), 1.0)
    ALGORITHMS["reptile"]().direction(model, other, tasks, inner)
    ALGORITHMS["metasgd"]().direction(model, ALGORITHMS["metasgd"]().init(model, other, inner), tasks, inner)
    fast.fast_meta_value_and_grad(model, other, tasks, inner)
    assert all(np.array_equal(k[n], o[n]) for k, o in zip(kept, out) for n in o)
