"""The scratch curve cache: content-keyed, atomic, overridable, and invisible in the numbers."""
import logging
import os
import threading

import numpy as np
import pytest
from conftest import TINY

from maml_sweep import scratch_cache
from maml_sweep.train import run


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(scratch_cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return np.array(value, dtype=float)

    return compute, calls


def test_computes_once_per_key_and_reads_back(cache):
    compute, calls = counting([[1.0, 2.0]])
    key = scratch_cache.content_key(a=1)
    first = scratch_cache.cached("scratch", key, compute, (1, 2))
    again = scratch_cache.cached("scratch", key, compute, (1, 2))
    assert len(calls) == 1 and np.array_equal(first, again)
    scratch_cache.cached("scratch", scratch_cache.content_key(a=2), compute, (1, 2))
    assert len(calls) == 2 and len(list(cache.glob("scratch-*.npz"))) == 2


def test_unreadable_entry_is_recomputed_and_off_disables(cache, monkeypatch):
    compute, calls = counting([3.0])
    key = scratch_cache.content_key(a=1)
    scratch_cache.cached("scratch", key, compute, (1,))
    (path,) = cache.glob("scratch-*.npz")
    path.write_bytes(b"half a file")
    assert np.array_equal(scratch_cache.cached("scratch", key, compute, (1,)), [3.0]) and len(calls) == 2
    assert np.array_equal(scratch_cache.cached("scratch", key, compute, (1,)), [3.0]) and len(calls) == 2
    monkeypatch.setenv(scratch_cache.ENV, "off")
    assert scratch_cache.cache_dir() is None
    scratch_cache.cached("scratch", key, compute, (1,))
    assert len(calls) == 3


def test_default_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(scratch_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert scratch_cache.cache_dir() == tmp_path / "maml-sweep"


def test_concurrent_writers_leave_one_whole_file(cache):
    key = scratch_cache.content_key(a=3)
    results = []

    def worker():
        results.append(scratch_cache.cached("scratch", key, lambda: np.arange(1000.0), (1000,)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, np.arange(1000.0)) for r in results)
    assert [p.name.startswith("scratch-") for p in cache.iterdir()] == [True]  # no temp files left


def test_runs_share_the_scratch_curve_and_get_the_same_numbers(compose_cfg, tmp_path, cache, monkeypatch):
    cfg = compose_cfg([*TINY, "train.outer_steps=8"])
    run(cfg, tmp_path / "a")
    assert len(list(cache.glob("scratch-*.npz"))) == 1
    run(compose_cfg([*TINY, "train.outer_steps=8", "seed=1"]), tmp_path / "b")  # same eval: cache hit
    assert len(list(cache.glob("scratch-*.npz"))) == 1
    monkeypatch.setenv(scratch_cache.ENV, "off")
    run(cfg, tmp_path / "c")
    rows = {d: [r for r in (tmp_path / d / "adaptation.csv").read_text().splitlines() if r.startswith("scratch")]
            for d in "abc"}
    assert rows["a"] and rows["a"] == rows["b"] == rows["c"]
    run(compose_cfg([*TINY, "train.outer_steps=8", "eval.max_steps=3", "eval.report_steps=[1,3]"]), tmp_path / "d")
    monkeypatch.setenv(scratch_cache.ENV, str(cache))
    run(compose_cfg([*TINY, "train.outer_steps=8", "train.dtype=float32"]), tmp_path / "e")
    assert len(list(cache.glob("scratch-*.npz"))) == 2  # eval.max_steps=3 ran uncached; float32: own key


def _entry(path, **arrays):
    """Overwrite the cache entry at ``path`` with ``arrays`` (as a damaged or hostile writer would)."""
    path.unlink()
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage", ["right key, (3, 2) value", "float32 value", "a NaN planted", "no key entry",
                                    "another key", "a link to a good entry", "a FIFO"])
def test_a_damaged_entry_is_recomputed_with_one_warning_line(cache, caplog, tmp_path, damage):
    """The issue's case first: an entry with the right key but a (3, 2) value was used silently."""
    good = np.array([[1.0, np.inf], [2.0, 3.0]])
    compute, calls = counting(good)
    key = scratch_cache.content_key(a=1)
    scratch_cache.cached("scratch", key, compute, (2, 2))  # NaN/inf kept and counted
    (path,) = cache.glob("scratch-*.npz")
    with np.load(path) as data:
        entry = {k: data[k] for k in data.files}
    if damage == "right key, (3, 2) value":
        _entry(path, **{**entry, "value": np.zeros((3, 2))})
    elif damage == "float32 value":
        _entry(path, **{**entry, "value": good.astype(np.float32)})
    elif damage == "a NaN planted":
        _entry(path, **{**entry, "value": np.where(good == 2.0, np.nan, good)})
    elif damage == "no key entry":
        _entry(path, value=good, nonfinite=entry["nonfinite"])
    elif damage == "another key":
        _entry(path, **{**entry, "key": np.array("{}")})
    elif damage == "a link to a good entry":
        os.replace(path, tmp_path / "elsewhere.npz")
        path.symlink_to(tmp_path / "elsewhere.npz")
    else:
        path.unlink()
        os.mkfifo(path)
    with caplog.at_level(logging.WARNING, logger="maml_sweep.scratch_cache"):
        value = scratch_cache.cached("scratch", key, compute, (2, 2))
    assert np.array_equal(value, good) and len(calls) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0]
    assert path.is_file() and not path.is_symlink()  # rewritten whole: the next read is a hit
    assert np.array_equal(scratch_cache.cached("scratch", key, compute, (2, 2)), good) and len(calls) == 2
