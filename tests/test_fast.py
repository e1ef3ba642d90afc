"""The fast meta-gradient (maml_sweep.fast) against the nested-autograd reference (maml_sweep.maml)."""
import itertools
import zlib

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from autograd.test_util import check_grads

from maml_sweep import fast
from maml_sweep.config import StepsTaskConfig
from maml_sweep.maml import InnerLoop, batch_meta_objective, meta_value_and_grad
from maml_sweep.model import MLP
from maml_sweep.tasks import Task, make_tasks
from maml_sweep.tools import bench

TOL = 1e-10


def rel_errors(ref: dict, got: dict) -> dict:
    """Per parameter array: ||ref - got|| / ||ref||."""
    return {k: np.linalg.norm(np.asarray(ref[k]) - np.asarray(got[k]))
            / max(np.linalg.norm(ref[k]), 1e-300) for k in ref}


def surface(rng, points: int, dim: int) -> Task:
    """A random smooth function of ``dim`` inputs sampled at ``points`` points x (points, dim)."""
    x = rng.uniform(-2.0, 2.0, size=(points, dim))
    w = rng.normal(size=dim)
    return Task(x, 2.0 * np.sin(x @ w) + 0.1 * rng.normal(size=points))


def make(hidden, activation, n_tasks, split, seed, points=7, query=5, std=0.5, dim=1):
    """A model, random params and a meta-batch; with ``split`` each task has its own query set.
    ``dim`` > 1: inputs of that dimension (random smooth surfaces)."""
    rng = np.random.RandomState(seed)
    model = MLP(hidden, activation, dim=dim)
    params = model.init(rng, std)
    tasks = []
    for _ in range(n_tasks):
        if dim > 1:
            t = surface(rng, points, dim)
            tasks.append(Task(t.x, t.y, *surface(rng, query, dim)[:2]) if split else t)
            continue
        t = make_tasks(StepsTaskConfig(name="steps", num_points=points), "float64").sample(rng)
        if split:
            q = make_tasks(StepsTaskConfig(name="steps", num_points=query), "float64").sample(rng)
            t = Task(t.x, t.y, q.x, q.y)
        tasks.append(t)
    return model, params, tasks


def assert_matches(model, params, tasks, inner):
    v_ref, g_ref = meta_value_and_grad(model.predict, params, tasks, inner)
    v, g = fast.fast_meta_value_and_grad(model, params, tasks, inner)
    assert isinstance(v, float)
    assert abs(v - v_ref) <= TOL * abs(v_ref)
    assert set(g) == set(params)
    for k in params:
        assert np.shape(g[k]) == np.shape(params[k])
    errors = rel_errors(g_ref, g)
    assert max(errors.values()) <= TOL, errors
    return max(errors.values())


# The test grid: depths, activations, meta-batch sizes, first/second order, query split (ids like
# "5x6-relu-T4-2nd-split"); every test runs inner steps 0..5 on it.
def grid(hiddens):
    """The grid's cells for these hidden-layer shapes."""
    return pytest.mark.parametrize("hidden,activation,n_tasks,first_order,split", [
        pytest.param(h, a, t, fo, s, id=f"{'x'.join(map(str, h))}-{a}-T{t}-{'1st' if fo else '2nd'}"
                     f"{'-split' if s else ''}")
        for h, a, t, fo, s in itertools.product(
            hiddens, ["relu", "tanh"], [1, 4], [False, True], [False, True])])


GRID = grid([(4,), (5, 6), (3, 4, 5)])


def grid_seed(hidden, activation) -> int:
    """A seed per grid cell, the same in every process (unlike ``hash`` of a str)."""
    return zlib.crc32(repr((hidden, activation)).encode()) % 1000


def grid_inner_loops(first_order) -> list[InnerLoop]:
    """The inner loops every GRID cell runs: steps 0..5, loss scale 0.5 on even steps, 1.0 on odd."""
    return [InnerLoop(0.1, steps, first_order, loss_scale=0.5 if steps % 2 == 0 else 1.0) for steps in range(6)]


