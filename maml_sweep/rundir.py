"""Everything written to or read from a run directory (the contract every downstream tool reads).

A run directory holds, besides Hydra's ``.hydra/`` and its ``<job name>.log``:

- ``metrics.csv``: one row per evaluation, columns :data:`METRIC_COLUMNS`, appended and flushed;
- ``summary.json``: status (:data:`STATUSES`), final metrics, steps done (current at every
  checkpoint), wall seconds, ms per outer step, package versions, config hash;
- ``params.npz``: final meta-parameters, one array per name (see :mod:`maml_sweep.model`);
- ``checkpoint.npz``: step, params, optimizer state, RNG state, validation tasks, figure snapshots,
  for resume. No pickle: plain arrays plus one JSON header (entry ``__meta__``: format name,
  :data:`CHECKPOINT_VERSION`, the nested state with arrays referenced by entry name); it loads with
  ``np.load(path, allow_pickle=False)``. Checkpoints of another version are refused, never guessed at;
- ``validation_fits.png``: the notebook's grid of adaptation trajectories;
- ``adaptation.csv``: test-bank MSE after k adaptation steps per init (see :mod:`maml_sweep.evaluate`);
- ``.run.lock``: held (``fcntl.flock``, exclusive) by the one process that owns the run, for its whole
  life; the kernel releases it when that process dies, SIGKILL included. It holds the owner's PID
  and host. :func:`is_live` tells a live run from a dead one: a summary saying ``running`` while the
  lock is free is a killed run (:data:`KILLED`);
- ``.aside/``: files set aside by ``maml-sweep-aside`` (damaged ones; never deleted).

A directory is accepted for a run only when it is empty or holds nothing but the names above
(:func:`foreign_files`); anything else is refused before anything is written. A damaged summary or
checkpoint is refused with one line naming the file and the command that sets it aside, which
starts the run over (``maml-sweep-aside RUN_DIR/FILE``, or ``python -m maml_sweep.aside``).

Files a reader could mistake for complete are written atomically (temp file ``.<stem>.tmp-*<suffix>``
+ rename); temp files of a killed write are removed by the next run in the directory.
"""
from __future__ import annotations

import hashlib
import json
import math
import errno
import fcntl
import os
import re
import socket
import tempfile
import time
import zipfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

METRICS = "metrics.csv"
SUMMARY = "summary.json"
PARAMS = "params.npz"
CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "maml-sweep checkpoint"
CHECKPOINT_VERSION = 1
LOCK = ".run.lock"
ASIDE = ".aside"
FITS = "validation_fits.png"
ADAPTATION = "adaptation.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
METRIC_COLUMNS = ("step", "val_meta_objective", "train_meta_objective", "elapsed_s")
ADAPTATION_COLUMNS = ("init", "k", "mse_mean", "mse_ci95", "n_tasks")
VERSIONED_PACKAGES = ("maml-sweep", "numpy", "autograd", "hydra-core", "omegaconf")
RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED = "running", "completed", "diverged", "interrupted", "failed"
KILLED = "killed"  # what readers show for a summary saying running whose lock is free (the process died)
STATUSES = (RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED)
FINISHED = (COMPLETED, DIVERGED)  # a rerun skips these
RUN_FILES = (METRICS, SUMMARY, PARAMS, CHECKPOINT, FITS, ADAPTATION, ".hydra", LOCK, ASIDE)
_TEMP = re.compile(r"^\..+\.tmp-[a-z0-9_]{8}\.[A-Za-z0-9]+$")  # atomic_path's temp names


class RunDirError(Exception):
    """A run directory this run may not use (foreign files, another config's run, in use, damaged);
    the message is one line that says what to do."""


class RunDirBusy(RunDirError):
    """Another live process holds the run directory's lock."""


