"""A search on a real PostgreSQL database (slow): Debian's server, installed if missing (as root),
started in a temporary folder on a free localhost port and stopped by its PID; two workers on one
study, then the study continued by another command."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the [hpo] extra (optuna) is not installed")
pytest.importorskip("psycopg", reason="the test extra's psycopg (PostgreSQL driver) is not installed")

from conftest import TINY, run_cli, start_cli, wait_for  # noqa: E402
from services import free_port, need_debian_packages  # noqa: E402

pytestmark = pytest.mark.slow
STUDY = "maml_lr_search"


@pytest.fixture
def postgres():
    """The URL of a fresh database on a PostgreSQL server of our own (trust auth, localhost only)."""
    need_debian_packages(["postgresql"], ["psql"])
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not binaries:
        pytest.skip("Debian's postgresql package left no /usr/lib/postgresql/*/bin/postgres")
    bindir = Path(binaries[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="maml-sweep-pg-"))  # not under pytest's 0700 tmp: postgres must enter
    os.chmod(folder, 0o755)
    shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    subprocess.run([bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres"], user="postgres", check=True,
                   capture_output=True, timeout=120)
    server = subprocess.Popen([bindir / "postgres", "-D", data, "-p", str(port), "-k", folder,
                               "-c", "listen_addresses=127.0.0.1"], user="postgres",
                              stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "w"))
    try:
        wait_for(lambda: subprocess.run([bindir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                                        capture_output=True).returncode == 0 or server.poll() is not None,
                 timeout=60, what="PostgreSQL to accept connections")
        assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
        subprocess.run([bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "search"],
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/search"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown, by the PID we started
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_postgres_study_and_a_third_command_continues_it(postgres, tmp_path):
    args = ["-m", "sweep=optuna", f"hydra.sweeper.storage={postgres}", *TINY, "hydra.sweep.dir=sweep"]
    workers = [start_cli([*args, "hydra.sweeper.n_trials=8"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name=STUDY, storage=postgres).trials
    assert 8 <= len(study) <= 9  # two workers may both ask for the last trial (docs/sweeps.md: limits)
    assert [t.number for t in study] == list(range(len(study))) and all(t.state.is_finished() for t in study)
    assert len({t.user_attrs["worker"] for t in study}) == 2  # both workers ran trials
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/.hydra/trial.json"))]
    assert sorted(r["trial"] for r in records) == list(range(len(study)))  # each trial ran once, in its own directory
    again = run_cli([*args, f"hydra.sweeper.n_trials={len(study) + 2}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    continued = optuna.load_study(study_name=STUDY, storage=postgres).trials
    assert len(continued) == len(study) + 2 and all(t.state.is_finished() for t in continued)
    assert [(t.params, t.value) for t in continued[:len(study)]] == [(t.params, t.value) for t in study]
    assert not (tmp_path / "sweep" / "optuna.db").exists()  # the study lives in PostgreSQL only
