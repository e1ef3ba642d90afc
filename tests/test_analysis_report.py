"""``maml-sweep-report`` end to end: the report files, flags, side-by-side sweeps, bad input."""
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis_fixtures import make_sweep
from conftest import run_module
from maml_sweep.analysis import load_runs
from maml_sweep.analysis.bench import main as bench_main
from maml_sweep.analysis.report_cli import main
from maml_sweep.analysis.roles import RoleError, choose_roles


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


def test_report_writes_markdown_html_figures_and_tables(real_sweep, tmp_path, report):
    code, out, err = report([real_sweep], cwd=tmp_path)
    assert code == 0, err
    md_path, html_path = out.split()
    folder = tmp_path / Path(md_path).parent
    assert folder.parent == tmp_path / "analysis" and folder.name.startswith("multirun_2026-11-26_10-00-00-")
    assert html_path == str(Path(md_path).parent / "report.html")
    assert "loaded 8 runs" in err and "Traceback" not in err  # progress on stderr
    for name in ("learning_curves", "heatmap", "adaptation", "best_fits", "cost"):
        assert (folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (folder / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    md = (folder / "report.md").read_text()
    rs = load_runs(real_sweep)
    agg = pd.read_csv(folder / "aggregate.csv")
    val = agg[agg["metric"] == "val_mse"].sort_values("mean")  # selection: the shared validation MSE
    best = val.iloc[0]
    assert f"`task.bins={best['task.bins']}`" in md and "**8 runs**" in md
    assert "![" in md and "(learning_curves.png)" in md and "(heatmap.png)" in md
    assert "(adaptation.png)" in md and "(best_fits.png)" in md
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and 'src="http' not in html and "<table" in html
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 8 and set(runs.columns) >= set(rs.runs.columns[:8])
    ranked = pd.read_csv(folder / "ranked.csv")
    assert ranked["val_mse"].iloc[0] == pytest.approx(best["mean"])
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


def test_flags_choose_metric_hue_facet_and_heatmap(real_sweep, tmp_path):
    out = tmp_path / "r"
    code = main([str(real_sweep), "--out", str(out), "--metric", "ms_per_step", "--hue", "inner_lr",
                 "--facet", "bins", "--heatmap", "inner_lr,bins", "-q"])
    assert code == 0
    md = (out / "report.md").read_text()
    assert "colour: `algorithm.inner_lr`, columns: `task.bins`" in md
    assert "you asked for `ms_per_step`; the choice is made on validation: `val_mse`" in md
    assert "Final `ms_per_step` (mean over seeds) over `algorithm.inner_lr` and `task.bins`" in md


def test_roles_are_chosen_from_what_was_swept(tmp_path):
    make_sweep(tmp_path / "s", {"algorithm": ["maml", "fomaml"], "task.bins": [2, 3, 4],
                                "algorithm.inner_lr": [0.01, 0.1]}, seeds=(0,))
    rs = load_runs(tmp_path / "s")
    roles = choose_roles(rs)
    assert (roles.hue, roles.col, roles.row) == ("task.bins", "algorithm.name", "algorithm.inner_lr")
    assert (roles.heat_x, roles.heat_y) == ("task.bins", "algorithm.name")
    assert roles.metric == roles.select == "val_mse"
    assert choose_roles(rs, metric="test_mse_k1").select == "val_mse"
    assert choose_roles(rs, metric="val_meta_objective").select == "val_meta_objective"
    assert choose_roles(rs, hue="algorithm").hue == "algorithm.name"
    with pytest.raises(RoleError, match=r"^--hue 'lr' is not a swept key of these runs; allowed: "
                                        r"algorithm.name, task.bins, algorithm.inner_lr$"):
        choose_roles(rs, hue="lr")
    with pytest.raises(RoleError, match="^--facet takes at most two keys"):
        choose_roles(rs, facet=["bins,inner_lr,algorithm"])


def test_two_sweeps_side_by_side_in_one_command(real_sweep, tmp_path):
    a, b = tmp_path / "2026-11-26" / "10-00-00", tmp_path / "2026-11-26" / "11-00-00"
    shutil.copytree(real_sweep, a)
    shutil.copytree(real_sweep, b)
    out = tmp_path / "cmp"
    assert main([str(a), str(b), "--out", str(out), "-q"]) == 0
    md = (out / "report.md").read_text()
    assert "`sweep`" in md and "columns: `sweep`" in md and "**16 runs**" in md
    ranked = pd.read_csv(out / "ranked.csv")
    assert len(ranked) == 8 and set(ranked["sweep"]) == {"10-00-00", "11-00-00"}


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "PATH '{missing}' does not exist (give run or sweep directories, or globs)"),
    (["{empty}"], "PATH '{empty}': no run directories found (a run has .hydra/config.yaml)"),
    (["{sweep}", "--metric", "accuracy"], "--metric 'accuracy' is not a metric of these runs; allowed: "
                                          "{metrics}"),
    (["{sweep}", "--hue", "optimizer.lr"], "--hue 'optimizer.lr' is not a swept key of these runs; allowed: "
                                           "task.bins, algorithm.inner_lr"),
    (["{sweep}", "--heatmap", "bins"], "--heatmap takes two keys X,Y; got 1: bins"),
])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(real_sweep, tmp_path, report, args, message):
    (tmp_path / "empty").mkdir()
    fill = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "sweep": real_sweep,
            "metrics": ", ".join(load_runs(real_sweep).metrics)}
    code, out, err = report([a.format(**fill) for a in args], cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"maml-sweep-report: error: {message.format(**fill)}"]
    assert "Traceback" not in err
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
