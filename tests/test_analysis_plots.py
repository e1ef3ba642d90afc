"""Figures checked for content: axis labels, lines per hue level, facets, heatmap shape, fits."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402

from analysis_fixtures import base_config, make_sweep, write_run  # noqa: E402
from maml_sweep.analysis import aggregate, best_config, curve_bands, load_runs  # noqa: E402
from maml_sweep.analysis import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _data_lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]


def test_learning_curves_one_line_per_hue_level_per_facet(real_sweep):
    rs = load_runs(real_sweep)
    bands = curve_bands(rs.curves, rs.runs, rs.group_keys)
    fig = plots.learning_curves(bands, "val_meta_objective", hue="task.bins", col="algorithm.inner_lr")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in axes) == ["algorithm.inner_lr = 0.03", "algorithm.inner_lr = 0.1"]
    for ax in axes:
        lines = _data_lines(ax)
        assert len(lines) == 2  # task.bins 3 and 6
        assert all(list(ln.get_xdata()) == [8, 16, 24] for ln in lines)
        assert len(ax.collections) == 2  # one CI band per line
        assert ax.get_xlabel() == "outer step"
    assert axes[0].get_ylabel() == "val_meta_objective"
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "task.bins"
    assert [t.get_text() for t in legend.get_texts()] == ["3", "6"]


def test_learning_curves_png_is_the_same_every_time(real_sweep, tmp_path):
    rs = load_runs(real_sweep)
    pngs = []
    for name in ("a", "b"):
        bands = curve_bands(rs.curves, rs.runs, rs.group_keys, seed=plots.BOOT_SEED)
        fig = plots.learning_curves(bands, "val_meta_objective", hue="algorithm.inner_lr", col="task.bins")
        png, pdf = plots.save_figure(fig, tmp_path / name, "curves")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        pngs.append(png.read_bytes())
    assert pngs[0] == pngs[1] and pngs[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*/.curves*"))  # no temp files left behind


def test_heatmap_has_the_grid_shape_annotations_and_a_best_box(tmp_path):
    make_sweep(tmp_path / "s", {"task.bins": [2, 3, 4], "algorithm.inner_lr": [0.01, 0.1]}, seeds=(0, 1))
    rs = load_runs(tmp_path / "s")
    agg = aggregate(rs.runs, rs.group_keys)
    best = best_config(agg, rs.group_keys)
    rows = agg[agg["metric"] == "val_meta_objective"]
    fig = plots.heatmap(rows, "task.bins", "algorithm.inner_lr", "val_meta_objective",
                        best=(best["task.bins"], best["algorithm.inner_lr"]))
    ax = fig.axes[0]
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    assert mesh.get_array().shape == (2, 3)  # rows: inner_lr, columns: bins
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 6
    expected = rows[(rows["task.bins"] == 4) & (rows["algorithm.inner_lr"] == 0.1)]["mean"].iloc[0]
    assert f"{expected:.3g}" in texts
    assert ax.get_xlabel() == "task.bins" and ax.get_ylabel() == "algorithm.inner_lr"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "3", "4"]
    assert len(ax.patches) == 1  # the best configuration's box


def test_adaptation_curves_per_init_and_algorithm_with_noise_floor(tmp_path):
    make_sweep(tmp_path / "s", {"algorithm": ["maml", "fomaml"]}, seeds=(0, 1, 2), with_adaptation=True)
    rs = load_runs(tmp_path / "s")
    data = rs.adaptation.merge(rs.runs[["run", "algorithm.name"]], on="run")
    fig = plots.adaptation_curves(data, style="algorithm.name", noise_floor=0.01)
    ax = fig.axes[0]
    lines = _data_lines(ax)
    floor = [ln for ln in lines if list(ln.get_ydata()) == [0.01, 0.01]]
    assert len(floor) == 1
    assert len(lines) - len(floor) == 3 * 2  # init x algorithm
    assert ax.get_xlabel() == "adaptation steps k" and ax.get_ylabel() == "test MSE"
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"trained", "pretrain", "scratch", "maml", "fomaml", "noise floor"} <= set(labels)


def test_best_fits_draw_data_and_every_inner_step(real_sweep, tmp_path):
    fig = plots.best_fits(real_sweep / "0", n_tasks=3)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        lines = ax.get_lines()
        assert lines[0].get_marker() == "x" and lines[0].get_color() == "b"
        reds = lines[1:]
        assert len(reds) == 5 + 1  # the trajectory: params and five inner steps
        alphas = [ln.get_alpha() for ln in reds]
        assert alphas == sorted(alphas) and alphas[-1] == 1.0
    # Unknown task family or no params: no figure, no error.
    cfg = base_config()
    cfg["task"]["name"] = "sinusoid"
    write_run(tmp_path / "sin", cfg, [], metrics=[], summary={"status": "completed"})
    assert plots.best_fits(tmp_path / "sin") is None
    write_run(tmp_path / "noparams", base_config(), [], metrics=[], summary={"status": "completed"})
    assert plots.best_fits(tmp_path / "noparams") is None


def test_cost_shows_every_run_and_each_groups_median(real_sweep):
    rs = load_runs(real_sweep)
    fig = plots.cost(rs.runs, "task.bins", "algorithm.inner_lr")
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["ms per outer step", "wall time per run (s)"]
    for ax, col in zip(fig.axes, ["ms_per_step", "wall_s"]):
        points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets())])
        markers = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.lines])
        assert len(points) == len(rs.runs)
        for value in rs.runs[col]:
            assert np.isclose(points, value).any()
        for value in rs.runs.groupby(["task.bins", "algorithm.inner_lr"])[col].median():
            assert np.isclose(markers, value).any()


def test_saved_files_get_normal_permissions(tmp_path):
    import os

    fig, _ = plt.subplots()
    mask = os.umask(0o022)
    try:
        png, pdf = plots.save_figure(fig, tmp_path, "f")
    finally:
        os.umask(mask)
    assert png.stat().st_mode & 0o777 == 0o644 and pdf.stat().st_mode & 0o777 == 0o644