@GRID
def test_matches_reference(hidden, activation, n_tasks, first_order, split):
    model, params, tasks = make(hidden, activation, n_tasks, split, seed=grid_seed(hidden, activation))
    for inner in grid_inner_loops(first_order):
        assert_matches(model, params, tasks, inner)


def nd_grid(dims, hiddens, batches):
    """The grid on inputs of more dimensions (the reference path is model-agnostic: model.predict)."""
    return pytest.mark.parametrize("dim,hidden,activation,n_tasks,first_order,split", [
        pytest.param(d, h, a, t, fo, s, id=f"d{d}-{'x'.join(map(str, h))}-{a}-T{t}-{'1st' if fo else '2nd'}"
                     f"{'-split' if s else ''}")
        for d, h, a, t, fo, s in itertools.product(
            dims, hiddens, ["relu", "tanh"], batches, [False, True], [False, True])])


GRID_ND = nd_grid([2], [(5, 6)], [4])  # the default run: 2-D inputs, two layers, a meta-batch of 4
GRID_ND_ALL = nd_grid([2, 3], [(4,), (5, 6)], [1, 4])  # -m slow


def check_any_dimension(dim, hidden, activation, n_tasks, first_order, split):
    model, params, tasks = make(hidden, activation, n_tasks, split, seed=grid_seed(hidden, activation), dim=dim)
    assert params["W1"].shape == (dim, hidden[0])
    for inner in grid_inner_loops(first_order):
        assert_matches(model, params, tasks, inner)


@GRID_ND
def test_matches_reference_inputs_of_any_dimension(dim, hidden, activation, n_tasks, first_order, split):
    check_any_dimension(dim, hidden, activation, n_tasks, first_order, split)


@pytest.mark.slow
@GRID_ND_ALL
def test_matches_reference_inputs_of_any_dimension_whole_grid(dim, hidden, activation, n_tasks, first_order, split):
    check_any_dimension(dim, hidden, activation, n_tasks, first_order, split)


def test_two_dimensional_hvp_curves_and_chunks(monkeypatch):
    """2-D inputs: the R-operator, the evaluation curves (against the batched loop) and chunked
    meta-batches agree like the 1-D ones."""
    from maml_sweep import batched
    model, params, tasks = make((5, 6), "tanh", 5, True, seed=21, dim=2)
    v = model.init(np.random.RandomState(22), 1.0)
    loss = lambda p: 0.5 * anp.mean((tasks[0].y - model.predict(p, tasks[0].x)) ** 2)
    ref = grad(lambda p: sum(anp.sum(grad(loss)(p)[k] * v[k]) for k in v))(params)
    assert max(rel_errors(ref, fast.hessian_vector_product(model, params, tasks[0], v, 0.5)).values()) <= TOL
    inner = InnerLoop(0.05, 4, loss_scale=1.0)
    want = batched.adaptation_mse(model, params, tasks, inner)
    assert np.allclose(fast.adaptation_mse(model, params, tasks, inner), want, rtol=1e-12, atol=0)
    monkeypatch.setattr(fast, "CHUNK_BYTES", 1)  # one task per chunk
    assert_matches(model, params, tasks, InnerLoop(0.1, 3, loss_scale=0.5))
    fast.clear_workspaces()


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_matches_reference_notebook_size(activation, first_order):
    model, params, tasks = make((50, 50), activation, 2, False, seed=3, points=100, std=0.1)
    assert_matches(model, params, tasks, InnerLoop(0.1, 5, first_order, loss_scale=0.5))


def test_value_and_objective_match_reference():
    model, params, tasks = make((5, 6), "tanh", 3, True, seed=1)
    inner = InnerLoop(0.05, 3, loss_scale=0.5)
    ref = batch_meta_objective(model.predict, params, tasks, inner)
    assert abs(fast.fast_meta_objective(model, params, tasks, inner) - ref) <= TOL * ref
    assert abs(fast.fast_meta_value_and_grad(model, params, tasks, inner)[0] - ref) <= TOL * ref


