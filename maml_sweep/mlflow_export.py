"""Log run directories to an MLflow tracking server or store (``maml-sweep-runs export-mlflow``).

Each run becomes one MLflow run in an experiment named after its sweep (``maml-sweep <sweep path>``,
the path from ``outputs/`` on; single runs: ``maml-sweep runs``): params = the flattened config,
metrics = the ``metrics.csv`` history with its steps plus the summary's test statistics and timings,
artifacts = the run directory's figures, tags = status, run directory, overrides, config hash.
A run is found again by its run-directory tag, so exporting again updates it (new metric points,
status, figures) and never duplicates it. Needs ``pip install 'maml-sweep[mlflow]'``.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

# MLflow prints "View run ... at" on stdout for every run ended over HTTP, and retries a dead server for
# minutes: quiet and quick unless the user asked otherwise.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from . import metrics_csv, rundir, rundir_read  # noqa: E402
from .runs_index import RunRecord  # noqa: E402

RUN_DIR_TAG = "maml_sweep.run_dir"
SWEEP_DIR_TAG = "maml_sweep.sweep_dir"
STATUS_TAG = "maml_sweep.status"
SINGLE_RUNS = "maml-sweep runs"
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
HISTORY_KEYS = tuple(c for c in rundir.METRIC_COLUMNS if c != "step")
SUMMARY_METRICS = ("steps", "wall_s", "ms_per_step", "setup_s", "eval_s", "noise_floor", "n_test_tasks",
                   "diverged_step")  # besides every test_* key
MLFLOW_STATUS = {rundir.COMPLETED: "FINISHED", rundir.DIVERGED: "FAILED", rundir.FAILED: "FAILED",
                 rundir.INTERRUPTED: "KILLED", rundir.KILLED: "KILLED", rundir.RUNNING: "RUNNING"}
MAX_PARAM_CHARS = 500  # MLflow's smallest limit across versions
_BATCH = {"params": 100, "metrics": 1000, "tags": 100}


class ExportError(Exception):
    """The tracking server or store refused or could not be reached: one line."""


@dataclass
class Exported:
    """One exported run: ``run_id``, its ``experiment`` name and whether it was ``created`` now."""

    run_id: str
    experiment: str
    created: bool


def export(records: list[RunRecord], tracking_uri: str) -> list[Exported]:
    """Log ``records`` to ``tracking_uri`` (``sqlite:///file.db``, ``http://host:port``, ...)."""
    _quiet()
    known: dict[str, tuple[str, dict[str, str]]] = {}  # experiment name -> (id, run dir -> run id)
    done = []
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        for record in records:
            name, sweep = experiment_of(record)
            if name not in known:
                known[name] = _experiment(client, name, sweep, tracking_uri)
            experiment_id, runs = known[name]
            run_id = runs.get(str(record.path))
            created = run_id is None
            if created:
                run_id = _create_run(client, experiment_id, record)
                runs[str(record.path)] = run_id
            _update_run(client, run_id, record, created)
            done.append(Exported(run_id, name, created))
    except MlflowException as exc:
        raise ExportError(f"MLflow at {tracking_uri}: {_first_line(exc)}") from None
    except OSError as exc:  # e.g. a server that is not there, after the retries
        raise ExportError(f"MLflow at {tracking_uri} cannot be reached: {_first_line(exc)}") from None
    return done


def experiment_of(record: RunRecord) -> tuple[str, Path | None]:
    """(experiment name, sweep directory or None) for a run."""
    sweep = record.sweep_dir()
    if sweep is None:
        return SINGLE_RUNS, None
    parts = sweep.parts
    short = parts[parts.index("outputs") + 1:] if "outputs" in parts else parts[-3:]
    return "maml-sweep " + "/".join(short or parts[-1:]), sweep


def _experiment(client, name: str, sweep: Path | None, tracking_uri: str) -> tuple[str, dict[str, str]]:
    """The experiment's id (created if needed) and its runs already exported (run dir -> run id)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        tags = {SWEEP_DIR_TAG: str(sweep)} if sweep else {}
        experiment_id = client.create_experiment(name, artifact_location=_artifact_location(tracking_uri, name),
                                                 tags=tags)
        return experiment_id, {}
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    runs, token = {}, None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        for run in page:
            if RUN_DIR_TAG in run.data.tags:
                runs.setdefault(run.data.tags[RUN_DIR_TAG], run.info.run_id)
        token = page.token
        if not token:
            return found.experiment_id, runs


def _artifact_location(tracking_uri: str, name: str) -> str | None:
    """For a ``sqlite:///`` store: ``mlartifacts/`` next to the database (MLflow's default is the
    working directory); servers and other stores choose themselves (None)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///"):]).absolute()
    return (db.parent / "mlartifacts" / name.replace("/", "_").replace(" ", "_")).as_uri()


