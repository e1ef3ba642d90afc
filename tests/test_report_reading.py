"""Reports read naturally for what was loaded: unique folders, named inputs, explained failures,
single runs and single failed runs, tables that scroll inside the page, per-run cost points."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import make_sweep
from conftest import set_summary

from maml_sweep.analysis import load_runs
from maml_sweep.analysis.report_cli import main


def _one_run(root: Path, seed: int = 0) -> Path:
    """A single run directory ``root/runs/2026-11-27/10-0<seed>-00`` (one config, one seed)."""
    sweep = root / f"tmp{seed}"
    [run] = make_sweep(sweep, {}, seeds=(seed,), with_adaptation=True)
    dst = root / "runs" / "2026-11-27" / f"10-0{seed}-00"
    dst.parent.mkdir(parents=True, exist_ok=True)
    run.rename(dst)
    return dst


def _report(args, capsys) -> tuple[Path, str, str]:
    assert main([*map(str, args), "-q"]) == 0
    out, err = capsys.readouterr()
    md = Path(out.split()[0])
    return md.parent, md.read_text(), err


def test_two_single_runs_of_one_day_get_their_own_report_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = _one_run(tmp_path, 0), _one_run(tmp_path, 1)
    folder_a, md_a, _ = _report([a], capsys)
    folder_b, md_b, _ = _report([b], capsys)
    assert folder_a != folder_b and folder_a.parent == folder_b.parent == Path("analysis")
    assert folder_a.name.startswith("runs_2026-11-27_10-00-00-")
    assert (folder_a / "report.md").read_text() == md_a  # b did not overwrite a
    assert md_a.splitlines()[0] == f"# Report on {a} (1 run)"
    again, _, err = _report([a], capsys)  # the same input refreshes its own folder, quietly
    assert again == folder_a and "warning" not in err


def test_out_into_another_inputs_report_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = _one_run(tmp_path, 0), _one_run(tmp_path, 1)
    _report([a, "--out", "mine"], capsys)
    _, _, err = _report([b, "--out", "mine"], capsys)
    assert err.strip() == f"maml-sweep-report: warning: replacing the report in mine (it was made from {a.resolve()})"


def test_failed_and_diverged_runs_are_listed_with_their_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runs = make_sweep(tmp_path / "s", {"algorithm.inner_lr": [0.01, 0.1, 50.0]}, seeds=(0, 1))
    set_summary(runs[4], status="diverged", diverged_step=137, val_meta_objective=None)
    set_summary(runs[5], status="failed", steps=0, error="optimizer.lr=0.0 is not allowed: must be > 0")
    folder, md, _ = _report([tmp_path / "s"], capsys)
    issues = pd.read_csv(folder / "issues.csv")
    assert list(issues["issue"]) == ["diverged at step 137",
                                     "failed: optimizer.lr=0.0 is not allowed: must be > 0"]
    assert "## Runs that did not complete, and damaged files" in md
    assert "diverged at step 137" in md and "must be &gt; 0" in md  # run data is escaped


def test_a_single_run_reads_naturally(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _, md, _ = _report([_one_run(tmp_path)], capsys)
    assert "1 runs" not in md and "`None`" not in md and "1 seed(s)" not in md
    assert not re.search(r"± *[(|*\n]", md), "a ± with nothing after it"
    assert "One run." in md and "Its results over 1 seed" in md and "fewer than 3 seeds give no interval" in md
    assert "Roles of the keys" not in md and "## All configurations" not in md


def test_a_single_failed_run_says_why_and_that_nothing_ranks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = _one_run(tmp_path)
    set_summary(run, status="failed", steps=0, error="task.bins=0 is not allowed: must be >= 1",
                 val_meta_objective=None, val_mse=None)
    (run / "adaptation.csv").unlink()
    folder, md, _ = _report([run], capsys)
    answer = md.split("## The answer", 1)[1].split("\n## ", 1)[0]
    assert "no eligible configuration" in answer
    assert "failed: task.bins=0 is not allowed: must be &gt;= 1" in md or "must be >= 1" in md
    assert "1 failed" in md


def test_html_tables_scroll_inside_their_own_box(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_sweep(tmp_path / "s", {"task.bins": [3, 6]}, seeds=(0, 1))
    folder, _, _ = _report([tmp_path / "s"], capsys)
    html = (folder / "report.html").read_text()
    assert html.count("<table") == html.count('<div class="scroll"><table') > 0
    assert ".scroll{overflow-x:auto" in html


def test_cost_figure_shows_one_point_per_run(tmp_path):
    from maml_sweep.analysis import plots

    make_sweep(tmp_path / "s", {"task.bins": [3, 6]}, seeds=(0, 1, 2))
    rs = load_runs(tmp_path / "s")
    fig = plots.cost(rs.runs, "task.bins")
    for ax in fig.axes:
        points = sum(len(c.get_offsets()) for c in ax.collections)
        assert points >= len(rs.runs)  # 6 run points (+ 2 median markers)
        assert ax.get_ylabel() in ("ms per outer step", "wall time per run (s)")
    import matplotlib.pyplot as plt
    plt.close(fig)


@pytest.mark.parametrize("section", ["section_header", "section_answer", "section_problems", "section_tables"])
def test_write_report_is_one_short_function_per_section(section):
    import inspect

    from maml_sweep.analysis import report

    assert len(inspect.getsource(getattr(report, section)).splitlines()) <= 60
    assert len(inspect.getsource(report.write_report).splitlines()) <= 25


def test_every_section_is_in_the_one_list_and_markdown_stays_out_of_the_statistics():
    import inspect

    from maml_sweep.analysis import figures_report, paired, report

    sections = {f for m in (report, figures_report) for n, f in vars(m).items()
                if n.startswith("section_") and inspect.isfunction(f)}
    assert sections == set(report.SECTIONS) and report.SECTIONS[0] is report.section_header
    assert not {n for n in vars(paired) if n in ("num", "num_ci", "pct", "code", "Doc")}  # no formatting there


@pytest.mark.parametrize("est,half,text", [(0.38451, 0.007706, "0.3845 ± 0.0077"), (1.6204, 0.694, "1.62 ± 0.69"),
                                           (801.3, 2222.0, "800 ± 2200"), (0.5, float("nan"), "0.5"),
                                           (12.34567, 0.0, "12.3")])
def test_numbers_are_rounded_to_what_their_interval_supports(est, half, text):
    from maml_sweep.analysis.document import num_pm

    assert num_pm(est, half) == text


@pytest.mark.slow  # a whole report: ~5 s
def test_a_damaged_test_mse_file_is_left_out_and_named(tmp_path, monkeypatch, capsys):
    from maml_sweep.tools.synthetic import planted_sweep

    monkeypatch.chdir(tmp_path)
    runs = planted_sweep(tmp_path / "s", [{"algorithm.inner_lr": 0.1}, {"algorithm.inner_lr": 0.3}])
    (runs[1] / "test_mse.npz").write_bytes(b"PK\x03\x04 not a zip")
    (runs[4] / "test_mse.npz").unlink()
    (runs[4] / "test_mse.npz").symlink_to(tmp_path / "elsewhere.npz")
    folder, md, _ = _report([tmp_path / "s"], capsys)
    issues = pd.read_csv(folder / "issues.csv")
    named = issues[issues["issue"].str.startswith("left out of the test statistics")]
    assert sorted(named["run"].astype(str)) == ["1", "4"]
    best = pd.read_csv(folder / "best.csv")
    assert best["n_seeds"].iloc[0] == 3 and np.isnan(best["test_mean_k5_low"].iloc[0])  # 2 usable seeds: no interval
