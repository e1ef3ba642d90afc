"""``maml-sweep-runs export-mlflow``: a real sweep into MLflow, read back with MLflow's own client, twice
(the second export updates and never duplicates); through a ``sqlite:///`` store and a real ``mlflow server``.

Both are slow: importing MLflow and creating its database take seconds."""
import math
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from conftest import summary_of, wait_for
from services import free_port

from maml_sweep import metrics_csv, runs_cli

mlflow_tracking = pytest.importorskip("mlflow.tracking",
                                      reason="MLflow is not installed (pip install 'maml-sweep[mlflow]')")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def export_twice(sweep, uri, capsys):
    for expected in ("(8 new, 0 updated)", "(0 new, 8 updated)"):
        runs_cli.main(["export-mlflow", str(sweep), "--tracking-uri", uri])
        out = capsys.readouterr()
        assert expected in out.out and out.out.count("\n") == 1 and "View run" not in out.out + out.err


def check_round_trip(sweep, uri):
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("maml-sweep multirun/2026-11-26/10-00-00") or \
        client.get_experiment_by_name("maml-sweep " + "/".join(sweep.parts[-3:]))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 8  # exported twice, never duplicated
    by_dir = {r.data.tags["maml_sweep.run_dir"]: r for r in runs}
    assert set(by_dir) == {str((sweep / str(j)).resolve()) for j in range(8)}
    for job in range(8):
        run_dir = (sweep / str(job)).resolve()
        got, summary = by_dir[str(run_dir)], summary_of(run_dir)
        assert got.info.status == "FINISHED" and got.data.tags["maml_sweep.status"] == "completed"
        assert got.data.params["seed"] == str(summary["seed"]) and got.data.params["model.hidden"] == "[8, 8]"
        assert got.data.metrics["test_mse_k5"] == pytest.approx(summary["test_mse_k5"], rel=1e-12)
        curve = metrics_csv.read_metrics(run_dir)
        history = client.get_metric_history(got.info.run_id, "val_mse")
        assert [(m.step, m.value) for m in history] == [(int(s), v) for s, v in curve.values[:, :3:2]
                                                        if not math.isnan(v)]  # val_mse only where measured
        assert history and len(history) < len(curve.values)  # the shared validation is sparser than the rows
    figures = [a.path for a in client.list_artifacts(by_dir[str((sweep / "2").resolve())].info.run_id)]
    assert figures == ["validation_fits.png"]


@pytest.mark.slow
def test_export_to_a_sqlite_store_round_trips_and_is_idempotent(sweep_copy, tmp_path, monkeypatch, capsys):
    (sweep_copy / "2" / "validation_fits.png").write_bytes(PNG)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    export_twice(sweep_copy, uri, capsys)
    check_round_trip(sweep_copy, uri)
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_export_over_http_to_a_real_mlflow_server(sweep_copy, tmp_path, capsys):
    (sweep_copy / "2" / "validation_fits.png").write_bytes(PNG)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(uri) or server.poll() is not None, timeout=120, what="mlflow server", interval=0.5)
        assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        export_twice(sweep_copy, uri, capsys)
        check_round_trip(sweep_copy, uri)
        assert list((tmp_path / "artifacts").rglob("validation_fits.png"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # uvicorn's workers are its children: the whole group
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_an_unreachable_server_is_one_line_and_exit_2(real_sweep, capsys):
    with pytest.raises(SystemExit) as exc:
        runs_cli.main(["export-mlflow", str(real_sweep), "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("maml-sweep-runs: error: MLflow at http://127.0.0.1:") \
        and err.count("\n") == 1