def _create_run(client, experiment_id: str, record: RunRecord) -> str:
    start = int(1000 * (record.started or time.time()))
    run = client.create_run(experiment_id, start_time=start, tags={RUN_DIR_TAG: str(record.path)},
                            run_name=record.overrides_text or record.path.name)
    return run.info.run_id


def _update_run(client, run_id: str, record: RunRecord, created: bool) -> None:
    """Bring the MLflow run up to the run directory: params, metrics, tags, figures, status."""
    have = None if created else client.get_run(run_id).data
    old_params = have.params if have else {}
    params = [Param(k, v) for k, v in params_of(record).items() if old_params.get(k) != v]
    tags = [RunTag(k, v) for k, v in tags_of(record).items()]
    metrics = _new_metrics(client, run_id, record, have)
    for kind, items in (("params", params), ("tags", tags), ("metrics", metrics)):
        size = _BATCH[kind]
        for start in range(0, len(items), size):
            client.log_batch(run_id, **{kind: items[start:start + size]})
    for name, _ in rundir_read.run_files(record.path):
        if name.endswith(FIGURE_SUFFIXES):
            client.log_artifact(run_id, str(record.path / name))
    status = MLFLOW_STATUS.get(record.status, "FAILED")
    end = None
    if status != "RUNNING":
        wall = record.summary.get("wall_s")
        end = int(1000 * ((record.started or time.time()) + (wall if isinstance(wall, (int, float)) else 0)))
    with contextlib.redirect_stdout(io.StringIO()):  # older MLflow prints the run's URL unconditionally
        if status == "RUNNING":
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        else:
            client.set_terminated(run_id, status=status, end_time=end)


def params_of(record: RunRecord) -> dict[str, str]:
    """The flattened config as MLflow params (text, lists as JSON, cut to MLflow's length limit)."""
    return {k: _text(v)[:MAX_PARAM_CHARS] for k, v in record.config.items()}


def tags_of(record: RunRecord) -> dict[str, str]:
    tags = {RUN_DIR_TAG: str(record.path), STATUS_TAG: record.status,
            "maml_sweep.overrides": record.overrides_text[:5000],
            "maml_sweep.config_hash": str(record.summary.get("config_hash", ""))}
    if record.summary.get("error"):
        tags["maml_sweep.error"] = str(record.summary["error"])[:5000]
    sweep = record.sweep_dir()
    if sweep is not None:
        tags[SWEEP_DIR_TAG] = str(sweep)
    return tags


def _new_metrics(client, run_id: str, record: RunRecord, have) -> list[Metric]:
    """metrics.csv points (each at its step) and summary statistics MLflow does not hold yet."""
    t0 = int(1000 * (record.started or 0))
    curves = metrics_csv.read_metrics(record.path, max_points=metrics_csv.MAX_CURVE_POINTS)
    out = []
    if "step" in curves.columns and len(curves.values):
        steps = curves.values[:, curves.columns.index("step")].astype(int)
        elapsed = curves.values[:, curves.columns.index("elapsed_s")] if "elapsed_s" in curves.columns else None
        for key in HISTORY_KEYS:
            if key not in curves.columns:
                continue
            logged = set() if have is None or key not in have.metrics else \
                {m.step for m in client.get_metric_history(run_id, key)}
            column = curves.values[:, curves.columns.index(key)]
            for i, (step, value) in enumerate(zip(steps, column)):
                if int(step) not in logged and not math.isnan(value):  # NaN: not measured at that step (val_every)
                    stamp = t0 + (int(1000 * elapsed[i]) if elapsed is not None and math.isfinite(elapsed[i]) else 0)
                    out.append(Metric(key, float(value), stamp, int(step)))
    summary = record.summary
    step = summary.get("steps") if isinstance(summary.get("steps"), int) else 0
    old = have.metrics if have is not None else {}
    for key, value in summary.items():
        if (key.startswith("test_") or key in SUMMARY_METRICS) and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and old.get(key) != float(value):
            out.append(Metric(key, float(value), t0, step))
    return out


def _text(value) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "null" if value is None else str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _quiet() -> None:
    """Keep MLflow's and its database migrations' INFO lines off the console."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
