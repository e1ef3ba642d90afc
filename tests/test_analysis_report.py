"""``maml-sweep-report`` end to end: roles, the best per condition, a layout per sweep kind, bad input."""
import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import make_sweep
from conftest import run_module
from matplotlib.colors import to_hex

from maml_sweep.analysis import intervals, load_runs, plots
from maml_sweep.analysis.design import KINDS, experiment_design
from maml_sweep.analysis.report_cli import KINDS as CLI_KINDS
from maml_sweep.analysis.report_cli import main
from maml_sweep.tools.bench_report import main as bench_main
from maml_sweep.tools.synthetic import planted_sweep

MAX_PX = 2400


@pytest.fixture
def report(capsys, monkeypatch):
    """report(args, cwd) runs the command in-process in ``cwd``: (exit code, stdout, stderr)."""
    def call(args, cwd):
        monkeypatch.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    return call


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report saves, by name, with its pixel size at the saving dpi."""
    seen = {}
    save = plots.save_figure

    def keep(fig, out_dir, name, dpi=110):
        fig.canvas.draw()
        bbox = fig.get_tightbbox(fig.canvas.get_renderer())
        seen[name] = (fig, bbox.width * dpi, bbox.height * dpi)
        return save(fig, out_dir, name, dpi)
    monkeypatch.setattr(plots, "save_figure", keep)
    return seen


def planted_grid(folder):
    """bins 3 (easy) and 6 (hard) x inner lr: the planted winner is lr 0.03 for bins 3, 0.1 for bins 6."""
    best = {3: 0.03, 6: 0.1}
    configs = [{"task.bins": b, "algorithm.inner_lr": lr} for b, lr in itertools.product([3, 6], [0.01, 0.03, 0.1])]
    planted_sweep(folder, configs, level=lambda c: (1.0 if c["task.bins"] == 3 else 3.0)
                  * (1 + 5 * abs(np.log10(c["algorithm.inner_lr"] / best[c["task.bins"]]))))
    return best


@pytest.mark.slow  # a whole report with figures: 4-9 s
def test_grid_best_per_condition_and_no_cross_condition_pairs(tmp_path, report, figures):
    best = planted_grid(tmp_path / "s")
    code, out, err = report([tmp_path / "s", "--out", "r", "--resolve", "0.05"], cwd=tmp_path)
    assert code == 0, err
    folder = tmp_path / "r"
    precision = pd.read_csv(folder / "precision.csv")
    runs = load_runs(tmp_path / "s").runs
    for _, row in precision.iterrows():  # the advisor by hand: runner-up minus best at k=5, per seed and task
        part = runs[runs["task.bins"] == row["task.bins"]]
        lr = {b: sorted(part["algorithm.inner_lr"].unique(), key=lambda v: abs(np.log10(v / best[b])))
              for b in best}[row["task.bins"]]
        mats = {v: {int(r.seed): np.load(Path(r.path) / "test_mse.npz")["trained"][:, 5]
                    for r in part[part["algorithm.inner_lr"] == v].itertuples()} for v in lr[:2]}
        diff = np.stack([mats[lr[1]][s] - mats[lr[0]][s] for s in (0, 1, 2)])
        comp = intervals.components(diff)
        assert row["resolvable"] == pytest.approx(comp.half_width(3, diff.shape[1]), rel=1e-9)
        for col, need in (("seeds_needed", comp.seeds_for(0.05)), ("tasks_needed", comp.tasks_for(0.05))):
            assert row[col] == need if need is not None else np.isnan(row[col])
    table = pd.read_csv(folder / "best.csv")
    assert list(table["task.bins"]) == [3, 6]
    assert dict(zip(table["task.bins"], table["algorithm.inner_lr"])) == best
    assert list(table.columns[:4]) == ["task.bins", "algorithm.inner_lr", "n_seeds", "val_mse"]
    assert {"test_mean_k5", "test_median_k5", "test_iqm_k5", "test_iqm_k5_low"} <= set(table.columns)
    paired = pd.read_csv(folder / "paired.csv")
    assert len(paired) == 2 * 2 * 3  # per condition: 2 others x 3 report steps, never across conditions
    for _, row in paired.iterrows():
        assert row["algorithm.inner_lr"] != best[row["task.bins"]]
    assert (paired["mean_diff_low"] > 0).all()  # the planted winners are better on the test bank
    md = (folder / "report.md").read_text()
    assert "conditions (what the task is; compared only within): `task.bins`" in md
    assert "hyperparameters: `algorithm.inner_lr`" in md and "a grid of hyperparameters" in md
    assert md.index("## The answer") < md.index("## Figures") < md.index("## All configurations")
    assert {"heatmap", "learning_curves", "adaptation", "forest", "ecdf"} <= set(figures)
    assert all(w <= MAX_PX for _, w, _ in figures.values()), {n: w for n, (_, w, _) in figures.items()}
    heat = figures["heatmap"][0]
    assert [ax.get_title() for ax in heat.axes if ax.get_title()] == ["bins=3", "bins=6"]


def test_a_configuration_with_a_non_finite_seed_is_never_best(tmp_path, report):
    configs = [{"algorithm.inner_lr": 0.1}, {"algorithm.inner_lr": 0.3}]
    # 0.3 is better on its finite seeds, but one seed's val_mse is inf and another's NaN
    planted_sweep(tmp_path / "s", configs, level=lambda c: 1.0 if c["algorithm.inner_lr"] == 0.1 else 0.9,
                  statuses={(1, 1): float("inf"), (1, 2): float("nan")})
    code, _, err = report([tmp_path / "s", "--out", "r", "-q"], cwd=tmp_path)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "r" / "best.csv")
    assert list(table["algorithm.inner_lr"]) == [0.1]
    ranked = pd.read_csv(tmp_path / "r" / "ranked.csv")
    bad = ranked[ranked["algorithm.inner_lr"] == 0.3].iloc[0]
    assert bad["n_nonfinite"] == 2 and np.isnan(bad["rank"])
    assert "inner_lr=0.3 (2 non-finite" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.slow  # a whole report with figures: 4-9 s
def test_two_runs_are_overlaid_on_one_axis(tmp_path, report, figures):
    planted_sweep(tmp_path / "a", [{"algorithm.inner_lr": 0.1, "train.outer_steps": 200}], seeds=(0,))
    planted_sweep(tmp_path / "b", [{"algorithm.inner_lr": 0.3, "train.outer_steps": 400}], seeds=(1,),
                  level=lambda c: 1.4, random_seed=1)
    code, _, err = report([tmp_path / "a" / "0", tmp_path / "b" / "0", "--out", "r", "-q"], cwd=tmp_path)
    assert code == 0, err
    d = experiment_design(load_runs([tmp_path / "a" / "0", tmp_path / "b" / "0"]))
    assert d.kind == "overlay" and d.conditions == []
    fig = figures["learning_curves"][0]
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["inner_lr=0.1, outer_steps=200", "inner_lr=0.3, outer_steps=400"]


ALGORITHMS = ["maml", "fomaml", "anil", "metasgd", "reptile", "pretrain", "scratch"]


@pytest.mark.slow  # a whole report with figures: 4-9 s
def test_an_algorithms_sweep_gets_one_distinct_colour_per_method_in_every_figure(tmp_path, report, figures):
    planted_sweep(tmp_path / "s", [{"algorithm": a} for a in ALGORITHMS],
                  level=lambda c: 1.0 + ALGORITHMS.index(c["algorithm"]) * 0.2)
    code, _, err = report([tmp_path / "s", "--out", "r", "-q"], cwd=tmp_path)
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "a comparison of methods" in md and "methods: `algorithm.name`" in md
    colours = {}
    for name in ("learning_curves", "adaptation"):
        fig = figures[name][0]
        lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in ALGORITHMS]
        seen = {ln.get_label(): to_hex(ln.get_color()) for ln in lines}
        assert sorted(seen) == sorted(ALGORITHMS) and len(set(seen.values())) == 7
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(legend) == len(set(legend)) and set(ALGORITHMS) <= set(legend)
        colours[name] = seen
    assert colours["learning_curves"] == colours["adaptation"]  # the same colour for a method everywhere
    best = pd.read_csv(tmp_path / "r" / "best.csv")
    assert list(best["algorithm.name"]) == ["maml"]
    paired = pd.read_csv(tmp_path / "r" / "paired.csv")
    assert set(paired["algorithm.name"]) == set(ALGORITHMS) - {"maml"}


@pytest.mark.slow  # a whole report with figures: 4-9 s
def test_report_of_the_real_sweep(real_sweep, tmp_path, report):
    code, out, err = report([real_sweep], cwd=tmp_path)
    assert code == 0, err
    md_path, html_path = out.split()
    folder = tmp_path / Path(md_path).parent
    assert folder.parent == tmp_path / "analysis" and folder.name.startswith("multirun_2026-11-26_10-00-00-")
    assert "Traceback" not in err
    html = (folder / "report.html").read_text()
    assert 'src="http' not in html and "<table" in html and "class='best'" in html
    best = pd.read_csv(folder / "best.csv")
    assert list(best["task.bins"]) == [3, 6] and (best["n_seeds"] == 2).all()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.slow  # a whole report with figures: ~8 s
def test_a_search_gets_history_slices_and_importance_and_no_wide_figure(tmp_path, report, figures):
    rng = np.random.default_rng(1)
    configs = [{"algorithm.inner_lr": float(10 ** rng.uniform(-3, 0)), "optimizer.lr": float(10 ** rng.uniform(-4, -1)),
                "algorithm.inner_steps": int(rng.choice([1, 3, 5, 10]))} for _ in range(20)]
    planted_sweep(tmp_path / "s", configs, seeds=(0,),
                  level=lambda c: 1 + 3 * abs(np.log10(c["algorithm.inner_lr"]) + 1) ** 2)
    code, _, err = report([tmp_path / "s", "--out", "r", "-q"], cwd=tmp_path)
    assert code == 0, err
    folder = tmp_path / "r"
    for name in ("search_history.png", "search_slices.png", "importance.csv", "trials.csv"):
        assert (folder / name).exists(), name
    imp = pd.read_csv(folder / "importance.csv")
    assert imp["param"].iloc[0] == "algorithm.inner_lr"  # the planted parameter
    assert "heatmap" not in figures  # no grids over continuous values
    assert all(w <= MAX_PX for _, w, _ in figures.values()), {n: w for n, (_, w, _) in figures.items()}
    assert figures["search_slices"][0].axes[0].get_xscale() == "log"


def test_kinds_are_one_list():
    assert CLI_KINDS == KINDS


def test_design_roles_from_what_differs(tmp_path):
    make_sweep(tmp_path / "s", {"algorithm": ["maml", "fomaml"], "task.bins": [2, 3, 4],
                                "algorithm.inner_lr": [0.01, 0.1]}, seeds=(0,))
    d = experiment_design(load_runs(tmp_path / "s"))
    assert (d.conditions, d.methods, d.hyper) == (["task.bins"], ["algorithm.name"], ["algorithm.inner_lr"])
    assert d.kind == "algorithms" and d.n_configs == 12
    d2 = experiment_design(load_runs(tmp_path / "s"), condition=["inner_lr"])
    assert d2.conditions == ["task.bins", "algorithm.inner_lr"] and d2.hyper == []


def test_runs_of_another_task_are_a_condition_named_by_its_family(tmp_path):
    planted_sweep(tmp_path / "a", [{"algorithm.inner_lr": 0.1}], seeds=(0,))
    # what experiment=maml2017_sine does: another task family, a dozen task.* values with it
    planted_sweep(tmp_path / "b", [{"algorithm.inner_lr": 0.01}], seeds=(0,), preset={
        "name": "maml2017_sine", "task.name": "sine", "task.xmin": -5.0, "task.xmax": 5.0, "task.noise": 0.0})
    rs = load_runs([tmp_path / "a" / "0", tmp_path / "b" / "0"])
    d = experiment_design(rs)
    assert d.conditions == ["task.name"] and d.hyper == ["algorithm.inner_lr"]
    assert d.methods == ["override.experiment"] and d.kind == "algorithms"


@pytest.mark.slow  # two whole reports: ~15 s
def test_two_sweeps_side_by_side_in_one_command(real_sweep, tmp_path):
    a, b = tmp_path / "2026-11-26" / "10-00-00", tmp_path / "2026-11-26" / "11-00-00"
    shutil.copytree(real_sweep, a)
    shutil.copytree(real_sweep, b)
    out = tmp_path / "cmp"
    assert main([str(a), str(b), "--out", str(out), "-q"]) == 0
    md = (out / "report.md").read_text()
    assert "methods: `sweep`" in md and "**16 runs**" in md
    ranked = pd.read_csv(out / "ranked.csv")
    assert len(ranked) == 8 and set(ranked["sweep"]) == {"10-00-00", "11-00-00"}


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "PATH '{missing}' does not exist (give run or sweep directories, or globs)"),
    (["{empty}"], "PATH '{empty}': no run directories found (a run has .hydra/config.yaml)"),
    (["{sweep}", "--metric", "test_mse_k1"], "--metric 'test_mse_k1': the best is chosen on a validation metric "
                                             "of these runs; allowed: {metrics}"),
    (["{sweep}", "--condition", "optimizer.lr"], "--condition 'optimizer.lr' is not a key that differs between "
                                                 "these runs; allowed: task.bins, algorithm.inner_lr"),
])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(real_sweep, tmp_path, report, args, message):
    (tmp_path / "empty").mkdir()
    from maml_sweep.analysis.aggregate import is_test_metric
    fill = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "sweep": real_sweep,
            "metrics": ", ".join(m for m in load_runs(real_sweep).metrics if not is_test_metric(m))}
    code, out, err = report([a.format(**fill) for a in args], cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"maml-sweep-report: error: {message.format(**fill)}"]
    assert not (tmp_path / "analysis").exists()


def test_usage_errors_are_one_line(tmp_path, report):
    code, out, err = report([], cwd=tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "PATH" in err


@pytest.mark.slow
def test_the_command_runs_as_a_module_in_a_subprocess(real_sweep, tmp_path):
    proc = run_module("maml_sweep.analysis.report_cli", [real_sweep, "--out", "r", "-q"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path.joinpath("r", "report.md").relative_to(tmp_path)),
                                   str(tmp_path.joinpath("r", "report.html").relative_to(tmp_path))]
    assert proc.stderr == ""


@pytest.mark.slow
def test_benchmark_script_runs_on_a_small_synthetic_sweep(tmp_path, capsys):
    bench_main(["--runs", "100", "--dir", str(tmp_path)])  # its exit code compares a time with a target
    out = capsys.readouterr().out
    assert "made 100 synthetic runs" in out and "x the 30 s target" in out and "peak resident" in out
    assert (tmp_path / "report" / "report.html").exists()
