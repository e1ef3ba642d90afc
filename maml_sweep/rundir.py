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
- ``adaptation.csv``: statistics over the test bank of the MSE after k adaptation steps, per init
  (columns :data:`ADAPTATION_COLUMNS`; see :mod:`maml_sweep.stats`);
- ``test_mse.npz``: every test task's MSE after k = 0..eval.max_steps steps, one float64 array of
  shape (eval.num_tasks, eval.max_steps + 1) per init (``trained`` or ``pretrain``, ``scratch``),
  tasks in test-bank order (the same for every run of a task config and eval.seed), NaN/inf kept.
- ``.run.lock``: held (``fcntl.flock``, exclusive) by the one process that owns the run, for its whole
  life; the kernel releases it when that process dies, SIGKILL included. It holds the owner's PID
  and host. :func:`is_live` tells a live run from a dead one: a summary saying ``running`` while the
  lock is free is read as a killed run (:data:`KILLED`, :func:`read_state`);
- ``.aside/``: files set aside by ``maml-sweep-aside`` (damaged ones; never deleted).

A directory is accepted for a run only when it is empty or holds nothing but the names above
(:func:`foreign_files`); anything else is refused before anything is written. A damaged summary or
checkpoint is refused with one line naming the file and the command that sets it aside, which
starts the run over (``maml-sweep-aside RUN_DIR/FILE``, or ``python -m maml_sweep.aside``).

Every file of a run directory is opened through :func:`open_fd` (no symbolic link followed, no FIFO
blocked on, regular files only) and read with a bound; a directory holding a link, FIFO, socket or
device where a run file belongs is refused (:func:`unsafe_entry`). YAML records are parsed safely with
aliases capped (:func:`read_yaml_text`); ``.npz`` files load without pickle, stored entries only.

Files a reader could mistake for complete are written atomically (temp file ``.<stem>.tmp-*<suffix>``
+ rename); temp files of a killed write are removed by the next run in the directory.
Every reader of a run directory (the sweep callback, the analysis loader, the report) goes through
this module's reading section: run discovery, status, overrides, metrics and :func:`restore`.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import socket
import stat
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

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
TEST_MSE = "test_mse.npz"
# val_mse: plain MSE on the shared validation tasks (eval.val_tasks, the same in every rng mode).
METRIC_COLUMNS = ("step", "val_meta_objective", "val_mse", "train_meta_objective", "elapsed_s")
# Over the test bank's tasks: mean, its 95% bootstrap CI, median, 10% trimmed mean, blow-up fraction.
ADAPTATION_COLUMNS = ("init", "k", "mse_mean", "mse_ci95_low", "mse_ci95_high", "mse_median", "mse_trimmed",
                      "blowup_frac", "n_tasks")
VERSIONED_PACKAGES = ("maml-sweep", "numpy", "autograd", "hydra-core", "omegaconf")
class RunDirError(Exception):
    """A run directory this run may not use (foreign files, another config's run, in use, damaged);
    the message is one line that says what to do."""


class RunDirBusy(RunDirError):
    """Another live process holds the run directory's lock."""


class DamagedFile(ValueError):
    """A run's file that exists but cannot be read (invalid YAML or JSON, wrong shape); the message
    names the file and says why."""


class DamagedRunFile(DamagedFile, RunDirError):
    """A run's summary or checkpoint that a run cannot use: the message names it and the command
    that sets it aside so the run starts over (:func:`set_aside`)."""

    def __init__(self, path: Path, reason: str):
        path = Path(path)
        super().__init__(f"{path} is damaged ({reason}); to start this run over, set it aside "
                         f"(kept, not deleted) with: maml-sweep-aside {path}")
        self.path, self.reason = path, reason


# ---------------------------------------------------------------- opening files
# A run reads and writes only regular files inside its own directory: every open below refuses a
# symbolic link in the last component (O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK), checks
# what it opened is a regular file (fstat), and reads are bounded.

MAX_TEXT_BYTES = 16 << 20  # summary.json, YAML records, adaptation.csv, lock records: far above any real one
YAML_MAX_NODES = 100_000  # nodes of a YAML document with its aliases expanded (a run's config has ~200)
_HIDDEN_DIRS = (".hydra", ".aside")  # folders of a run directory whose files are opened by path


