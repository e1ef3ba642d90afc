"""Everything written to or read from a run directory (the contract every downstream tool reads).

A run directory holds, besides Hydra's ``.hydra/``:

- ``metrics.csv``: one row per evaluation, columns :data:`METRIC_COLUMNS`, appended and flushed;
- ``summary.json``: status (completed, diverged, interrupted, failed, running), final metrics,
  steps done, wall seconds, ms per outer step, package versions, config hash;
- ``params.npz``: final meta-parameters, one array per name (see :mod:`maml_sweep.model`);
- ``checkpoint.pkl``: step, params, optimizer state, RNG state, figure snapshots, for resume;
- ``validation_fits.png``: the notebook's grid of adaptation trajectories;
- ``adaptation.csv``: statistics over the test bank of the MSE after k adaptation steps, per init
  (columns :data:`ADAPTATION_COLUMNS`; see :mod:`maml_sweep.stats`);
- ``test_mse.npz``: every test task's MSE after k = 0..eval.max_steps steps, one float64 array of
  shape (eval.num_tasks, eval.max_steps + 1) per init (``trained`` or ``pretrain``, ``scratch``),
  tasks in test-bank order (the same for every run of a task config and eval.seed), NaN/inf kept.

Files a reader could mistake for complete are written atomically (temp file + rename).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

METRICS = "metrics.csv"
SUMMARY = "summary.json"
PARAMS = "params.npz"
CHECKPOINT = "checkpoint.pkl"
FITS = "validation_fits.png"
ADAPTATION = "adaptation.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
TEST_MSE = "test_mse.npz"
# val_mse: plain MSE on the shared validation tasks (eval.val_tasks, the same in every rng mode).
METRIC_COLUMNS = ("step", "val_meta_objective", "val_mse", "train_meta_objective", "elapsed_s")
# Over the test bank's tasks: mean, its 95% bootstrap CI, median, 10% trimmed mean, blow-up fraction.
ADAPTATION_COLUMNS = ("init", "k", "mse_mean", "mse_ci95_low", "mse_ci95_high", "mse_median", "mse_trimmed",
                      "blowup_frac", "n_tasks")
VERSIONED_PACKAGES = ("maml-sweep", "numpy", "autograd", "hydra-core", "omegaconf")


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` on success,
    with the permissions a plainly created file would get (mkstemp makes 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically; non-finite floats become null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n")


def read_summary(run_dir: Path) -> dict | None:
    """The run's summary, or None when there is none (yet)."""
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None


def save_arrays(path: Path, arrays: dict) -> None:
    """Save a dict of arrays as ``.npz``, one array per name, atomically (params.npz, test_mse.npz)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


save_params = save_arrays


def load_params(path: Path) -> dict:
    """Load a dict of arrays saved by :func:`save_arrays` (names in saved order)."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Pickle the resumable training state atomically."""
    with atomic_path(Path(run_dir) / CHECKPOINT) as tmp:
        tmp.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def load_checkpoint(run_dir: Path) -> dict | None:
    """The saved training state, or None when the run has no checkpoint."""
    path = Path(run_dir) / CHECKPOINT
    return pickle.loads(path.read_bytes()) if path.exists() else None


def recorded_config_hash(run_dir: Path) -> str | None:
    """The config hash of the run already in ``run_dir`` (from its summary or checkpoint), if any."""
    summary = read_summary(run_dir)
    if summary is not None:
        return summary.get("config_hash")
    checkpoint = load_checkpoint(run_dir)
    return None if checkpoint is None else checkpoint.get("config_hash")


def save_hydra_record(run_dir: Path, texts: dict[str, str]) -> None:
    """Write ``.hydra/<name>`` for each name -> YAML text (config.yaml, hydra.yaml, overrides.yaml)."""
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)


class MetricsLog:
    """Appends evaluation rows to ``metrics.csv``, flushing each, so a killed run leaves a prefix."""

    def __init__(self, run_dir: Path, keep_until_step: int = 0):
        """Open the log, keeping only the rows with step <= ``keep_until_step`` (0: start afresh)."""
        self.path = Path(run_dir) / METRICS
        rows = self._rows_until(keep_until_step) if keep_until_step > 0 else []
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join([",".join(METRIC_COLUMNS) + "\n"] + rows))
        self._file = open(self.path, "a")

    def _rows_until(self, step: int) -> list[str]:
        if not self.path.exists():
            return []
        kept = []
        for line in self.path.read_text().splitlines()[1:]:
            head = line.split(",", 1)[0]
            if line.count(",") == len(METRIC_COLUMNS) - 1 and head.isdigit() and int(head) <= step:
                kept.append(line + "\n")
        return kept

    def append(self, step: int, val: float, val_mse: float, train: float, elapsed_s: float) -> None:
        self._file.write(f"{step},{val:.10g},{val_mse:.10g},{train:.10g},{elapsed_s:.4f}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def config_hash(config: dict) -> str:
    """A short stable hash of a resolved config (a plain dict)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_versions() -> dict:
    """Versions of the packages whose code determines a run's numbers."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
