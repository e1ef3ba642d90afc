"""Property: whatever damage or hostile file a run directory holds, reevaluate and the report either
succeed or say, in one line, which run (and file) they left alone: never a traceback, never a hang.

Hypothesis builds each example from a sweep of two completed TINY runs: one to four damages, each a
file of a run (its summary, metrics, checkpoint, params, test MSE, adaptation table, YAML records,
lock) replaced by truncated or random bytes, random JSON, a link out of the directory, a dangling
link, a FIFO, a folder, an alias bomb, a pickled array, or removed. Slow: every example re-evaluates
or reports for real."""
import io
import json
import os
import shutil
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, compose, deadline
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from maml_sweep import rundir, train
from maml_sweep.tools import reevaluate

pytestmark = pytest.mark.slow

FILES = [rundir.SUMMARY, rundir.METRICS, rundir.CHECKPOINT, rundir.PARAMS, rundir.TEST_MSE, rundir.ADAPTATION,
         ".hydra/config.yaml", ".hydra/overrides.yaml", rundir.LOCK]
KINDS = ["truncate", "random bytes", "random json", "link out", "dangling link", "fifo", "folder", "remove",
         "alias bomb", "pickled array", "deep nesting", "huge number row", "nan row"]
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 12))
STATS = {"examples": 0, "seconds": 0.0}


@pytest.fixture(scope="module")
def sweep_of_two(tmp_path_factory) -> Path:
    """A sweep directory ``0/``, ``1/``: two completed TINY runs with their Hydra records."""
    root = tmp_path_factory.mktemp("base") / "sweep"
    for job, seed in ((0, 0), (1, 1)):
        cfg = compose([*TINY, f"seed={seed}"])
        run_dir = root / str(job)
        assert train.run(cfg, run_dir)["status"] == "completed"
        rundir.save_hydra_record(run_dir, {"config.yaml": OmegaConf.to_yaml(cfg, resolve=True),
                                           "overrides.yaml": OmegaConf.to_yaml([f"seed={seed}"])})
    return root




json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=3), max_leaves=8)
damages = st.lists(st.tuples(st.sampled_from(["0", "1"]), st.sampled_from(FILES), st.sampled_from(KINDS),
                             st.binary(max_size=64), st.floats(0, 1), json_values), min_size=1, max_size=4)


def damage(root: Path, outside: Path, job: str, name: str, kind: str, data: bytes, where: float, value) -> None:
    path = root / job / name
    if kind in ("link out", "dangling link", "fifo", "folder", "remove"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        if kind == "link out":
            path.symlink_to(outside)
        elif kind == "dangling link":
            path.symlink_to(outside.parent / "nothing")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        return
    if not path.is_file() or path.is_symlink():
        return  # an earlier damage made it something else: leave that one
    old = path.read_bytes()
    if kind == "truncate":
        new = old[:int(where * len(old))]
    elif kind == "random bytes":
        new = data
    elif kind == "random json":
        new = json.dumps(value).encode() if name == rundir.SUMMARY else old
        if name == rundir.SUMMARY and isinstance(value, dict):  # a summary with a field of the wrong type
            summary = json.loads(old) if old.startswith(b"{") else {}
            key = sorted(summary)[int(where * (len(summary) - 1))] if summary else "steps"
            new = json.dumps({**summary, key: value}).encode()
    elif kind == "alias bomb":
        new = BOMB.encode() if name.endswith(".yaml") else old
    elif kind == "pickled array":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        new = buffer.getvalue() if not name.endswith(".npz") else _pickled_npz()
    elif kind == "deep nesting":
        new = (b"[" * 50_000 + b"]" * 50_000) if name.endswith((".json", ".yaml", ".lock")) else old
    elif kind == "huge number row":
        new = old + b"40,1e308,1e308,1e308,1\n" if name == rundir.METRICS else old
    else:  # nan row
        new = old + b"nan,1,2,3,4\n" if name == rundir.METRICS else old
    path.write_bytes(new)


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, W1=np.array([{"x": 1}], dtype=object))
    return buffer.getvalue()


def _example(sweep_of_two: Path, tmp: Path, changes) -> Path:
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(sweep_of_two, tmp / "sweep", symlinks=True)
    outside = tmp / "outside"
    outside.write_text("not a run's\n")
    for change in changes:
        damage(tmp / "sweep", outside, *change)
    return tmp / "sweep"


def _call(main, argv, seconds=120) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with deadline(seconds), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(changes=damages)
def test_reevaluate_succeeds_or_names_the_run_in_one_line(sweep_of_two, tmp_path_factory, changes):
    t0 = time.perf_counter()
    tmp = tmp_path_factory.mktemp("example")
    root = _example(sweep_of_two, tmp, changes)
    outside = (tmp / "outside").read_bytes()
    code, out, err = _call(reevaluate.main, [str(root)])
    assert code in (0, 2) and "Traceback" not in err
    for line in err.strip().splitlines():
        assert line.startswith("re-evaluated ") or (line.startswith("skipped ") and str(root) in line) \
            or line.startswith("reevaluate: error: no run directories"), line
    assert (tmp / "outside").read_bytes() == outside  # nothing outside the runs written
    STATS["examples"] += 1
    STATS["seconds"] += time.perf_counter() - t0


def test_zz_property_counts(capsys):
    """Prints how many examples the property above ran and their time (for the closing note)."""
    with capsys.disabled():
        print(f"\nreevaluate property: {STATS['examples']} examples in {STATS['seconds']:.1f} s", file=sys.stderr)
    assert STATS["examples"] > 0


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: minutes per report
@given(changes=damages)
def test_the_report_succeeds_or_names_the_file_in_one_line(sweep_of_two, tmp_path_factory, changes):
    """The report as a black box (``maml_sweep.analysis.report_cli.main``)."""
    from maml_sweep.analysis.report_cli import main as report

    tmp = tmp_path_factory.mktemp("example")
    root = _example(sweep_of_two, tmp, changes)
    outside = (tmp / "outside").read_bytes()
    code, out, err = _call(report, [str(root), "--out", str(tmp / "report"), "-q"])
    assert code in (0, 1, 2) and "Traceback" not in err
    if code != 0:
        assert len(err.strip().splitlines()) == 1, err
    assert (tmp / "outside").read_bytes() == outside
