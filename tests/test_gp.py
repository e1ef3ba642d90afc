"""task=gp: functions drawn from an RBF Gaussian process (the Neural Processes' tasks), in any input
dimension, end to end."""
import numpy as np
import pytest
from conftest import TINY, compose
from omegaconf import OmegaConf

from maml_sweep.config import check_values
from maml_sweep.tasks import GP_MAX_POINTS, GPTaskConfig, make_tasks
from maml_sweep.train import run


def family(dtype="float64", **values):
    return make_tasks(GPTaskConfig(name="gp", **values), dtype)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_shapes_split_and_determinism(dim):
    gp = family(dim=dim, num_points=12, query_size=5)
    task = gp.sample(np.random.RandomState(4))
    assert gp.input_dim == dim
    assert task.x.shape == ((7,) if dim == 1 else (7, dim)) and task.y.shape == (7,)
    assert task.x_query.shape == ((5,) if dim == 1 else (5, dim)) and task.y_query.shape == (5,)
    again = gp.sample(np.random.RandomState(4))
    assert all(np.array_equal(a, b) for a, b in zip(task, again))  # deterministic from the stream
    other = gp.sample(np.random.default_rng(4))  # a Generator works too
    assert np.all((other.x >= -2) & (other.x < 2))
    assert family("float32", dim=dim).sample(np.random.RandomState(1)).x.dtype == np.float32


def test_values_follow_the_rbf_kernel():
    """Pairs of points: E[y0 y1] = k(x0, x1) = variance exp(-|x0 - x1|^2 / (2 l^2)) (+ noise^2 on the
    diagonal); checked on 4,000 tasks within 4 standard errors."""
    gp = family(dim=2, num_points=2, query_size=0, lengthscale=0.7, variance=2.0, noise=0.3)
    rng = np.random.RandomState(0)
    tasks = [gp.sample(rng) for _ in range(4000)]
    x0, x1 = np.array([t.x[0] for t in tasks]), np.array([t.x[1] for t in tasks])
    y = np.array([t.y for t in tasks])
    k = 2.0 * np.exp(-np.sum((x0 - x1) ** 2, axis=1) / (2 * 0.7 ** 2))
    for got, want in ((y[:, 0] * y[:, 1], k), (y[:, 0] ** 2, 2.0 + 0.09)):
        diff = got - want
        assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff))
    near = np.abs(k - 2.0) < 0.2  # close points: strongly correlated targets
    assert np.corrcoef(y[near, 0], y[near, 1])[0, 1] > 0.8


@pytest.mark.parametrize("override,key", [
    (f"task.num_points={GP_MAX_POINTS + 1}", "task.num_points"),
    (f"eval.query_size={GP_MAX_POINTS}", "eval.query_size"),
    ("task.lengthscale=0", "task.lengthscale"),
    ("task.variance=-1", "task.variance"),
    ("task.dim=0", "task.dim"),
])
def test_bad_values_name_their_key(override, key):
    errors = check_values(compose(["task=gp", override]))
    assert errors and errors[0].startswith(f"{key}=") and "is not allowed" in errors[0], errors


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_two_dimensional_gp_trains_evaluates_and_draws(algorithm, tmp_path):
    cfg = compose(["task=gp", "task.dim=2", f"algorithm={algorithm}", *TINY,
                   f"train.figures={'true' if algorithm == 'maml' else 'false'}"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed" and np.isfinite(summary["test_mse_k5"])
    if algorithm == "maml":
        assert (tmp_path / "validation_fits.png").read_bytes()[:4] == b"\x89PNG"
        from maml_sweep.analysis import plots
        (tmp_path / ".hydra").mkdir(exist_ok=True)
        (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        fig = plots.best_fits(tmp_path, n_tasks=2)
        maps = [ax for ax in fig.axes if ax.images]
        assert len(maps) == 4  # 2 tasks x (before, after)
        assert [ax.get_title() for ax in maps[:2]] == ["test task 1, before adapting", "test task 2, before adapting"]
        assert all(len(ax.collections) == 2 for ax in maps)  # support and held-out points on each map