def test_relu_ties_follow_autograd():
    """Exact zeros before a ReLU: autograd's maximum gives derivative 0.5 there."""
    model, params, tasks = make((4, 3), "relu", 2, False, seed=2)
    params["b1"] = np.zeros(4)
    tasks = [Task(np.concatenate([[0.0, 0.0], t.x[2:]]), t.y) for t in tasks]
    assert_matches(model, params, tasks, InnerLoop(0.1, 2, loss_scale=0.5))


def test_steps_zero_is_query_loss():
    model, params, tasks = make((4,), "relu", 2, True, seed=4)
    v, _ = fast.fast_meta_value_and_grad(model, params, tasks, InnerLoop(0.1, 0, loss_scale=0.5))
    expected = np.mean([0.5 * np.mean((t.y_query - model.predict(params, t.x_query)) ** 2) for t in tasks])
    assert abs(v - expected) <= TOL * expected
    assert (abs(fast.fast_meta_objective(model, params, tasks, InnerLoop(0.1, 0, loss_scale=0.5)) - expected)
            <= TOL * expected)


def test_autograd_through_primitive_params():
    """grad of an expression built on fast.meta_loss: the primitive's VJP composes with autograd."""
    model, params, tasks = make((4, 3), "tanh", 2, True, seed=5)
    inner = InnerLoop(0.1, 3, loss_scale=0.5)

    def f(p):
        return 3.0 * fast.meta_loss(model, p, tasks, inner) + anp.sum(p["W2"] ** 2)

    g = grad(f)(params)
    _, g_ref = meta_value_and_grad(model.predict, params, tasks, inner)
    g_ref = {k: 3.0 * g_ref[k] for k in g_ref}
    g_ref["W2"] = g_ref["W2"] + 2 * params["W2"]
    assert max(rel_errors(g_ref, g).values()) <= TOL
    assert fast.meta_loss(model, params, tasks, inner) == pytest.approx(
        batch_meta_objective(model.predict, params, tasks, inner), rel=TOL)


@pytest.mark.parametrize("first_order", [False, True])
def test_autograd_inner_lr(first_order):
    """d/d(inner lr) through the primitive equals autograd through the reference's inner loop."""
    model, params, tasks = make((4, 3), "relu", 3, True, seed=6)

    def ref(lr):
        return batch_meta_objective(model.predict, params, tasks, InnerLoop(lr, 4, first_order, loss_scale=0.5))

    def fst(lr):
        return fast.meta_loss(model, params, tasks, InnerLoop(0.0, 4, first_order, loss_scale=0.5), lr=lr)

    assert grad(fst)(0.1) == pytest.approx(grad(ref)(0.1), rel=TOL)


def test_check_grads_params_and_per_parameter_lr():
    """Finite differences (autograd's check_grads) for params and a per-parameter lr dict."""
    model, params, tasks = make((3, 2), "tanh", 2, True, seed=7)
    inner = InnerLoop(0.1, 2, loss_scale=0.5)
    check_grads(lambda p: fast.meta_loss(model, p, tasks, inner), modes=["rev"], order=1)(params)
    lrs = {k: 0.1 + 0.01 * np.arange(np.size(v)).reshape(np.shape(v)) for k, v in params.items()}
    lrs["b1"] = 0.05  # a scalar broadcasts over its parameter
    check_grads(lambda lr: fast.meta_loss(model, params, tasks, inner, lr=lr), modes=["rev"], order=1)(lrs)


def test_per_parameter_lr_scalar_dict_equals_scalar():
    model, params, tasks = make((3, 2), "relu", 2, False, seed=8)
    inner = InnerLoop(0.1, 3, loss_scale=0.5)
    same = {k: 0.1 for k in params}
    assert fast.meta_loss(model, params, tasks, inner, lr=same) == pytest.approx(
        fast.meta_loss(model, params, tasks, inner), rel=1e-14)


