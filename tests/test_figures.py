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
