"""Reading run directories (rundir_read, metrics_csv, components.restore): one override parser, status
words in one place, metrics reading and thinning, restore(); and the package rules that keep it the only
reader (no analysis module imports the trainer, no broad except that swallows)."""
import ast
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import base_config, make_sweep, write_run
from hydra.core.override_parser.overrides_parser import OverridesParser

from maml_sweep import components, metrics_csv, rundir, rundir_read
from maml_sweep.analysis import load_runs
from maml_sweep.sweep import summary_rows

PACKAGE = Path(rundir.__file__).parent
COLUMNS = list(rundir.METRIC_COLUMNS)


@pytest.mark.parametrize("text", ["task.bins=3", "+train.foo=1", "++model.x=[1,2]", "~task.noise",
                                  "~task.noise=0.1", "algorithm=fomaml", "db@backup=mysql",
                                  "model.hidden=[40,40]", "+group@pkg=opt", "seed=0"])
def test_override_parser_reads_keys_like_hydra(text):
    ours = rundir_read.parse_override(text)
    theirs = OverridesParser.create().parse_override(text)
    op = {"CHANGE": "set", "ADD": "add", "FORCE_ADD": "force_add", "DEL": "delete"}[theirs.type.name]
    value = theirs.get_value_element_as_str() if theirs.value() is not None else None
    assert (ours.key, ours.op, ours.value, ours.text) == (theirs.key_or_group, op, value, text)


def test_hydra_overrides_and_non_overrides_are_not_keys():
    assert rundir_read.parse_override("hydra.run.dir=x") is None
    assert rundir_read.parse_override("hydra/launcher=joblib") is None
    assert rundir_read.parse_override("task.bins") is None  # no value, no deletion


