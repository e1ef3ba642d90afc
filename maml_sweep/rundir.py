"""The run-directory contract: file names, status words, safe opening, atomic writes, the run hash.

A run directory holds, besides Hydra's ``.hydra/`` and its ``<job name>.log``:

- ``metrics.csv``: one row per evaluation, columns :data:`METRIC_COLUMNS`, appended and flushed
  (written and read by :mod:`maml_sweep.metrics_csv`);
- ``summary.json``: status (:data:`STATUSES`), final metrics, steps done (current at every
  checkpoint), wall seconds, ms per outer step, package versions, the run hash (:func:`run_hash`);
- ``params.npz``: final meta-parameters, one array per name (see :mod:`maml_sweep.model`);
- ``checkpoint.npz``: step, params, optimizer state, RNG state, validation tasks, figure snapshots,
  for resume; plain arrays plus one JSON header, no pickle (:mod:`maml_sweep.checkpoint`);
- ``validation_fits.png``: the notebook's grid of adaptation trajectories;
- ``adaptation.csv``: statistics over the test bank of the MSE after k adaptation steps, per init
  (columns :data:`ADAPTATION_COLUMNS`; see :mod:`maml_sweep.stats`);
- ``test_mse.npz``: every test task's MSE after k = 0..eval.max_steps steps, one float64 array of
  shape (eval.num_tasks, eval.max_steps + 1) per init (``trained`` or ``pretrain``, ``scratch``),
  tasks in test-bank order (the same for every run of a task config and eval.seed), NaN/inf kept.
- ``.run.lock``: held (``fcntl.flock``, exclusive) by the one process that owns the run, for its whole
  life (:mod:`maml_sweep.runlock`); a summary saying ``running`` while the lock is free is read as a
  killed run (:data:`KILLED`, :func:`maml_sweep.rundir_read.read_state`);
- ``.aside/``: files set aside by ``maml-sweep-aside`` (damaged ones; never deleted; :mod:`maml_sweep.aside`).

A directory is accepted for a run only when it is empty or holds nothing but the names above
(:func:`foreign_files`); anything else is refused before anything is written. A damaged summary or
checkpoint is refused with one line naming the file and the command that sets it aside, which
starts the run over (``maml-sweep-aside RUN_DIR/FILE``, or ``python -m maml_sweep.aside``).

Every file of a run directory is opened through :func:`open_fd` (no symbolic link followed, no FIFO
blocked on, regular files only) and read with a bound; a directory holding a link, FIFO, socket or
device where a run file belongs is refused (:func:`unsafe_entry`). ``.npz`` files load without
pickle, stored entries only.

Files a reader could mistake for complete are written atomically (temp file ``.<stem>.tmp-*<suffix>``
+ rename); temp files of a killed write are removed by the next run in the directory.

Modules by job: this one (the contract), :mod:`maml_sweep.checkpoint` (the checkpoint codec),
:mod:`maml_sweep.runlock` (the lock), :mod:`maml_sweep.aside` (setting files aside),
:mod:`maml_sweep.metrics_csv` (metrics.csv and adaptation.csv), :mod:`maml_sweep.rundir_read` (what
every reader uses: discovery, status, config, overrides) and :func:`maml_sweep.components.restore`
(a finished run rebuilt).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import stat
import tempfile
import zipfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

METRICS = "metrics.csv"
SUMMARY = "summary.json"
PARAMS = "params.npz"
CHECKPOINT = "checkpoint.npz"
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
    that sets it aside so the run starts over (:func:`maml_sweep.aside.set_aside`)."""

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


def save_hydra_record(run_dir: Path, texts: dict[str, str]) -> None:
    """Write ``.hydra/<name>`` for each name -> YAML text (config.yaml, hydra.yaml, overrides.yaml)."""
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    if os.path.islink(folder) or not folder.is_dir():  # checked by the run before; checked again here
        raise _unsafe(folder, file_kind(os.lstat(folder).st_mode) or "not a folder")
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)



# train.* keys that do not change a run's numbers, left out of its hash: the resource caps (raising one
# resumes the same run) and figures (a sweep's job and the same single run are one run).
UNHASHED_TRAIN_KEYS = ("max_memory_gb", "max_hours", "figures")


def run_hash(cfg) -> str:
    """The hash that identifies a run's config (``summary.json``'s ``config_hash``): a short stable
    hash of the resolved config (a DictConfig or plain dict) without :data:`UNHASHED_TRAIN_KEYS`."""
    return _hash(_plain(cfg), UNHASHED_TRAIN_KEYS)


def accepted_hashes(cfg) -> tuple[str, ...]:
    """The hashes under which a recorded run is this config's: :func:`run_hash`, then the hash of
    run directories recorded before ``train.figures`` left the hash (docs/run-directory.md)."""
    plain = _plain(cfg)
    return run_hash(plain), _hash(plain, ("max_memory_gb", "max_hours"))


def _plain(cfg) -> dict:
    if isinstance(cfg, dict):
        return cfg
    from omegaconf import OmegaConf  # here: the reading side need not import omegaconf

    return OmegaConf.to_container(cfg, resolve=True)


def _hash(plain: dict, unhashed: tuple[str, ...]) -> str:
    train = {k: v for k, v in (plain.get("train") or {}).items() if k not in unhashed}
    text = json.dumps({**plain, "train": train} if "train" in plain else plain, sort_keys=True, separators=(",", ":"))
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