def file_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is, when it is not a regular file (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def _unsafe(path: Path, what: str) -> DamagedRunFile:
    return DamagedRunFile(path, f"{what}, not a regular file; a run reads and writes only regular files "
                                "inside its own directory")


def open_fd(path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """``os.open`` of a run file that is refused (:class:`DamagedRunFile` naming it) unless it is a
    regular file reached without following a symbolic link: the last component is opened with
    ``O_NOFOLLOW``, a ``.hydra``/``.aside`` folder above it must be a real folder, and a FIFO or
    device is detected without blocking (``O_NONBLOCK``, cleared once the file is known to be regular).
    Other OSErrors (FileNotFoundError, ...) propagate unchanged."""
    path = Path(path)
    if path.parent.name in _HIDDEN_DIRS and os.path.islink(path.parent):
        raise _unsafe(path.parent, "a symbolic link")
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _unsafe(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing without a reader
            raise _unsafe(path, "a FIFO") from None
        raise
    what = file_kind(os.fstat(fd).st_mode)
    if what is not None:
        os.close(fd)
        raise _unsafe(path, what)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def open_file(path: Path, mode: str = "rb"):
    """:func:`open_fd` as a file object: ``rb`` (read), ``ab``/``a`` (append, the file must exist)."""
    flags = {"r": os.O_RDONLY, "a": os.O_WRONLY | os.O_APPEND}[mode[0]]
    return os.fdopen(open_fd(path, flags), mode)


def read_bytes(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The content of a small run file, refused (:class:`DamagedRunFile`) beyond ``limit`` bytes."""
    with open_file(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DamagedRunFile(path, f"larger than {limit} bytes")
    return data


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """:func:`read_bytes` decoded as UTF-8 (UnicodeDecodeError, a ValueError, for other bytes)."""
    return read_bytes(path, limit).decode()


def unsafe_entry(run_dir: Path) -> RunDirError | None:
    """The first entry of ``run_dir`` a run would open that is not what it must be (a run file,
    job log or temp file that is a symbolic link, FIFO, socket, device or folder; a ``.hydra`` or
    ``.aside`` that is not a real folder, or a ``.hydra`` file that is not a regular file), as the
    error to raise; None when all are sound. Read-only (lstat only)."""
    run_dir = Path(run_dir)
    try:
        names = sorted(os.listdir(run_dir))
    except OSError:
        return None
    for name in names:
        path = run_dir / name
        mode = os.lstat(path).st_mode
        if name == ASIDE and not stat.S_ISDIR(mode):  # cannot be set aside into itself
            return RunDirError(f"{path} is {file_kind(mode) or 'a file'}, not a folder; a run reads and writes only "
                               f"regular files inside its own directory: move it away (mv {path} SOMEWHERE)")
        if name in _HIDDEN_DIRS:
            if not stat.S_ISDIR(mode):
                return _unsafe(path, file_kind(mode)) if stat.S_ISLNK(mode) else \
                    DamagedRunFile(path, f"{file_kind(mode) or 'a file'}, not a folder")
            if name == ".hydra":
                for sub in sorted(os.listdir(path)):
                    what = file_kind(os.lstat(path / sub).st_mode)
                    if what is not None:
                        return _unsafe(path / sub, what)
        elif name in RUN_FILES or name.endswith(".log") or _TEMP.match(name):
            what = file_kind(mode)
            if what is not None:
                return _unsafe(path, what)
    return None


# Status words: summary.json's "status", written by the trainer...
RUNNING = "running"
COMPLETED = "completed"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
FAILED = "failed"
PRUNED = "pruned"  # stopped early by a search's pruner (maml_sweep.search): final, never resumed
STATUSES = (RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED, PRUNED)
FINISHED = (COMPLETED, DIVERGED, PRUNED)  # a rerun skips these
KILLED = "killed"  # readers' word for a summary saying running while no process holds the run's lock
ENDED = (COMPLETED, DIVERGED, FAILED, INTERRUPTED, KILLED, PRUNED)  # the run's process is over
UNUSABLE = (DIVERGED, FAILED, PRUNED)  # final metrics missing or meaningless: counted, never averaged
# ...and the readers' words for a run directory whose summary cannot say.
NO_SUMMARY = "no_summary"  # no summary.json: starting, or killed before writing one
CORRUPT = "corrupt"  # summary.json unreadable (half-written or damaged)
UNKNOWN = "unknown"  # summary.json without a status
RUN_FILES = (METRICS, SUMMARY, PARAMS, CHECKPOINT, FITS, ADAPTATION, TEST_MSE, ".hydra", LOCK, ASIDE)
_TEMP = re.compile(r"^\..+\.tmp-[a-z0-9_]{8}\.[A-Za-z0-9]+$")  # atomic_path's temp names


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
    """The run's summary, or None when there is none (yet). Raises :class:`DamagedRunFile` when the
    file is not a JSON object with a known ``status`` and a ``config_hash``."""
    path = Path(run_dir) / SUMMARY
    try:
        text = read_text(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRunFile(path, f"unreadable: {exc}") from None
    try:
        summary = json.loads(text)
    except (ValueError, RecursionError):
        raise DamagedRunFile(path, "not JSON" if text.strip() else "empty") from None
    if not isinstance(summary, dict) or summary.get("status") not in STATUSES:
        raise DamagedRunFile(path, "no status of " + "/".join(STATUSES))
    if not isinstance(summary.get("config_hash"), str):
        raise DamagedRunFile(path, "no config_hash")
    return summary


def save_arrays(path: Path, arrays: dict) -> None:
    """Save a dict of arrays as ``.npz``, one array per name, atomically (params.npz, test_mse.npz)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


save_params = save_arrays


def load_params(path: Path) -> dict:
    """Load a dict of arrays saved by :func:`save_arrays` (names in saved order). Never unpickles;
    raises :class:`DamagedFile` (naming the file) for anything but such an ``.npz``, and
    FileNotFoundError when there is none."""
    try:
        with open_npz(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, (FileNotFoundError, DamagedFile)):
            raise
        raise DamagedRunFile(path, f"unreadable .npz: {exc or type(exc).__name__}") from None


@contextmanager
def open_npz(path: Path):
    """``np.load`` of a run's ``.npz`` through :func:`open_fd`, without pickle, refusing compressed
    entries (maml-sweep stores them plain, so no entry reads more bytes than the file holds)."""
    with open_file(path) as f:
        with zipfile.ZipFile(f) as archive:
            if any(i.compress_type != zipfile.ZIP_STORED for i in archive.infolist()):
                raise ValueError("compressed entries (maml-sweep writes none)")
        f.seek(0)
        with np.load(f, allow_pickle=False) as data:
            yield data


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Save a nested state (dicts with str keys, lists, tuples, numpy arrays and scalars, and
    JSON scalars) atomically as ``checkpoint.npz``: arrays as entries, the rest as a JSON header."""
    arrays: dict[str, np.ndarray] = {}
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state": _encode(state, arrays)}
    with atomic_path(Path(run_dir) / CHECKPOINT) as tmp:
        np.savez(tmp, __meta__=np.array(json.dumps(header)), **arrays)


def load_checkpoint(run_dir: Path) -> dict | None:
    """The state saved by :func:`save_checkpoint`, or None when the run has no checkpoint.
    Never unpickles; raises :class:`DamagedRunFile` for anything but a checkpoint of this version."""
    path = Path(run_dir) / CHECKPOINT
    if not os.path.lexists(path):
        return None
    try:
        with open_npz(path) as data:
            header = json.loads(str(data["__meta__"][()]))
            if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("not a maml-sweep checkpoint")
            if header.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {header.get('version')}, this maml-sweep reads {CHECKPOINT_VERSION}")
            return _decode(header["state"], data)
    except DamagedRunFile:
        raise
    except RecursionError:
        raise DamagedRunFile(path, "header nested too deep") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedRunFile(path, str(exc) or type(exc).__name__) from None


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


def unusable_dir(path: Path, key: str) -> str | None:
    """Why ``path`` (the value of ``key``, e.g. ``hydra.run.dir``) cannot become a directory this
    process writes into, or None: it is a file, lies under a file, or its nearest existing folder
    is not writable. Checked before Hydra creates it, so a bad path gives one line, not a traceback."""
    path = Path(path).absolute()
    if path.is_symlink() and not path.exists():
        return f"{key}={path} is a symbolic link to nothing (dangling): choose a directory"
    if path.exists() and not path.is_dir():
        return f"{key}={path} is a file, not a directory: choose a directory"
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{key}={path} lies under the file {existing}: choose a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}={path}: {existing} is not writable by this user"
    return None


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

    def __init__(self, run_dir: Path, name: str = LOCK):
        self.path = Path(run_dir) / name
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = lock_holder(self.path.parent, self.path.name)
            raise RunDirBusy(f"{self.path.parent} is in use by {holder}; wait for "
                             "it to end (or stop it) or choose another hydra.run.dir / hydra.sweep.dir") from None
        self._fd = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        data = (json.dumps(holder) + "\n").encode()
        try:  # write over the old holder first, then cut: a reader never sees an empty file
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
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
        fd = open_fd(Path(run_dir) / LOCK)
    except (OSError, DamagedRunFile):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def lock_holder(run_dir: Path, name: str = LOCK) -> str:
    """``PID n on host h (since HH:MM:SS UTC)`` from the lock file, or ``another process``.
    A holder that has just taken the lock may not have written itself yet: up to 20 reads,
    10 ms apart."""
    tries = 20
    for attempt in range(tries):
        try:
            info = json.loads(read_text(Path(run_dir) / name, 4096))
            since = time.strftime("%H:%M:%S UTC", time.gmtime(info["since"]))
            return f"PID {info['pid']} on host {info['host']} (since {since})"
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            if attempt + 1 < tries:
                time.sleep(0.01)
    return "another process"


ASIDE_FILES = (METRICS, SUMMARY, PARAMS, CHECKPOINT, FITS, ADAPTATION, TEST_MSE, LOCK, ".hydra")
ASIDE_HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def set_aside(path: Path) -> Path:
    """Move a file of a run directory (e.g. a damaged checkpoint, or a symbolic link or FIFO in a
    run file's place) into that run directory's ``.aside/``, stamped with the UTC time; returns
    the new path. Only the run's own files move (:data:`ASIDE_FILES` in a run directory, or
    :data:`ASIDE_HYDRA_FILES` in its ``.hydra/``), never a folder; a link moves as a link.
    Refused (:class:`RunDirError`) otherwise, and (:class:`RunDirBusy`) while the run is live."""
    path = Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path}: no such file")
    mode = os.lstat(path).st_mode
    in_hydra = path.parent.name == ".hydra" and not os.path.islink(path.parent)
    run_dir = path.parent.parent if in_hydra else path.parent
    allowed = ASIDE_HYDRA_FILES if in_hydra else ASIDE_FILES
    is_run = any(os.path.lexists(run_dir / n) for n in (LOCK, SUMMARY, HYDRA_CONFIG, CHECKPOINT))
    own = path.name in allowed or (not in_hydra and path.name.endswith(".log"))  # the job log too
    if stat.S_ISDIR(mode) or not own or not is_run:
        raise RunDirError(f"{path} is not a file of a maml-sweep run directory; maml-sweep-aside moves only "
                          f"{', '.join(ASIDE_FILES)}, *.log (or .hydra/{{{','.join(ASIDE_HYDRA_FILES)}}}) of a run")
    lock_sound = os.path.lexists(run_dir / LOCK) and file_kind(os.lstat(run_dir / LOCK).st_mode) is None
    with RunLock(run_dir) if lock_sound or not os.path.lexists(run_dir / LOCK) else _no_lock():
        folder = run_dir / ASIDE
        if os.path.islink(folder) or (os.path.lexists(folder) and not folder.is_dir()):
            raise _unsafe(folder, "not a real folder")
        folder.mkdir(exist_ok=True)
        stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{'hydra-' if in_hydra else ''}{path.name}"
        target = folder / stem
        n = 1
        while os.path.lexists(target):
            target, n = folder / f"{stem}.{n}", n + 1
        os.replace(path, target)
    return target


@contextmanager
def _no_lock():
    """For setting aside a lock file that is no regular file: nobody can hold a lock on it."""
    yield


def save_hydra_record(run_dir: Path, texts: dict[str, str]) -> None:
    """Write ``.hydra/<name>`` for each name -> YAML text (config.yaml, hydra.yaml, overrides.yaml)."""
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    if os.path.islink(folder) or not folder.is_dir():  # checked by the run before; checked again here
        raise _unsafe(folder, file_kind(os.lstat(folder).st_mode) or "not a folder")
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
        self._file = open_file(self.path, "a")

    def _rows_until(self, step: int) -> list[str]:
        try:
            with open_file(self.path) as f:
                lines = [raw.decode("utf-8", "replace").rstrip("\r\n") for raw in f][1:]
        except FileNotFoundError:
            return []
        kept = []
        for line in lines:
            head = line.split(",", 1)[0]
            if line.count(",") == len(METRIC_COLUMNS) - 1 and head.isdigit() and int(head) <= step:
                kept.append(line + "\n")
        return kept

    def append(self, step: int, val: float, val_mse: float, train: float, elapsed_s: float) -> None:
        self._file.write(metrics_line(step, val, val_mse, train, elapsed_s))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def metrics_line(step: int, val: float, val_mse: float, train: float, elapsed_s: float) -> str:
    """One ``metrics.csv`` row (columns :data:`METRIC_COLUMNS`), newline-terminated."""
    return f"{int(step)},{val:.10g},{val_mse:.10g},{train:.10g},{elapsed_s:.4f}\n"


def write_metrics(run_dir: Path, rows) -> None:
    """Write a whole ``metrics.csv`` of (step, val, val_mse, train, elapsed_s) rows at once, atomically
    (for runs made outside the trainer, e.g. synthetic ones; the trainer appends via :class:`MetricsLog`)."""
    with atomic_path(Path(run_dir) / METRICS) as tmp, open(tmp, "w") as f:
        f.write(",".join(METRIC_COLUMNS) + "\n")
        f.writelines(metrics_line(*row) for row in rows)


def write_adaptation_csv(path: Path, rows: list[dict]) -> None:
    """``adaptation.csv`` (columns :data:`ADAPTATION_COLUMNS`) from dict rows, atomically."""
    with atomic_path(path) as tmp:
        lines = [",".join(ADAPTATION_COLUMNS)]
        lines += [",".join(_csv_cell(r[c]) for c in ADAPTATION_COLUMNS) for r in rows]
        tmp.write_text("\n".join(lines) + "\n")


def _csv_cell(v) -> str:
    return f"{float(v):.10g}" if isinstance(v, (float, np.floating)) else str(v)


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


# ================================================================ reading
# Discovery, status, overrides, metrics and restore: what every reader of run directories uses
# (the sweep callback, the analysis loader, the report). Readers never unpickle and never write.

try:
    _YAML_LOADER = yaml.CSafeLoader  # libyaml: ~10x faster on 10,000 configs
except AttributeError:
    _YAML_LOADER = yaml.SafeLoader


class LoadError(ValueError):
    """Bad input to a reader (a path that does not exist, no runs found); one clear line."""


class RestoreError(ValueError):
    """A run that cannot be rebuilt by this version (no params, names this version does not know)."""


# ---------------------------------------------------------------- discovery

def natural_key(path) -> list:
    """Sort key putting ``run2`` before ``run10`` (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """A multirun's job directories (numbered subdirectories), in job order, whatever they hold yet."""
    found = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def find_runs(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """Run directories (those with ``.hydra/config.yaml``) under run dirs, sweep dirs, parents or globs.

    Returns (resolved run dirs in natural order, [(dir, reason)] for dirs with ``.hydra/`` but no
    config). Runs do not nest; hidden directories are not searched. Raises :class:`LoadError` for a
    path or glob that matches nothing.
    """
    found: dict[Path, None] = {}
    no_config: dict[Path, str] = {}
    for arg in paths:
        for top in _expand(arg):
            for root, dirs, _ in os.walk(top):
                if ".hydra" not in dirs:
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    continue
                dirs[:] = []
                run = Path(root).resolve()
                if os.path.isfile(run / HYDRA_CONFIG):
                    found[run] = None
                else:
                    no_config[run] = "no .hydra/config.yaml (run starting or not a Hydra job)"
    runs = sorted(found, key=natural_key)
    skipped = [(str(p), why) for p, why in sorted(no_config.items(), key=lambda i: natural_key(i[0]))
               if p not in found]
    return runs, skipped


def _expand(arg) -> list[str]:
    """The directories a command-line PATH names: itself, or what its glob matches."""
    arg = os.path.expanduser(str(arg))
    if os.path.exists(arg):
        matches = [arg]
    elif glob.has_magic(arg):
        matches = sorted(glob.glob(arg, recursive=True))
        if not matches:
            raise LoadError(f"PATH {arg!r} matches no files (give run or sweep directories, or globs)")
    else:
        raise LoadError(f"PATH {arg!r} does not exist (give run or sweep directories, or globs)")
    return [m for m in matches if os.path.isdir(m)]


# ---------------------------------------------------------------- status and config

@dataclass
class RunState:
    """What a run's summary says: ``status`` (a status word; :data:`NO_SUMMARY`, :data:`CORRUPT`
    or :data:`UNKNOWN` when it cannot say), the summary (empty when unreadable) and an issue text."""

    status: str
    summary: dict
    issue: str | None = None


def read_state(run_dir: Path) -> RunState:
    """The run's status and summary; never raises for a missing, half-written or foreign summary.
    A summary saying running while no process holds the run's lock is :data:`KILLED`."""
    path = Path(run_dir) / SUMMARY
    try:
        summary = json.loads(read_text(path))
    except FileNotFoundError:
        return RunState(NO_SUMMARY, {}, "no summary.json (starting, or killed before writing one)")
    except DamagedRunFile as exc:  # a link, FIFO or device, or too large
        return RunState(CORRUPT, {}, str(exc))
    except (OSError, ValueError, RecursionError):  # ValueError: invalid JSON or bytes that are no text
        return RunState(CORRUPT, {}, "summary.json unreadable (half-written?)")
    if not isinstance(summary, dict):
        return RunState(CORRUPT, {}, "summary.json unreadable (half-written?)")
    if summary.get("status") == RUNNING and not is_live(run_dir):
        return RunState(KILLED, summary, "summary says running, but no process holds the run's lock")
    return RunState(str(summary.get("status") or UNKNOWN), summary)


def _read_yaml(path: Path):
    """A run's YAML record, read as :func:`read_yaml_text` reads it, through :func:`open_fd`."""
    return read_yaml_text(read_text(path))


def read_yaml_text(text: str):
    """Safe-load YAML text with its size bounded: at most :data:`YAML_MAX_NODES` nodes once aliases
    are expanded (an alias bomb is refused with ``yaml.YAMLError`` before anything walks it)."""
    if "&" in text:  # no anchor, no alias: the common case skips the count
        _count_nodes(text)
    return yaml.load(text, Loader=_YAML_LOADER)


def _count_nodes(text: str) -> None:
    """Raise ``yaml.YAMLError`` when the document, aliases expanded, has more than YAML_MAX_NODES nodes."""
    anchors: dict[str, int] = {}
    stack: list[list] = [[None, 0]]  # [anchor, nodes so far] per open collection

    def add(n: int) -> None:
        stack[-1][1] += n
        if sum(size for _, size in stack) > YAML_MAX_NODES:
            raise yaml.YAMLError(f"more than {YAML_MAX_NODES} nodes with aliases expanded")

    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            add(anchors.get(event.anchor, 1))
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                anchors[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor:
                anchors[anchor] = size
            add(size)


def read_config(run_dir: Path) -> dict:
    """The run's resolved config (``.hydra/config.yaml``) as a plain dict, without a ``hydra`` node.
    Raises :class:`DamagedFile` naming the reason when it cannot be read."""
    try:
        config = _read_yaml(Path(run_dir) / HYDRA_CONFIG)
    except DamagedRunFile:
        raise
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        raise DamagedFile("config.yaml unreadable (invalid YAML; half-written?)") from None
    except OSError as e:
        raise DamagedFile(f"config.yaml unreadable ({e.strerror})") from None
    if not isinstance(config, dict):
        raise DamagedFile("config.yaml is not a mapping (half-written?)")
    config.pop("hydra", None)
    return config


def started_at(run_dir: Path) -> float | None:
    """When the run (or its last resume) was accepted: the mtime (epoch seconds) of its
    ``.hydra/config.yaml``, which the CLI writes then; None when there is no such regular file."""
    try:
        st = os.lstat(Path(run_dir) / HYDRA_CONFIG)
    except OSError:
        return None
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def run_files(run_dir: Path) -> list[tuple[str, int]]:
    """(name, size in bytes) of the regular files directly in ``run_dir`` (links and other kinds
    are left out, never followed), sorted by name."""
    out = []
    with os.scandir(run_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                out.append((entry.name, entry.stat(follow_symlinks=False).st_size))
    return sorted(out)


# ---------------------------------------------------------------- overrides

@dataclass(frozen=True)
class Override:
    """One command-line override of a run: ``key`` (dotted key, or config group, package dropped),
    ``value`` (its text; None for a deletion without value), ``op``: ``set`` (``key=v``),
    ``add`` (``+key=v``), ``force_add`` (``++key=v``) or ``delete`` (``~key`` or ``~key=v``),
    and ``text`` as written."""

    key: str
    value: str | None
    op: str
    text: str


def parse_override(text) -> Override | None:
    """Parse one override as Hydra's grammar reads its key side (``[~|+|++]key[@package][=value]``;
    the value is kept as text). None for ``hydra.*`` overrides and text that is no override."""
    written = text = str(text).strip()
    if text.startswith("~"):
        op, text = "delete", text[1:]
    elif text.startswith("++"):
        op, text = "force_add", text[2:]
    elif text.startswith("+"):
        op, text = "add", text[1:]
    else:
        op = "set"
    key, eq, value = text.partition("=")
    key = key.split("@", 1)[0].strip()  # group@package=choice: the group
    if not key or key == "hydra" or key.startswith(("hydra.", "hydra/")) or (not eq and op != "delete"):
        return None
    return Override(key, value.strip() if eq else None, op, written)


def read_overrides(run_dir: Path) -> list[Override]:
    """The run's overrides (``.hydra/overrides.yaml``), parsed; [] when there is no such file.
    Raises :class:`DamagedFile` when it exists but is no list."""
    path = Path(run_dir) / HYDRA_OVERRIDES
    try:
        texts = _read_yaml(path)
    except FileNotFoundError:
        return []
    except DamagedRunFile:
        raise
    except (OSError, ValueError, RecursionError, yaml.YAMLError):
        texts = None
    if not isinstance(texts, list):
        raise DamagedFile("overrides.yaml unreadable; its keys are not treated as swept")
    return [o for o in map(parse_override, texts) if o is not None]


def read_sweep_overrides(sweep_dir: Path) -> tuple[list[str], list[str]] | None:
    """The command-line overrides a multirun was started with, from Hydra's ``multirun.yaml`` in
    ``sweep_dir``: (task overrides, hydra overrides); None when there is no readable record."""
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        record = _read_yaml(path)
        overrides = record["hydra"]["overrides"]
        task, hydra_args = overrides.get("task") or [], overrides.get("hydra") or []
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(t, str) for t in [*task, *hydra_args]):
        return None
    return list(task), list(hydra_args)


# ---------------------------------------------------------------- metrics.csv

MAX_CURVE_POINTS = 2000  # rows per run a reader keeps of a long metrics.csv (see thin_rows)


@dataclass
class Metrics:
    """A run's ``metrics.csv``: ``columns`` (header names), ``values`` (float64, shape (rows, columns)),
    ``rows`` (complete rows in the file, before any thinning), ``last`` (the file's last complete row,
    shape (columns,); None when there is none) and ``issue`` (what was dropped, or None)."""

    columns: list[str]
    values: np.ndarray
    rows: int = 0
    last: np.ndarray | None = None
    issue: str | None = None


_NAN_TEXTS = ["nan", "NaN", "-nan"]  # what Python and numpy write for NaN; an empty field is malformed
_CHUNK_ROWS = 1 << 18  # rows per parser chunk: memory stays bounded for any file length


def read_metrics(run_dir: Path, max_points: int | None = None) -> Metrics:
    """Read ``metrics.csv``, stopping at the first malformed line and dropping a last line without
    its newline (a killed or live writer's torn row); never raises for a bad file (the reason is in
    ``issue``). Small files are parsed in Python (pandas' fixed cost per call dominates there),
    large ones with pandas' C parser in chunks; both accept exactly the rows :func:`_row` accepts.

    With ``max_points``, a longer file is thinned by :func:`thin_rows` chunk by chunk as it is read,
    so memory stays bounded by the kept rows plus one chunk, whatever the file's length.
    """
    path = Path(run_dir) / METRICS
    try:
        with open_file(path) as f:
            header = f.readline()
            columns = [h.strip() for h in header.decode("utf-8", "replace").rstrip("\r\n").split(",")]
            if not header.endswith(b"\n") or "step" not in columns:
                return Metrics([], np.empty((0, 0)), issue="metrics.csv has no header row with 'step'")
            start, size = len(header), os.fstat(f.fileno()).st_size
            if size - start <= _SMALL_BYTES:
                return _read_small(f.read(), columns, max_points)
            rows, torn = _count_lines(f)
            try:
                good = rows
                values = _parse_rows(f, start, columns, rows, max_points)
            except ValueError:  # a malformed line: find it, keep the rows before it
                good = _first_bad_row(f, start, len(columns))
                values = _parse_rows(f, start, columns, good, max_points)
            return Metrics(columns, *values, issue=_damage(good, rows, torn))
    except FileNotFoundError:  # no evaluation yet
        return Metrics([], np.empty((0, 0)))
    except OSError as e:
        return Metrics([], np.empty((0, 0)), issue=f"metrics.csv unreadable ({e.strerror})")
    except DamagedRunFile as e:
        return Metrics([], np.empty((0, 0)), issue=str(e))


_SMALL_BYTES = 1 << 18  # bodies up to this size (~6,000 rows) are parsed in Python


def _row(raw: bytes, ncol: int) -> list[float] | None:
    """One body line as ``ncol`` numbers, or None when it is malformed (wrong field count, an empty
    field, text that is no number)."""
    parts = raw.rstrip(b"\r").split(b",")
    if len(parts) != ncol:
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def _damage(good: int, complete: int, torn: bool) -> str | None:
    """The issue text for a body of ``complete`` newline-terminated rows of which the first ``good``
    are well-formed, followed (``torn``) or not by a line without its newline."""
    if good < complete - 1 or (good == complete - 1 and torn):
        return f"metrics.csv: malformed line {good + 2}; kept the {good} row(s) before it"
    if good == complete - 1 or torn:
        return "metrics.csv: truncated last line dropped"
    return None


def _read_small(body: bytes, columns: list[str], max_points: int | None) -> Metrics:
    lines = body.split(b"\n")  # the last item is b"" unless the last line is torn
    complete, torn = lines[:-1], lines[-1] != b""
    values = []
    for raw in complete:
        row = _row(raw, len(columns))
        if row is None:
            break
        values.append(row)
    array = np.asarray(values, dtype=float).reshape(len(values), len(columns))
    last = array[-1].copy() if len(array) else None
    return Metrics(columns, thin_rows(array, columns, max_points), len(array), last,
                   _damage(len(values), len(complete), torn))


def _count_lines(f) -> tuple[int, bool]:
    """(complete lines from the current position to the end, whether a torn line without newline follows)."""
    count, tail = 0, b"\n"
    while chunk := f.read(1 << 23):
        count += chunk.count(b"\n")
        tail = chunk
    return count, not tail.endswith(b"\n")


def _parse_rows(f, offset: int, columns: list[str], nrows: int, max_points: int | None):
    """(values, rows, last): the first ``nrows`` body rows (thinned to ``max_points``), their count
    and the last one. Raises ValueError for a malformed row among them."""
    if nrows == 0:
        return np.empty((0, len(columns))), 0, None
    import pandas as pd  # here: the trainer imports this module and need not pay for pandas

    f.seek(offset)
    thinner = _Thinner(nrows, columns, max_points)
    reader = pd.read_csv(f, header=None, names=list(range(len(columns))), dtype=np.float64, engine="c",
                         keep_default_na=False, na_values=_NAN_TEXTS, skip_blank_lines=False,
                         index_col=False, nrows=nrows, chunksize=_CHUNK_ROWS)
    with reader:
        for chunk in reader:
            thinner.add(chunk.to_numpy())
    if thinner.seen != nrows:
        raise ValueError(f"{thinner.seen} rows parsed of {nrows}")
    return thinner.result(), nrows, thinner.last


def _first_bad_row(f, offset: int, ncol: int) -> int:
    """Index of the first body row :func:`_row` rejects (the number of good rows before it)."""
    f.seek(offset)
    good = 0
    for raw in f:
        if not raw.endswith(b"\n") or _row(raw[:-1], ncol) is None:
            break
        good += 1
    return good


def _primary(columns: list[str]) -> str:
    """The column whose lowest point a thinned curve keeps: the validation objective if logged."""
    others = [c for c in columns if c != "step"]
    return "val_meta_objective" if "val_meta_objective" in others else (others[0] if others else "step")


def thin_stride(rows: int, max_points: int | None) -> int:
    """The stride :func:`thin_rows` uses: 1 up to ``max_points`` rows, else the smallest power of two
    that leaves at most ``max_points - 2`` rows (room for the lowest and the last row)."""
    if not max_points or rows <= max_points:
        return 1
    stride = 1
    while -(-rows // stride) > max(max_points - 2, 1):
        stride *= 2
    return stride


def thin_rows(values: np.ndarray, columns: list[str], max_points: int | None) -> np.ndarray:
    """A long curve thinned for reading: every ``stride``-th row from the first (the stride a power
    of two, :func:`thin_stride`, so runs of one schedule keep the same steps, and a shorter run's
    steps include a longer one's), plus the row of the lowest ``val_meta_objective`` and the last
    row. At most ``max_points`` rows; a curve of up to ``max_points`` rows is kept whole.
    ``values`` has shape (rows, len(columns)); :func:`read_metrics` applies the same rule chunk by chunk."""
    thinner = _Thinner(len(values), columns, max_points)
    thinner.add(values)
    return thinner.result()


class _Thinner:
    """:func:`thin_rows`' rule, fed block by block (row blocks in file order)."""

    def __init__(self, rows: int, columns: list[str], max_points: int | None):
        self.stride = thin_stride(rows, max_points)
        self.primary = columns.index(_primary(columns))
        self.ncol = len(columns)
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (row indices, rows)
        self.low: tuple[int, np.ndarray] | None = None
        self.seen, self.last = 0, None

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        index = self.seen + np.arange(len(block))
        keep = index % self.stride == 0
        self.blocks.append((index[keep], block[keep]))
        col = block[:, self.primary]
        if self.stride > 1 and np.isfinite(col).any():
            j = int(np.nanargmin(col))
            if self.low is None or col[j] < self.low[1][self.primary]:
                self.low = (self.seen + j, block[j].copy())
        self.seen += len(block)
        self.last = block[-1].copy()

    def result(self) -> np.ndarray:
        if not self.blocks:
            return np.empty((0, self.ncol))
        index = np.concatenate([i for i, _ in self.blocks])
        rows = np.concatenate([r for _, r in self.blocks])
        extra = [self.low] if self.low is not None else []
        if self.stride > 1:
            extra.append((self.seen - 1, self.last))
        if extra:
            index = np.concatenate([index, [i for i, _ in extra]])
            rows = np.concatenate([rows, np.stack([r for _, r in extra])])
            index, first = np.unique(index, return_index=True)  # sorted, each row once
            rows = rows[first]
        return rows


# ---------------------------------------------------------------- adaptation.csv

def read_adaptation(run_dir: Path) -> tuple[list[dict], str | None]:
    """``adaptation.csv`` as dict rows (columns :data:`ADAPTATION_COLUMNS`; absent ones NaN) and an issue or None;
    ([], None) when the run has none. A malformed line is dropped, never raised."""
    path = Path(run_dir) / ADAPTATION
    try:
        lines = read_bytes(path).decode(errors="replace").split("\n")
    except FileNotFoundError:
        return [], None
    except OSError as e:
        return [], f"adaptation.csv unreadable ({e.strerror})"
    except DamagedRunFile as e:
        return [], str(e)
    header = [h.strip() for h in lines[0].split(",")]
    if any(n not in header for n in ("init", "k", "mse_mean")):
        return [], "adaptation.csv lacks init/k/mse_mean columns"
    records, issue = [], None
    for i, line in enumerate(ln for ln in lines[1:] if ln.strip()):
        parts = line.split(",")
        rec = dict(zip(header, parts))
        try:
            if len(parts) != len(header):
                raise ValueError(line)
            records.append({"init": rec["init"], "k": int(float(rec["k"])),
                            **{c: float(rec.get(c) or "nan") for c in ADAPTATION_COLUMNS[2:]}})
        except ValueError:
            issue = f"adaptation.csv: malformed line {i + 2} dropped"
    return records, issue


# ---------------------------------------------------------------- restore

@dataclass
class Restored:
    """A finished run rebuilt from its directory: ``config`` (the resolved run config, a DictConfig),
    its ``model``, task distribution ``tasks``, ``algorithm`` and ``inner`` loop (as the trainer
    built them), and ``params`` (the final meta-parameters, one array per name)."""

    config: object
    model: object
    tasks: object
    algorithm: object
    inner: object
    params: dict


def restore(run_dir: Path) -> Restored:
    """Rebuild a run from ``.hydra/config.yaml`` and ``params.npz`` with the trainer's own
    :func:`maml_sweep.components.build` (never from the pickled checkpoint).

    Raises :class:`RestoreError` when the run has no ``params.npz`` (it did not complete) or a config
    this version cannot build (the message lists the config's problems), :class:`DamagedFile` for an
    unreadable config. Anything else is a bug and propagates.
    """
    from omegaconf import OmegaConf

    from .components import build
    from .config import check_values

    run_dir = Path(run_dir)
    params_file = run_dir / PARAMS
    if not os.path.lexists(params_file):
        raise RestoreError(f"{run_dir}: no {PARAMS} (the run has not completed)")
    cfg = OmegaConf.create(read_config(run_dir))
    problems = check_values(cfg)
    if problems:
        raise RestoreError(f"{run_dir}: this version cannot rebuild the run: {'; '.join(problems)}")
    params = load_params(params_file)
    parts = build(cfg)
    return Restored(cfg, parts.model, parts.tasks, parts.algorithm, parts.inner, params)