class DamagedFile(RunDirError):
    """A run file that cannot be read; the message names it and how to start over."""

    def __init__(self, path: Path, reason: str):
        path = Path(path)
        super().__init__(f"{path} is damaged ({reason}); to start this run over, set it aside "
                         f"(kept, not deleted) with: maml-sweep-aside {path}")
        self.path = path


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` on success,
    with the permissions a plainly created file would get (mkstemp makes 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.tmp-", suffix=path.suffix)
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
    """The run's summary, or None when there is none (yet). Raises :class:`DamagedFile` when the
    file is not a JSON object with a known ``status`` and a ``config_hash``."""
    path = Path(run_dir) / SUMMARY
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedFile(path, f"unreadable: {exc}") from None
    try:
        summary = json.loads(text)
    except ValueError:
        raise DamagedFile(path, "not JSON" if text.strip() else "empty") from None
    if not isinstance(summary, dict) or summary.get("status") not in STATUSES:
        raise DamagedFile(path, "no status of " + "/".join(STATUSES))
    if not isinstance(summary.get("config_hash"), str):
        raise DamagedFile(path, "no config_hash")
    return summary


def save_params(path: Path, params: dict) -> None:
    """Save a parameter dict as ``.npz``, one array per name, atomically."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in params.items()})


def load_params(path: Path) -> dict:
    """Load a parameter dict saved by :func:`save_params` (names in saved order)."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Save a nested state (dicts with str keys, lists, tuples, numpy arrays and scalars, and
    JSON scalars) atomically as ``checkpoint.npz``: arrays as entries, the rest as a JSON header."""
    arrays: dict[str, np.ndarray] = {}
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state": _encode(state, arrays)}
    with atomic_path(Path(run_dir) / CHECKPOINT) as tmp:
        np.savez(tmp, __meta__=np.array(json.dumps(header)), **arrays)


def load_checkpoint(run_dir: Path) -> dict | None:
    """The state saved by :func:`save_checkpoint`, or None when the run has no checkpoint.
    Never unpickles; raises :class:`DamagedFile` for anything but a checkpoint of this version."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["__meta__"][()]))
            if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("not a maml-sweep checkpoint")
            if header.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {header.get('version')}, this maml-sweep reads {CHECKPOINT_VERSION}")
            return _decode(header["state"], data)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedFile(path, str(exc) or type(exc).__name__) from None


def _encode(obj, arrays: dict):
    """JSON for ``obj``; numpy arrays and scalars go to ``arrays`` (exact dtype) and are referenced."""
    if isinstance(obj, (np.ndarray, np.generic)):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(obj)
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("checkpoint dict keys must be str")
        return {"__dict__": {k: _encode(v, arrays) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_encode(v, arrays) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _decode(node, data):
    if isinstance(node, dict):
        if "__array__" in node:
            array = data[node["__array__"]]
            return array[()] if node.get("scalar") else array
        if "__dict__" in node:
            return {k: _decode(v, data) for k, v in node["__dict__"].items()}
        if "__list__" in node:
            return [_decode(v, data) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_decode(v, data) for v in node["__tuple__"])
        raise ValueError("unknown node in the checkpoint header")
    return node


def recorded_config_hash(run_dir: Path) -> str | None:
    """The config hash of the run already in ``run_dir`` (from its summary, else from its
    checkpoint's header), if any. Raises :class:`DamagedFile` when the file it needs is damaged."""
    summary = read_summary(run_dir)
    if summary is not None:
        return summary["config_hash"]
    checkpoint = load_checkpoint(run_dir)
    return None if checkpoint is None else checkpoint.get("config_hash")


def foreign_files(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` that are not a maml-sweep run's (sorted); empty for an empty directory
    or a run's own. A run's directory always has its lock file (taken before the first write), so
    run file names without it (e.g. a user's own ``metrics.csv``) are foreign too. Hydra's job log
    (``*.log``) and temp files of our writes are ignored."""
    names = sorted(p.name for p in Path(run_dir).iterdir()) if Path(run_dir).is_dir() else []
    names = [n for n in names if not n.endswith(".log") and not _TEMP.match(n)]
    if LOCK not in names:
        return names
    return [n for n in names if n not in RUN_FILES]


def remove_temp_files(run_dir: Path) -> list[str]:
    """Delete the temp files of writes that a killed process left behind; returns their names.
    Call only while holding the run's lock (no live writer can own them then)."""
    removed = []
    for path in Path(run_dir).iterdir():
        if _TEMP.match(path.name) and path.is_file():
            path.unlink()
            removed.append(path.name)
    return removed


class RunLock:
    """The exclusive, whole-life lock on a run directory (``flock`` on ``.run.lock``).

    ``acquire()`` takes it without waiting or raises :class:`RunDirBusy` naming the holder; the
    holder's PID, host and start time are written into the file (best effort: a full disk must not
    stop a run that only reads). The kernel releases it when the process exits or dies."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirBusy(f"{self.path.parent} is in use by {lock_holder(self.path.parent)}; wait for "
                             "it to end (or stop it) or choose another hydra.run.dir / hydra.sweep.dir") from None
        self._fd = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:
            pass
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_live(run_dir: Path) -> bool:
    """True while a process holds ``run_dir``'s lock (also when it is this very process)."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def lock_holder(run_dir: Path) -> str:
    """``PID n on host h (since HH:MM:SS UTC)`` from the lock file, or ``another process``."""
    try:
        info = json.loads((Path(run_dir) / LOCK).read_text())
        since = time.strftime("%H:%M:%S UTC", time.gmtime(info["since"]))
        return f"PID {info['pid']} on host {info['host']} (since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def run_status(run_dir: Path, summary: dict | None) -> str | None:
    """The status a reader should show: the summary's, except :data:`KILLED` for a run whose
    summary says running while nobody holds its lock."""
    if summary is None:
        return None
    status = summary.get("status")
    return KILLED if status == RUNNING and not is_live(run_dir) else status


def set_aside(path: Path) -> Path:
    """Move a run file (e.g. a damaged checkpoint) into its run directory's ``.aside/``, stamped
    with the UTC time; returns the new path. Refused (:class:`RunDirBusy`) while the run is live."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    run_dir = path.parent
    with RunLock(run_dir):
        folder = run_dir / ASIDE
        folder.mkdir(exist_ok=True)
        target = folder / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{path.name}"
        os.replace(path, target)
    return target


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

    def append(self, step: int, val: float, train: float, elapsed_s: float) -> None:
        self._file.write(f"{step},{val:.10g},{train:.10g},{elapsed_s:.4f}\n")
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
