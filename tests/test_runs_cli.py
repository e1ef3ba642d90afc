"""``maml-sweep-runs ls/show/diff`` on the real 8-run sweep (task.bins x algorithm.inner_lr x seed)."""
import csv
import io
import json
import shutil

import pytest
from conftest import summary_of

from maml_sweep import runs_cli, runs_index


def run(capsys, *args) -> str:
    runs_cli.main([str(a) for a in args])
    return capsys.readouterr().out


def test_ls_csv_has_the_columns_and_one_row_per_run_with_its_numbers(real_sweep, capsys):
    rows = list(csv.DictReader(io.StringIO(run(capsys, "ls", real_sweep, "--format", "csv"))))
    assert list(rows[0]) == list(runs_index.LS_COLUMNS)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed"}
    for job, row in enumerate(rows):
        summary = summary_of(real_sweep / str(job))
        assert row["directory"].endswith(f"10-00-00/{job}")
        assert float(row["val_mse"]) == summary["val_mse"] and float(row["test_mse_k5"]) == summary["test_mse_k5"]
        assert "seed=" in row["overrides"] and row["started"][:2] == "20"


def test_ls_filters_with_where_and_sorts_descending(real_sweep, capsys):
    rows = json.loads(run(capsys, "ls", real_sweep, "--where", "task.bins=6", "--where", "seed=1",
                          "--sort", "-val_mse", "--format", "json"))
    assert len(rows) == 2 and all("task.bins=6" in r["overrides"] and "seed=1" in r["overrides"] for r in rows)
    assert rows[0]["val_mse"] >= rows[1]["val_mse"]
    assert json.loads(run(capsys, "ls", real_sweep, "--where", "status=failed", "--format", "json")) == []


def test_ls_table_ends_with_the_count_and_neutralises_formula_cells(real_sweep, tmp_path, monkeypatch, capsys):
    assert run(capsys, "ls", real_sweep).rstrip().endswith("8 runs")
    shutil.copytree(real_sweep / "0", tmp_path / "=HYPERLINK(1)")
    monkeypatch.chdir(tmp_path)
    rows = list(csv.DictReader(io.StringIO(run(capsys, "ls", ".", "--format", "csv"))))
    assert [r["directory"] for r in rows] == ["'=HYPERLINK(1)"]


def test_diff_names_exactly_the_swept_keys_that_differ(real_sweep, capsys):
    a, b = runs_index.read_run(real_sweep / "0"), runs_index.read_run(real_sweep / "7")
    assert [k for k, _, _ in runs_index.config_diff(a, b)] == ["algorithm.inner_lr", "seed", "task.bins"]
    text = run(capsys, "diff", real_sweep / "0", real_sweep / "7")
    block = text.split("config keys that differ: 3")[1].split("\n\n")[0].split()
    assert block[:3] == ["key", "A", "B"] and block[3::3] == ["algorithm.inner_lr", "seed", "task.bins"]
    metrics = {line.split()[0]: line.split()[1:] for line in text.split("\nmetrics\n")[1].splitlines()}
    assert metrics["val_mse"] == [f"{a.summary['val_mse']:.4g}", f"{b.summary['val_mse']:.4g}"]
    assert metrics["test_mse_k5"] == [f"{a.summary['test_mse_k5']:.4g}", f"{b.summary['test_mse_k5']:.4g}"]
    assert "config keys that differ: 0 (same config)" in run(capsys, "diff", real_sweep / "3", real_sweep / "3")


def test_show_gives_status_overrides_results_and_files(real_sweep, capsys):
    text = run(capsys, "show", real_sweep / "5")
    lines = dict(line.split(None, 1) for line in text.splitlines()[:4])
    overrides = " ".join(o.text for o in runs_index.read_run(real_sweep / "5").overrides)
    assert lines["status"].startswith("completed (step 24/24") and lines["overrides"] == overrides
    for name in ("summary.json", "metrics.csv", "params.npz", "adaptation.csv"):
        assert f"\n  {name} " in text
    assert f"test_mse_k5 {summary_of(real_sweep / '5')['test_mse_k5']:.4g}" in " ".join(text.split())


@pytest.mark.parametrize("args", [["show", "."], ["diff", "nowhere", "."], ["ls", "nowhere"],
                                  ["ls", "--where", "seed"]])
def test_bad_input_is_one_line_and_exit_2(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        runs_cli.main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("maml-sweep-runs: error: ") and err.count("\n") == 1
