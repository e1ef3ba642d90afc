"""A refused run or sweep changes nothing: the run directory is checked before Hydra writes (its
``.hydra`` stays byte-identical, a bad value creates no directory), one sweep at a time holds a sweep
directory, and sweep_summary.csv never carries a formula."""
import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TINY, compose, run_cli, start_cli, sweep_table, wait_for

from maml_sweep import rundir, sweep, train
from maml_sweep.safe_text import is_number_text


def tree(folder: Path) -> dict:
    """Every entry under ``folder`` (relative path -> bytes, or "dir"), the job log aside."""
    return {p.relative_to(folder): ("dir" if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if not p.name.endswith(".log")}


def test_sweep_summary_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    for name, overrides in (("0", ["+note==2+5", "+who=@SUM(A1)", "+cmd=+HYPERLINK(x)", "optimizer.lr=-0.5",
                                   "+dash=-x"]),
                            ("1", ["+note=a", "+who=b", "+cmd=c", "optimizer.lr=0.1", "+dash=d"])):
        job = tmp_path / name  # two jobs: a column whose value every job shares is left out of the table
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / rundir.SUMMARY).write_text(json.dumps({"status": "failed", "config_hash": "h", "steps": 0,
                                                      "error": "=cmd|' /C calc'!A0"}))
    sweep.write_sweep_summary(tmp_path)
    with open(tmp_path / sweep.SWEEP_SUMMARY, newline="") as f:
        rows = list(csv.reader(f))
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not is_number_text(c))]
    row = dict(zip(rows[0], rows[1]))
    assert row["note"] == "'=2+5" and row["who"] == "'@SUM(A1)" and row["cmd"] == "'+HYPERLINK(x)"
    assert row["dash"] == "'-x" and row["optimizer.lr"] == "-0.5"  # a number stays a number
    assert row["error"] == "'=cmd|' /C calc'!A0"


def _sweep_config(sweep_dir: Path, *overrides):
    return compose(["seed=0", *TINY, f"hydra.sweep.dir={sweep_dir}", *overrides], hydra=True)


def test_a_second_sweep_into_a_held_sweep_directory_is_refused_in_one_line(tmp_path, capsys):
    first = _sweep_config(tmp_path / "s")
    sweep.SweepSummary().on_multirun_start(first)
    try:
        before = tree(tmp_path / "s")
        for second in (first, _sweep_config(tmp_path / "s", "model.hidden=[4]")):
            with pytest.raises(SystemExit) as stop:
                sweep.SweepSummary().on_multirun_start(second)
            err = capsys.readouterr().err.strip().splitlines()
            assert stop.value.code == 2 and len(err) == 1 and "another sweep is running in" in err[0]
            assert f"PID {os.getpid()}" in err[0] and tree(tmp_path / "s") == before
    finally:
        sweep.close(tmp_path / "s")
        sweep.release(tmp_path / "s")
    sweep.SweepSummary().on_multirun_start(first)  # released at its end: the sweep can go on
    sweep.close(tmp_path / "s")
    sweep.release(tmp_path / "s")


@pytest.mark.parametrize("what", ["link", "fifo"])
def test_a_sweep_directory_with_a_link_or_fifo_among_its_files_is_refused_before_any_write(tmp_path, capsys, what):
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    s = tmp_path / "s"
    (s / "0").mkdir(parents=True)
    for name in (sweep.RECORD, sweep.SUMMARY_LOCK, "0/maml_sweep.log", "1"):
        path = s / name
        path.unlink() if path.exists() else None
        if what == "link":
            path.symlink_to(victim)
        elif name != "1":
            os.mkfifo(path)
        else:
            continue
        before = {p: os.lstat(p).st_mode for p in s.rglob("*")}
        with pytest.raises(SystemExit) as stop:
            sweep.SweepSummary().on_multirun_start(_sweep_config(s))
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and str(path) in err[0]
        assert {p: os.lstat(p).st_mode for p in s.rglob("*")} == before and victim.read_text() == "mine\n"
        sweep.release(s)
        path.unlink()