def test_supports_and_errors():
    assert fast.supports(MLP())
    assert fast.supports(MLP((3, 4, 5), "tanh"))
    assert not fast.supports(object())
    model, params, tasks = make((3,), "relu", 2, False, seed=9)
    short = Task(tasks[1].x[:-1], tasks[1].y[:-1])
    with pytest.raises(ValueError):
        fast.fast_meta_value_and_grad(model, params, [tasks[0], short], InnerLoop(0.1, 5, loss_scale=0.5))


def test_repeated_calls_do_not_share_results():
    """Workspaces are reused across calls; returned values must not alias them."""
    model, params, tasks = make((4,), "relu", 2, False, seed=10)
    inner = InnerLoop(0.1, 2, loss_scale=0.5)
    _, g1 = fast.fast_meta_value_and_grad(model, params, tasks, inner)
    kept = {k: np.copy(v) for k, v in g1.items()}
    fast.fast_meta_value_and_grad(model, model.init(np.random.RandomState(1), 1.0), tasks, inner)
    assert all(np.array_equal(kept[k], g1[k]) for k in g1)


@pytest.mark.slow  # ~2 s of timing loops; the numbers it checks are the bench's own
def test_bench_quick_runs():
    lines = []
    rows = bench.run(quick=True, repeats=1, out=lines.append)
    ratios = [v for r in rows for k, v in r.items() if k.startswith("ratio_")]
    ratios += [r[d]["ratio"] for r in rows for d in bench.DTYPES if isinstance(r.get(d), dict) and "ratio" in r[d]]
    assert len(ratios) == 3 * 2 + 2 + 2 * 2 and all(np.isfinite(ratios)) and all(r > 0 for r in ratios)
    assert rows[-1]["mflop"] > 0 and all(rows[-1][d]["ms"] > 0 for d in bench.DTYPES)
    assert any(line.startswith("arithmetic bound") for line in lines)
    algos = next(r["algorithms"] for r in rows if "algorithms" in r)
    assert set(algos) == {(a, d) for a in bench.ALGORITHM_ROWS for d in bench.DTYPES}
    assert all(algos["maml", d]["ratio_to_maml"] == 1.0 for d in bench.DTYPES)
    assert all(np.isfinite(c["ms"]) and c["ms"] > 0 for c in algos.values())


@pytest.mark.slow
def test_notebook_trajectory_fast():
    """The notebook's training replayed with the fast path prints the notebook's numbers."""
    seen = bench.notebook_trajectory(12000, every=100)
    for step in list(range(100, 1001, 100)) + [6000, 8000, 11000, 11500, 12000]:
        assert seen[step] == "%1.3f" % bench.NOTEBOOK_EXPECTED[step], step


