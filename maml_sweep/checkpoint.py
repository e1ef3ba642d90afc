"""The checkpoint codec: a nested training state as ``checkpoint.npz`` without pickle.

Plain arrays plus one JSON header (entry ``__meta__``: format name, :data:`CHECKPOINT_VERSION`, the
nested state with arrays referenced by entry name); it loads with ``np.load(path, allow_pickle=False)``.
Checkpoints of another version are refused, never guessed at.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .rundir import CHECKPOINT, DamagedRunFile, atomic_path, open_npz

CHECKPOINT_FORMAT = "maml-sweep checkpoint"
CHECKPOINT_VERSION = 1


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
