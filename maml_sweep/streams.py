"""Random streams. Training uses either the notebook's single legacy stream or independent
SeedSequence streams; validation and test tasks always have streams of their own, keyed by the
task config and ``eval.seed`` and independent of the training seed, so runs are compared on the
very same tasks."""
from __future__ import annotations

import hashlib
import json

import numpy as np
from omegaconf import DictConfig, OmegaConf

PURPOSES = {"init": 0, "train": 1, "val": 2, "test": 3, "scratch": 4}


def training_streams(seed: int, mode: str):
    """(init generator, training-task generator). ``notebook``: one ``RandomState(seed)`` for
    both, so init, the validation task and training tasks follow the notebook's draw order."""
    if mode == "notebook":
        rng = np.random.RandomState(seed)
        return rng, rng
    init, train = (np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(2))
    return init, train


def keyed_stream(key, eval_seed: int, purpose: str) -> np.random.Generator:
    """A generator determined by a config (dict or DictConfig, e.g. the task config),
    ``eval.seed`` and a purpose."""
    if isinstance(key, DictConfig):
        key = OmegaConf.to_container(key, resolve=True)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()
    entropy = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([eval_seed, PURPOSES[purpose], *entropy])))


def get_state(rng):
    """A picklable snapshot of a RandomState or Generator."""
    return rng.get_state() if isinstance(rng, np.random.RandomState) else rng.bit_generator.state


def set_state(rng, state) -> None:
    """Restore a snapshot taken by :func:`get_state` into a generator of the same kind."""
    if isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state