@pytest.mark.parametrize("first_order", [False, True])
def test_chunked_meta_batch(monkeypatch, first_order):
    """Meta-batches split into chunks of tasks (here of 1 and 2) give the same numbers."""
    model, params, tasks = make((5, 6), "relu", 5, True, seed=11)
    inner = InnerLoop(0.1, 3, first_order, loss_scale=0.5)
    for size in (1, 2):
        monkeypatch.setattr(fast, "chunk_size", lambda *args, size=size: size)
        assert len(fast._chunks(fast._layout(model), fast._stack(tasks))) == -(-5 // size)
        assert_matches(model, params, tasks, inner)
        ref = batch_meta_objective(model.predict, params, tasks, inner)
        assert fast.fast_meta_objective(model, params, tasks, inner) == pytest.approx(ref, rel=TOL)


def test_chunk_size_follows_the_byte_budget(monkeypatch):
    lay = fast._layout(MLP((50, 50)))
    assert fast.chunk_size(lay, 100, 100, 4) == 2 * fast.chunk_size(lay, 100, 100, 8)
    monkeypatch.setattr(fast, "CHUNK_BYTES", 1)
    assert fast.chunk_size(lay, 100, 100, 8) == 1


# ----------------------------------------------------------------------------- the tape's rules


def _grad_with(model, params, tasks, inner, lr=None):
    """(value, flat gradient): with ``inner.lr`` by fast_meta_value_and_grad, with per-parameter
    rates ``lr`` through the autograd primitive."""
    if lr is None:
        v, g = fast.fast_meta_value_and_grad(model, params, tasks, inner)
    else:
        v = fast.meta_loss(model, params, tasks, inner, lr=lr)
        g = grad(lambda p: fast.meta_loss(model, p, tasks, inner, lr=lr))(params)
    return v, np.concatenate([np.ravel(g[k]) for k in model.names])


def test_tape_not_reused_across_baked_in_constants():
    """Rule 2 of fast.py: for the same shapes, change each constant a tape bakes in (or that
    decides what it records) right after a call that recorded the base tape: the result must be
    what a fresh process computes. Fails if tape_key() leaves any of them out."""
    base_model, params, tasks = make((5, 6), "relu", 2, False, seed=12)
    split = [Task(t.x, t.y, t.x[::-1].copy(), t.y[::-1].copy()) for t in tasks]  # same M as N
    base = InnerLoop(0.1, 3, False, loss_scale=0.5)
    vector_lr = {k: 0.1 * np.ones(np.shape(v)) for k, v in params.items()}
    variants = {
        "loss_scale": (base_model, params, tasks, InnerLoop(0.1, 3, False, loss_scale=1.0), None),
        "steps": (base_model, params, tasks, InnerLoop(0.1, 2, False, loss_scale=0.5), None),
        "first_order": (base_model, params, tasks, InnerLoop(0.1, 3, True, loss_scale=0.5), None),
        "activation": (MLP((5, 6), "tanh"), params, tasks, base, None),
        "dtype": (base_model, {k: np.asarray(v, np.float32) for k, v in params.items()}, tasks, base, None),
        "query_split": (base_model, params, split, base, None),
        "vector_lr": (base_model, params, tasks, base, vector_lr),
        "lr_value": (base_model, params, tasks, InnerLoop(0.2, 3, False, loss_scale=0.5), None),  # a buffer, not baked
    }
    for name, (model, p, ts, inner, lr) in variants.items():
        fast.clear_workspaces()
        fresh = _grad_with(model, p, ts, inner, lr)
        fast.clear_workspaces()
        _grad_with(base_model, params, tasks, base)  # records the base tapes
        fast.meta_loss(base_model, params, tasks, base)  # and the value tape
        warm = _grad_with(model, p, ts, inner, lr)
        assert warm[0] == pytest.approx(fresh[0], rel=1e-12), name
        assert np.allclose(warm[1], fresh[1], rtol=1e-9, atol=1e-12 * np.abs(fresh[1]).max()), name
        assert fast.meta_loss(model, p, ts, inner, lr=lr) == pytest.approx(fresh[0], rel=1e-6), name


def test_tape_key_is_the_only_key():
    """Workspaces are keyed by the tape key's workspace fields, tapes by the whole key."""
    model, params, tasks = make((4,), "relu", 2, False, seed=13)
    fast.clear_workspaces()
    fast.fast_meta_value_and_grad(model, params, tasks, InnerLoop(0.1, 2, loss_scale=0.5))
    fast.fast_meta_value_and_grad(model, params, tasks, InnerLoop(0.1, 2, loss_scale=1.0))
    (ws_key, ws), = fast._WORKSPACES.d.items()
    assert all(isinstance(k, fast.TapeKey) and k.workspace == ws_key for k in ws.tapes)
    assert {k.loss_scale for k in ws.tapes} == {0.5, 1.0}


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [(4,), (5, 6), (3, 4, 5)])
def test_hessian_vector_product_matches_autograd(hidden, activation):
    """The tape's R-operator (Pearlmutter 1994) against autograd's grad of <grad l, v>."""
    model, params, tasks = make(hidden, activation, 1, False, seed=14)
    v = model.init(np.random.RandomState(15), 1.0)
    for scale in (0.5, 1.0):
        def loss(p):
            return scale * anp.mean((tasks[0].y - model.predict(p, tasks[0].x)) ** 2)

        ref = grad(lambda p: sum(anp.sum(grad(loss)(p)[k] * v[k]) for k in v))(params)
        got = fast.hessian_vector_product(model, params, tasks[0], v, scale)
        assert max(rel_errors(ref, got).values()) <= TOL


