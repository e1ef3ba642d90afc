"""The run's validation figure says what it shows: axis labels and a legend."""
import numpy as np

from maml_sweep.figures import plot_validation_fits, validation_fits_figure
from maml_sweep.tasks import Task


def _fake(n_snapshots: int):
    x = np.linspace(-3, 3, 20)
    task = Task(x=x, y=np.sign(x))
    predict = lambda p, px: p["a"] * px  # noqa: E731
    adapt = lambda p, t: [p, {"a": p["a"] * 0.5}, {"a": p["a"] * 0.25}]  # noqa: E731
    return predict, adapt, [(s, {"a": 1.0 + s}) for s in range(1, n_snapshots + 1)], task


def test_validation_fits_has_axis_labels_and_a_legend(tmp_path):
    predict, adapt, snapshots, task = _fake(12)
    fig = validation_fits_figure(predict, adapt, snapshots, task, (-3, 3))
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes[8:12]] == ["x (input)"] * 4
    assert [axes[i].get_ylabel() for i in (0, 4, 8)] == ["y (target)"] * 3
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["validation task data",
                                                          "prediction after 2 steps of the inner loop"]
    assert axes[0].get_title() == "meta-parameters at outer step 1"
    plot_validation_fits(predict, adapt, snapshots[:5], task, (-3, 3), tmp_path / "v.png")
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_two_dimensional_task_draws_the_prediction_as_a_heat_map_with_the_points_on_it():
    """A 2-D task: per panel, a heat map of the adapted prediction over [xlim]^2 with the task's points
    coloured by their targets on the map's colour scale, one colour bar; 3-D: predicted against true."""
    from maml_sweep.figures import draw_fit
    rng = np.random.RandomState(0)
    x = rng.uniform(-2, 2, size=(15, 2))
    task = Task(x=x, y=x[:, 0] - x[:, 1])
    predict = lambda p, px: p["a"] * (px[:, 0] - px[:, 1])  # noqa: E731
    adapt = lambda p, t: [p, {"a": 1.0}]  # noqa: E731
    fig = validation_fits_figure(predict, adapt, [(s, {"a": 0.1 * s}) for s in range(1, 13)], task, (-2, 2))
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 12 and len(fig.axes) == 13  # and the colour bar
    image, points = maps[0].images[0], maps[0].collections[0]
    assert image.get_array().shape == (60, 60) and image.norm.vmin == task.y.min() and image.norm.vmax == task.y.max()
    assert np.allclose(points.get_offsets(), x) and points.norm is image.norm
    assert maps[-1].get_xlabel() == "x1 (input)" and maps[0].get_ylabel() == "x2 (input)"
    # The adapted prediction (a = 1) is the target surface: at the support points the map's value is the target.
    grid = np.linspace(-2, 2, 60)
    i, j = np.abs(grid[:, None] - x[:, 1]).argmin(0), np.abs(grid[:, None] - x[:, 0]).argmin(0)
    assert np.allclose(image.get_array()[i, j], grid[j] - grid[i])
    import matplotlib.pyplot as plt
    fig3, ax = plt.subplots()
    x3 = rng.uniform(-2, 2, size=(6, 3))
    draw_fit(ax, lambda p, px: p["a"] * px.sum(1), Task(x3, x3.sum(1)), [{"a": 0.0}, {"a": 1.0}], (-2, 2))
    before, after, diagonal = ax.get_lines()
    assert np.allclose(after.get_xdata(), after.get_ydata()) and np.allclose(before.get_ydata(), 0)
    plt.close(fig3)


def test_legend_says_step_or_steps():
    from maml_sweep.figures import after_steps
    assert [after_steps(k) for k in (0, 1, 5)] == ["after 0 steps", "after 1 step", "after 5 steps"]