@pytest.fixture(scope="module")
def completed(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    assert train.run(compose(TINY), run_dir)["status"] == "completed"
    return run_dir


def test_a_refused_run_is_refused_before_hydra_writes_and_a_bad_value_creates_no_directory(tmp_path, completed):
    """In-process: what the callback decides before Hydra creates or writes anything (read-only)."""
    run_dir = completed
    other = compose([*TINY, "seed=5", f"hydra.run.dir={run_dir}"], hydra=True)
    assert "another config" in " ".join(train.check_before_start(other))
    subdir = compose([*TINY, f"hydra.run.dir={run_dir}", "hydra.output_subdir=.hydra"], hydra=True)
    assert "hydra.output_subdir" in train.check_before_start(subdir)[0]
    bad = compose([*TINY, "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'new'}"], hydra=True)
    assert "optimizer.lr" in train.check_before_start(bad)[0]
    same = compose([*TINY, f"hydra.run.dir={run_dir}"], hydra=True)
    assert train.check_before_start(same) == []  # its own completed run: skipped later


@pytest.mark.slow
def test_a_refused_run_leaves_hydra_byte_identical_and_a_bad_value_leaves_no_directory(tmp_path):
    """The issue's case: a completed seed-0 run, then ``seed=5 hydra.output_subdir=.hydra`` into it."""
    assert run_cli([*TINY, "hydra.run.dir=run"], cwd=tmp_path).returncode == 0
    before = tree(tmp_path / "run")
    for extra in (["seed=5", "hydra.output_subdir=.hydra"], ["seed=5"], ["hydra.output_subdir=.hydra"]):
        proc = run_cli([*TINY, *extra, "hydra.run.dir=run"], cwd=tmp_path)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert tree(tmp_path / "run") == before
    proc = run_cli([*TINY, "optimizer.lr=-1", "hydra.run.dir=new/run"], cwd=tmp_path)
    assert proc.returncode == 2 and "optimizer.lr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_two_sweeps_started_into_one_directory_one_runs_the_other_is_refused(tmp_path):
    """The issue's case: two identical (and two different) sweeps at once into one sweep directory."""
    for i, second in enumerate((["seed=0,1,2,3"], ["seed=7,8"])):
        where = f"hydra.sweep.dir=s{i}"
        first = start_cli(["-m", "seed=0,1,2,3", *TINY, where], tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (tmp_path / f"s{i}" / sweep.PLAN).exists(), what="the first sweep to start")
        proc = run_cli(["-m", *second, *TINY, where], cwd=tmp_path)
        out, err = first.communicate(timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "another sweep is running in" in lines[0] and f"PID {first.pid}" in lines[0]
        assert first.returncode == 0, err
        rows = sweep_table(tmp_path / f"s{i}")
        assert [r["status"] for r in rows] == ["completed"] * 4 and [r["seed"] for r in rows] == ["0", "1", "2", "3"]
        record = yaml.safe_load((tmp_path / f"s{i}" / sweep.RECORD).read_text())
        assert record["hydra"]["overrides"]["task"][0] == "seed=0,1,2,3"


def test_a_finished_run_in_a_read_only_directory_is_skipped_as_documented(completed, monkeypatch):
    run_dir = completed
    real_access = os.access  # root writes anywhere, so a read-only directory is simulated
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == run_dir else real_access(p, mode))
    sweep.SweepSummary().on_run_start(compose([*TINY, f"hydra.run.dir={run_dir}"], hydra=True))  # accepted
    with pytest.raises(SystemExit):  # another config would have to write: refused as not writable
        sweep.SweepSummary().on_run_start(compose([*TINY, "seed=3", f"hydra.run.dir={run_dir}"], hydra=True))