def test_eager_mode_same_numbers_and_errors_point_at_the_recording_line(monkeypatch):
    model, params, tasks = make((5, 6), "tanh", 2, True, seed=16)
    inner = InnerLoop(0.1, 3, loss_scale=0.5)
    taped = fast.fast_meta_value_and_grad(model, params, tasks, inner)
    with fast.eager():
        eager = fast.fast_meta_value_and_grad(model, params, tasks, inner)
    assert eager[0] == pytest.approx(taped[0], rel=1e-14)
    assert all(np.allclose(eager[1][k], taped[1][k], rtol=1e-13, atol=0) for k in params)

    def broken(*args):
        raise FloatingPointError("broken op")

    def frames(excinfo):
        return [entry.name for entry in excinfo.traceback]

    monkeypatch.setattr(fast, "_lr_grad_scalar", broken)
    fast.clear_workspaces()
    with fast.eager(), pytest.raises(FloatingPointError) as excinfo:
        grad(lambda lr: fast.meta_loss(model, params, tasks, inner, lr=lr))(0.1)
    assert "_record" in frames(excinfo) and "run" not in frames(excinfo)
    fast.clear_workspaces()
    with pytest.raises(FloatingPointError) as excinfo:
        grad(lambda lr: fast.meta_loss(model, params, tasks, inner, lr=lr))(0.1)
    assert "run" in frames(excinfo)  # taped: the error surfaces in _Tape.run
    fast.clear_workspaces()


def test_adaptation_curves_match_batched():
    """fast.adaptation_mse (the evaluation's tape) equals batched.adaptation_mse, with and
    without per-parameter rates."""
    from maml_sweep import batched
    model, params, tasks = make((5, 6), "tanh", 5, True, seed=17)
    inner = InnerLoop(0.05, 4, loss_scale=1.0)
    lrs = {k: np.random.RandomState(18).uniform(0.01, 0.05, np.shape(v)) for k, v in params.items()}
    for rates in (None, lrs):
        want = batched.adaptation_mse(model, params, tasks, inner, rates)
        assert np.allclose(fast.adaptation_mse(model, params, tasks, inner, rates), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("n_tasks", [1, 4])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_no_buffer_is_read_before_it_is_written(monkeypatch, activation, n_tasks, split):
    """Workspaces are uninitialised (np.empty): with every buffer filled with NaN instead, every kind of
    tape (meta-gradient of each order and step count, per-parameter rates and their gradient, value,
    adaptation curves) gives the same numbers to the bit, so no call reads what no call wrote."""
    from maml_sweep import fast_tape

    model, params, tasks = make((5, 6), activation, n_tasks, split, seed=grid_seed((5, 6), activation))
    lrs = {k: np.full(np.shape(v), 0.05) for k, v in params.items()}

    def results() -> list:
        fast.clear_workspaces()
        out = []
        for first_order in (False, True):
            for steps in (0, 1, 3):
                value, g = fast.fast_meta_value_and_grad(model, params, tasks, InnerLoop(0.1, steps, first_order, 0.5))
                out += [value, *g.values()]
        value, g, g_lr = fast.fast_meta_value_and_grad_lrs(model, params, lrs, tasks, InnerLoop(0.1, 2, False, 0.5))
        out += [value, *g.values(), *g_lr.values()]
        out.append(fast.fast_meta_objective(model, params, tasks, InnerLoop(0.1, 2, False, 0.5)))
        out.append(fast.adaptation_mse(model, params, tasks, InnerLoop(0.1, 3, False, 0.5)))
        return out

    plain = results()
    monkeypatch.setattr(fast_tape, "_buffer", lambda shape, dtype: np.full(shape, np.nan, dtype))
    poisoned = results()
    fast.clear_workspaces()
    assert len(plain) == len(poisoned) and all(np.isfinite(a).all() for a in plain)
    assert all(np.array_equal(a, b) for a, b in zip(plain, poisoned))
