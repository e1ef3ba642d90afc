"""A content-keyed cache of the scratch baseline's test-bank MSE matrix.

Every run of one model/task/evaluation config evaluates the same never-trained initialisation on
the same test bank, so its per-task MSE matrix (tasks x adaptation steps, float64) is computed once
and shared by all runs, sweeps and processes.

- Where: ``$MAML_SWEEP_CACHE_DIR`` if set (``off`` or empty: no cache), else
  ``$XDG_CACHE_HOME/maml-sweep``, else ``~/.cache/maml-sweep``. Deleting the folder is always safe.
- Key: the SHA-256 of everything the numbers depend on: the model, task and eval configs, the
  evaluation inner loop (lr, steps, loss scale), the dtype, the numpy version and the source code of
  the modules that compute the matrix. Any change gives a new file; nothing is ever stale.
- Files: ``scratch-<key>.npz`` with the matrix ``value``, the ``key`` (JSON) it was computed for
  and ``nonfinite`` (its count of NaN/inf entries), checked on every read: the full key, the entry
  names, the value's shape and dtype and its non-finite count. A damaged entry (or a link, FIFO or
  unreadable file in its place: it is opened like a run file, :func:`rundir.open_fd`) is recomputed
  and rewritten, with one warning line; a missing one silently.
- Concurrency: written by :func:`rundir.save_arrays` (a temporary file in the same folder renamed
  over the target), so concurrent runs (a parallel sweep) may both compute a missing entry, but a
  reader only ever sees a whole file, and every writer writes the same content.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import rundir

log = logging.getLogger(__name__)
ENV = "MAML_SWEEP_CACHE_DIR"
# Modules whose code determines the matrix (init, task draws, streams, adaptation).
SOURCES = ("model.py", "tasks.py", "streams.py", "fast.py", "batched.py", "maml.py", "algorithms.py")


def cache_dir() -> Path | None:
    """The cache folder (see the module docstring), or None when caching is off."""
    if ENV in os.environ:
        value = os.environ[ENV].strip()
        return None if value in ("", "off") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "maml-sweep"


def _code_digest() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def content_key(**parts) -> dict:
    """The full key: ``parts`` (JSON-able: configs as plain dicts) plus numpy's version and the code's."""
    return {**parts, "numpy": np.__version__, "code": _code_digest()}


def cached(kind: str, key: dict, compute: Callable[[], np.ndarray], shape: tuple, dtype=np.float64) -> np.ndarray:
    """The array of ``shape`` and ``dtype`` stored for ``key`` under ``kind``, or ``compute()``
    stored atomically and returned (a damaged entry is recomputed with one warning line)."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    folder = cache_dir()
    if folder is None:
        return compute()
    path = folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"
    value, damage = _read_entry(path, text, tuple(shape), np.dtype(dtype))
    if value is not None:
        return value
    if damage is not None:
        log.warning("scratch cache: %s is damaged (%s); recomputed and rewritten", path, damage)
    value = compute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rundir.save_arrays(path, {"value": value, "key": np.array(text), "nonfinite": _nonfinite(value)})
    except (OSError, ValueError):
        pass  # a read-only or full cache folder costs time, never a run
    return value


def _nonfinite(value: np.ndarray) -> np.ndarray:
    return np.array(value.size - int(np.isfinite(value).sum()))


def _read_entry(path: Path, text: str, shape: tuple, dtype: np.dtype) -> tuple[np.ndarray | None, str | None]:
    """(the entry's value, None) when it is sound; (None, why) when damaged; (None, None) when missing."""
    try:
        with rundir.open_npz(path) as data:
            if sorted(data.files) != ["key", "nonfinite", "value"]:
                return None, f"entries {', '.join(sorted(data.files))}"
            if str(data["key"][()]) != text:
                return None, "another key"
            value = data["value"]
            nonfinite = data["nonfinite"]
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return None, str(exc).split("; ")[0] or type(exc).__name__
    if value.shape != shape or value.dtype != dtype:
        return None, f"value {value.dtype}{list(value.shape)}, expected {dtype}{list(shape)}"
    if nonfinite.shape != () or int(nonfinite) != int(_nonfinite(value)):
        return None, "its count of non-finite values does not match"
    return value, None


def scratch_mse(cfg, model, bank, inner, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The scratch init's per-task MSE matrix (tasks, steps + 1) for run config ``cfg`` on ``bank``
    with the evaluation inner loop ``inner``: from the cache, else ``compute()``."""
    from omegaconf import OmegaConf

    plain = lambda node: OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    key = content_key(model=plain(cfg.model), task=plain(cfg.task), eval=plain(cfg.eval), dtype=model.dtype,
                      inner={"lr": float(inner.lr), "steps": int(inner.steps), "loss_scale": float(inner.loss_scale)},
                      bank=[len(bank), int(np.size(bank[0].x)), int(np.size(bank[0].query[0]))])
    return cached("scratch", key, compute, shape=(len(bank), int(inner.steps) + 1))
