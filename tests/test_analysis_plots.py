"""Figures checked for content: axis labels, lines per hue level, facets, heatmap shape, fits."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from analysis_fixtures import base_config, write_run  # noqa: E402

from maml_sweep import components, rundir, stats  # noqa: E402
from maml_sweep.analysis import curve_bands, load_runs, panels, plots  # noqa: E402  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _data_lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]


def _bands(real_sweep, seed=stats.BOOT_SEED):
    rs = load_runs(real_sweep)
    bands = curve_bands(rs.curves, rs.runs, rs.group_keys, seed=seed)
    return bands.assign(line=[f"lr={v:g}" for v in bands["algorithm.inner_lr"]],
                        panel=[f"bins={v}" for v in bands["task.bins"]])


def test_line_panels_one_panel_per_condition_one_line_per_label(real_sweep):
    bands = _bands(real_sweep)
    colour = panels.colours(["lr=0.03", "lr=0.1"])
    fig = panels.line_panels(bands, x="step", y="mean", line="line", panel="panel", colour=colour,
                             xlabel="outer step", ylabel="val_meta_objective", band=("ci95_low", "ci95_high"),
                             legend_title="inner_lr")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["bins=3", "bins=6"]
    for ax in axes:
        lines = _data_lines(ax)
        assert [ln.get_label() for ln in lines] == ["lr=0.03", "lr=0.1"]
        assert all(list(ln.get_xdata()) == [8, 16, 24] for ln in lines)
        assert len(ax.collections) == 2  # one CI band per line
        assert ax.get_xlabel() == "outer step" and ax.get_ylabel() == "val_meta_objective"
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "inner_lr"
    assert [t.get_text() for t in legend.get_texts()] == ["lr=0.03", "lr=0.1"]
    assert legend.get_bbox_to_anchor().x0 >= fig.axes[-1].get_position().x1 * fig.bbox.width - 1  # outside


def test_line_panels_png_is_the_same_every_time(real_sweep, tmp_path):
    pngs = []
    for name in ("a", "b"):
        bands = _bands(real_sweep)
        fig = panels.line_panels(bands, x="step", y="mean", line="line", panel="panel",
                                 colour=panels.colours(["lr=0.03", "lr=0.1"]), xlabel="outer step", ylabel="v",
                                 band=("ci95_low", "ci95_high"))
        png, pdf = plots.save_figure(fig, tmp_path / name, "curves")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        pngs.append(png.read_bytes())
    assert pngs[0] == pngs[1] and pngs[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*/.curves*"))  # no temp files left behind


def test_y_scale_follows_the_data_span_and_a_far_noise_floor_is_left_out():
    import pandas as pd
    data = pd.DataFrame({"k": [0, 1, 2] * 2, "mse": [3.0, 2.0, 1.5, 2.8, 2.2, 1.9], "line": ["a"] * 3 + ["b"] * 3})
    fig = panels.line_panels(data, x="k", y="mse", line="line", panel=None, colour=panels.colours(["a", "b"]),
                             xlabel="k", ylabel="test MSE", hline=(0.01, "noise floor"))
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear" and len(_data_lines(ax)) == 2
    assert "noise floor" not in [t.get_text() for t in fig.legends[0].get_texts()]
    wide = data.assign(mse=data["mse"] ** 6)  # spans 64x
    fig = panels.line_panels(wide, x="k", y="mse", line="line", panel=None, colour=panels.colours(["a", "b"]),
                             xlabel="k", ylabel="test MSE")
    assert fig.axes[0].get_yscale() == "log"


def test_heatmaps_one_panel_per_condition_with_mean_ci_n_and_a_best_box():
    import pandas as pd
    cells = pd.DataFrame({"lr": [0.01, 0.1, 0.01, 0.1], "steps": [1, 1, 1, 1], "cond": ["bins=3"] * 2 + ["bins=6"] * 2,
                          "mean": [1.0, 2.0, 5.0, 4.0], "ci95": [0.1, 0.2, 0.3, 0.4], "n": [3, 3, 3, 3],
                          "best": [True, False, False, True]})
    fig = plots.heatmaps(cells, "lr", None, "cond", "val_mse")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["bins=3", "bins=6"]
    texts = [t.get_text() for t in axes[0].texts]
    assert texts == ["1.00 ± 0.10\nn=3", "2.00 ± 0.20\nn=3"]
    assert all(len(ax.patches) == 1 for ax in axes)  # the condition's best box
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["0.01", "0.1"]


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
    # A run with params of a task family this version does not know: refused naming the key (the
    # report shows the reason in place of the figure); a run without params: no figure, no error.
    cfg = base_config()
    cfg["task"]["name"] = "sinusoid"
    write_run(tmp_path / "sin", cfg, [], metrics=[], summary={"status": "completed"},
              params=rundir.load_params(real_sweep / "0" / rundir.PARAMS))
    with pytest.raises(components.RestoreError, match="task.name='sinusoid' is not allowed"):
        plots.best_fits(tmp_path / "sin")
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