def test_sweep_summary_and_loader_read_deletions_and_additions_alike(tmp_path):
    sweep = tmp_path / "sweep"
    a = base_config(0)
    b = base_config(0)
    del b["task"]["noise"]
    b["train"]["foo"] = 1
    write_run(sweep / "0", a, ["task.noise=0.1", "seed=0"], summary={"status": "completed"})
    write_run(sweep / "1", b, ["~task.noise", "+train.foo=1", "seed=0"], summary={"status": "completed"})
    (sweep / "2").mkdir()  # a job that has not written anything yet
    rows = summary_rows(sweep)
    assert [r["task.noise"] for r in rows[:2]] == ["0.1", None]
    assert rows[1]["train.foo"] == "1" and rows[1]["overrides"] == "~task.noise +train.foo=1 seed=0"
    assert rows[2]["status"] == rundir.NO_SUMMARY
    rs = load_runs(sweep)
    assert rs.swept == ["task.noise", "train.foo"]
    assert rs.runs["task.noise"].iloc[0] == 0.1 and np.isnan(rs.runs["task.noise"].iloc[1])


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_status_words_are_written_only_in_rundir():
    words = set(rundir.STATUSES) | {rundir.KILLED, rundir.NO_SUMMARY, rundir.CORRUPT, "pending"}
    offenders = {str(p.relative_to(PACKAGE)): sorted(_string_constants(p) & words)
                 for p in PACKAGE.rglob("*.py") if p.name != "rundir.py"}
    assert {k: v for k, v in offenders.items() if v} == {}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
            names.update(f"{'.' * node.level}{node.module + '.' if node.module else ''}{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_analysis_module_imports_the_trainer():
    for path in (PACKAGE / "analysis").glob("*.py"):
        bad = {n for n in _imports(path) if n.rstrip(".").split(".")[-1] == "train" or ".train." in n}
        assert not bad, f"{path.name} imports {bad}"


def test_no_broad_except_swallows_errors():
    """``except:``, ``except Exception`` and ``except BaseException`` only where the handler re-raises."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ExceptHandler):
                continue
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            broad = any(t is None or (isinstance(t, ast.Name) and t.id in ("Exception", "BaseException"))
                        for t in types)
            reraises = any(isinstance(n, ast.Raise) for stmt in node.body for n in ast.walk(stmt))
            assert not broad or reraises, f"{path.relative_to(PACKAGE)}:{node.lineno} swallows every error"


def _curve(n: int, low_at: int | None = None) -> np.ndarray:
    steps = np.arange(1, n + 1) * 10
    val = 1.0 + np.sin(steps / 77.0) ** 2
    if low_at is not None:
        val[low_at] = -1.0
    return np.column_stack([steps, val, val * 2, val * 3, steps / 1000])


def test_thinning_keeps_first_last_and_lowest_rows_and_a_bounded_count():
    values = _curve(100_003, low_at=55_555)
    thin = metrics_csv.thin_rows(values, COLUMNS, 1000)
    assert len(thin) <= 1000 and len(thin) > 250  # a power-of-two stride keeps at least a quarter of the room
    assert thin[0].tolist() == values[0].tolist() and thin[-1].tolist() == values[-1].tolist()
    assert thin[:, 1].min() == -1.0 and 555_560 in thin[:, 0]
    assert np.all(np.diff(thin[:, 0]) > 0)  # step order, each row once
    assert metrics_csv.thin_rows(values[:1000], COLUMNS, 1000).shape == (1000, 5)  # short curves stay whole


def test_thinned_runs_of_one_schedule_share_their_steps():
    long, short = _curve(50_000), _curve(20_000)
    steps = lambda v: set(metrics_csv.thin_rows(v, COLUMNS, 500)[:, 0])  # noqa: E731
    grid = {s for s in steps(long) if s % (10 * metrics_csv.thin_stride(50_000, 500)) == 10}
    assert grid and grid - {long[-1, 0]} <= steps(short) | set(long[20_000:, 0])


def test_read_metrics_thins_chunk_by_chunk_like_in_memory(tmp_path, monkeypatch):
    values = _curve(10_000, low_at=7_777)
    metrics_csv.write_metrics(tmp_path, [tuple(r) for r in values])
    monkeypatch.setattr(metrics_csv, "_CHUNK_ROWS", 999)  # many chunks, boundaries inside the stride
    got = metrics_csv.read_metrics(tmp_path, max_points=300)
    want = metrics_csv.thin_rows(metrics_csv.read_metrics(tmp_path).values, COLUMNS, 300)
    assert got.rows == 10_000 and got.issue is None and np.array_equal(got.values, want)
    assert np.allclose(got.last, values[-1], rtol=1e-9) and -1.0 in got.values[:, 1]


@pytest.mark.parametrize("small_bytes", [1 << 18, 0], ids=["python", "pandas"])
def test_read_metrics_stops_at_damage_and_names_it(tmp_path, monkeypatch, small_bytes):
    monkeypatch.setattr(metrics_csv, "_SMALL_BYTES", small_bytes)
    metrics_csv.write_metrics(tmp_path, [tuple(r) for r in _curve(5)])
    path = tmp_path / rundir.METRICS
    good = path.read_text()
    cases = {good[:-3]: (4, "metrics.csv: truncated last line dropped"),
             good + "10,,1,1\n": (5, "metrics.csv: truncated last line dropped"),
             good.replace("\n30,", "\n@@\n30,"): (2, "metrics.csv: malformed line 4; kept the 2 row(s) before it"),
             good.replace("\n30,", "\n30,,"): (2, "metrics.csv: malformed line 4; kept the 2 row(s) before it"),
             good.replace("\n50,", "\n50,nan,"): (4, "metrics.csv: truncated last line dropped"),
             good.replace("\n50,", "\n50,-inf,1,1,1\n60,"): (6, None),
             "": (0, "metrics.csv has no header row with 'step'")}
    for text, (rows, issue) in cases.items():
        path.write_text(text)
        m = metrics_csv.read_metrics(tmp_path)
        assert (len(m.values), m.issue) == (rows, issue), text


def test_restore_rebuilds_a_run_and_refuses_what_it_cannot(real_sweep, tmp_path):
    run = components.restore(real_sweep / "0")
    params = rundir.load_params(real_sweep / "0" / rundir.PARAMS)
    assert list(run.params) == list(params) and all(np.array_equal(run.params[k], params[k]) for k in params)
    assert run.config.task.bins == 3 and run.inner.lr == run.config.algorithm.inner_lr
    assert run.model.predict(run.params, np.zeros((5, 1))).shape[0] == 5
    write_run(tmp_path / "noparams", base_config(), [], summary={"status": "completed"})
    with pytest.raises(components.RestoreError, match="no params.npz"):
        components.restore(tmp_path / "noparams")
    cfg = base_config()
    cfg["task"]["name"] = "sinusoid"
    write_run(tmp_path / "sin", cfg, [], summary={"status": "completed"}, params=run.params)
    with pytest.raises(components.RestoreError, match="task.name='sinusoid'"):
        components.restore(tmp_path / "sin")


def test_synthetic_runs_are_read_back_exactly(tmp_path):
    runs = make_sweep(tmp_path / "s", {"task.bins": [3, 6]}, seeds=(0,), outer_steps=300, eval_every=100,
                      with_adaptation=True)
    m = metrics_csv.read_metrics(runs[0])
    assert m.columns == COLUMNS and m.values[:, 0].tolist() == [100, 200, 300] and m.issue is None
    rows, issue = metrics_csv.read_adaptation(runs[0])
    assert issue is None and len(rows) == 15 and set(rows[0]) == set(rundir.ADAPTATION_COLUMNS)


def test_bootstrap_by_counts_equals_resampling_the_runs():
    from maml_sweep.analysis.aggregate import _bootstrap_means

    rng = np.random.default_rng(1)
    v = rng.normal(size=(37, 50))
    v[rng.random(v.shape) < 0.2] = np.nan
    v[:, 3] = np.nan
    draw = np.random.default_rng(0).integers(0, 37, size=(500, 37))
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmean(v[draw], axis=1)
        got = _bootstrap_means(v, 500, np.random.default_rng(0))
    assert np.allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)


def _report_peak_mb(rows: int, where: Path) -> float:
    import re

    from conftest import run_module

    proc = run_module("maml_sweep.tools.bench_report", ["--curve-rows", str(rows), "--dir", str(where)],
                      cwd=where.parent)
    found = re.search(r"peak resident (\d+) MB.*\(exit (\d+)\)", proc.stdout)
    assert found and found.group(2) == "0", proc.stdout + proc.stderr
    return float(found.group(1))


@pytest.mark.slow
def test_the_report_on_a_long_curve_stays_small_in_memory(tmp_path):
    """A run with 1,000,000 metrics rows (~40 MB) reports in about the memory of one with 1,000
    (before thinning on read: ~1.6 GB more)."""
    short = _report_peak_mb(1_000, tmp_path / "short")
    long = _report_peak_mb(1_000_000, tmp_path / "long")
    assert long - short < 150, (short, long)


def test_the_long_curve_benchmark_run_reads_back_thinned(tmp_path):
    from maml_sweep.tools.bench_report import make_long_run

    run = make_long_run(tmp_path, 5_000)
    m = metrics_csv.read_metrics(run, max_points=1_000)
    assert m.rows == 5_000 and m.issue is None and len(m.values) <= 1_000
    assert m.values[0, 0] == 1 and m.values[-1, 0] == 5_000 and m.columns == COLUMNS
