"""Synthetic run and sweep directories in the run-directory contract's exact format.

For tests of the loader on awkward runs (corrupt, half-written, diverged) and for the
1,000-run speed benchmark; the numbers are made up, the files are shaped like the real ones.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
import zlib
from pathlib import Path

import numpy as np
import yaml

from .. import metrics_csv, rundir
from ..config import EvalConfig


def base_config(seed: int = 0) -> dict:
    """The full composed job config with the project's default values (composed by Hydra from
    ``conf/``, resolved), so synthetic runs stay in the contract's exact format."""
    config = copy.deepcopy(_default_config())
    config["seed"] = seed
    return config


@functools.lru_cache(maxsize=1)
def _default_config() -> dict:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from ..config import register_configs

    register_configs()
    with initialize_config_module("maml_sweep.conf", version_base="1.3"):
        return OmegaConf.to_container(compose("config"), resolve=True)


@functools.lru_cache(maxsize=None)
def _model(hidden: tuple):
    """The model the trainer would build for the default config with these hidden sizes."""
    from omegaconf import OmegaConf

    from ..components import build

    config = base_config()
    config["model"]["hidden"] = list(hidden)
    return build(OmegaConf.create(config)).model


def _yaml(data) -> str:
    """YAML text in the given key order (libyaml's emitter when there is one: 10,000 runs in seconds)."""
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def set_key(config: dict, dotted: str, value) -> None:
    """Set ``a.b.c`` in a nested dict."""
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def override_string(key: str, value) -> str:
    """The Hydra override string for a value, e.g. ``task.bins=3``, ``model.hidden=[40,40]``."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(str(v) for v in value) + "]"
    else:
        text = str(value)
    return f"{key}={text}"


def write_run(run_dir: Path, config: dict, overrides: list[str], *, metrics: list[tuple] | None = None,
              summary: dict | None = None, params: dict | None = None,
              adaptation: list[tuple] | None = None, truncate_last_line: bool = False) -> Path:
    """Write one run directory through :mod:`maml_sweep.rundir`'s writers; ``None`` leaves the
    corresponding file out. ``metrics``: (step, val, val_mse, train, elapsed_s) rows; ``adaptation``:
    rows of ``rundir.ADAPTATION_COLUMNS``; ``truncate_last_line`` then cuts the last metrics
    row in half, as a killed writer would leave it."""
    run_dir = Path(run_dir)
    rundir.save_hydra_record(run_dir, {
        "config.yaml": _yaml(config),
        "overrides.yaml": _yaml(list(overrides)),
        "hydra.yaml": _yaml({"hydra": {"job": {"name": "maml_sweep", "override_dirname": ",".join(overrides)}}}),
    })
    if metrics is not None:
        metrics_csv.write_metrics(run_dir, metrics)
        if truncate_last_line and metrics:
            path = run_dir / rundir.METRICS
            text = path.read_text()
            last = len(metrics_csv.metrics_line(*metrics[-1]))
            path.write_text(text[: len(text) - last + last // 2])
    if summary is not None:
        rundir.write_json(run_dir / rundir.SUMMARY, summary)
    if params is not None:
        rundir.save_params(run_dir / rundir.PARAMS, params)
    if adaptation is not None:
        metrics_csv.write_adaptation_csv(run_dir / rundir.ADAPTATION, [dict(zip(rundir.ADAPTATION_COLUMNS, row))
                                                                  for row in adaptation])
    (run_dir / "maml_sweep.log").write_text("synthetic run\n")
    return run_dir


def synthetic_curve(level: float, outer_steps: int, eval_every: int, rng, ms_per_step: float = 2.0):
    """(rows of metrics.csv, final val, final train): a noisy exponential decay from ~3 down to
    ``level`` (val_meta_objective; val_mse about twice it, as with the notebook's loss_scale 0.5)."""
    steps = np.arange(eval_every, outer_steps + 1, eval_every)
    decay = np.exp(-3.0 * steps / max(outer_steps, 1))
    val = level + (3.0 - level) * decay
    val = val * np.exp(rng.normal(0.0, 0.05, size=len(steps)))
    train = val * np.exp(rng.normal(-0.02, 0.05, size=len(steps)))
    elapsed = steps * ms_per_step / 1000.0
    val_mse = 2 * val * np.exp(rng.normal(0.0, 0.02, size=len(steps)))
    rows = list(zip(steps.tolist(), val.tolist(), val_mse.tolist(), train.tolist(), elapsed.tolist()))
    return rows, float(val[-1]), float(train[-1])


def make_sweep(sweep_dir: Path, grid: dict, seeds=(0, 1, 2), *, outer_steps: int = 1000,
               eval_every: int = 100, with_adaptation: bool = False, with_params: bool = False,
               random_seed: int = 0) -> list[Path]:
    """A Hydra-multirun-shaped sweep over ``grid`` (dotted key -> values) times ``seeds``.

    The final validation objective depends smoothly on the grid position, so there is a
    unique best configuration; returns the run directories in job order.
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    keys = list(grid)
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"mode": "MULTIRUN", "sweep": {"dir": str(sweep_dir), "subdir": "${hydra.job.num}"}},
         "grid": {k: [str(v) for v in vals] for k, vals in grid.items()}}))
    rng = np.random.RandomState(random_seed)
    runs = []
    combos = list(itertools.product(*(grid[k] for k in keys)))
    for num, (combo, seed) in enumerate(itertools.product(combos, seeds)):
        config = base_config(seed)
        set_key(config, "train.outer_steps", outer_steps)
        set_key(config, "train.eval_every", eval_every)
        overrides = []
        for k, v in zip(keys, combo):
            if "." in k:
                set_key(config, k, list(v) if isinstance(v, tuple) else v)
            else:  # a config-group choice, e.g. algorithm=fomaml
                set_key(config, f"{k}.name", v)
            overrides.append(override_string(k, v))
        overrides.append(f"seed={seed}")
        positions = [grid[k].index(v) / max(len(grid[k]) - 1, 1) for k, v in zip(keys, combo)]
        level = 0.05 + 0.5 * sum((p - 0.3) ** 2 for p in positions)
        ms = 2.0 + 0.5 * positions[0] if positions else 2.0
        rows, val, train = synthetic_curve(level, outer_steps, eval_every, rng, ms)
        summary = {"status": rundir.COMPLETED, "steps": outer_steps, "outer_steps": outer_steps,
                   "val_meta_objective": val, "val_mse": rows[-1][2], "train_meta_objective": train,
                   "wall_s": outer_steps * ms / 1000.0, "ms_per_step": ms, "diverged_step": None,
                   "error": None, "config_hash": f"{num:016x}", "versions": {"maml-sweep": "0.1.0"},
                   "test_mse_k1": val * 1.5, "test_mse_k5": val * 1.1, "noise_floor": 0.01}
        adaptation = None
        if with_adaptation:
            adaptation = []
            for init, scale in (("trained", 1.0), ("pretrain", 3.0), ("scratch", 6.0)):
                for k in (0, 1, 2, 5, 10):
                    m = 0.01 + scale * val * math.exp(-0.3 * k) * (1 + 0.1 * rng.rand())
                    adaptation.append((init, k, m, 0.9 * m, 1.1 * m, 0.8 * m, 0.85 * m, 0.0, 50))
        params = None
        if with_params:
            params = _model(tuple(config["model"]["hidden"])).init(np.random.RandomState(seed), 0.1)
        runs.append(write_run(sweep_dir / str(num), config, overrides, metrics=rows, summary=summary,
                              params=params, adaptation=adaptation))
    return runs


def planted_sweep(sweep_dir: Path, configs: list[dict], seeds=(0, 1, 2), *, n_tasks: int = 60, max_k: int = 10,
                  level=lambda config: 1.0, val_noise: float = 0.02, random_seed: int = 0,
                  statuses: dict | None = None, preset: dict | None = None) -> list[Path]:
    """A sweep whose per-task test MSE (``test_mse.npz``) and ``val_mse`` carry planted effects.

    ``configs``: dotted key -> value per configuration (a key without a dot is a group choice, e.g.
    ``algorithm``). Each run's per-task MSE at step k is ``level(config) * task_difficulty * decay(k)``
    times a seed effect and noise; the task difficulties depend only on the ``task.*`` values (one bank
    per task condition, as in real runs). ``val_mse`` is the configuration's level plus a little noise.
    ``statuses``: (config index, seed) -> status or a ``val_mse`` value to plant (e.g. ``float('inf')``).
    ``preset``: dotted key -> value set in every run's config without an override (what an
    ``experiment`` preset does; its name goes into the overrides as ``experiment=<preset name>``).
    """
    from .. import evaluate

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    rng = np.random.default_rng(random_seed)
    out, num = [], 0
    for ci, combo in enumerate(configs):
        bank = sorted((k, str(v)) for k, v in {**(preset or {}), **combo}.items() if k.startswith("task."))
        bank_rng = np.random.default_rng(zlib.crc32(repr(bank).encode()))
        difficulty = bank_rng.gamma(4.0, 0.25, size=(n_tasks, 1))
        for seed in seeds:
            config = base_config(seed)
            overrides = [f"experiment={preset['name']}"] if preset else []
            for k, v in (preset or {}).items():
                if k != "name":
                    set_key(config, k, v)
            for k, v in combo.items():
                set_key(config, k if "." in k else f"{k}.name", v)
                overrides.append(override_string(k, v))
            overrides.append(f"seed={seed}")
            lv = float(level(combo))
            seed_effect = np.exp(rng.normal(0.0, 0.03))
            decay = 0.3 + 0.7 * np.exp(-0.3 * np.arange(max_k + 1))
            mse = lv * difficulty * decay * seed_effect * np.exp(rng.normal(0.0, 0.05, size=(n_tasks, max_k + 1)))
            run_dir = sweep_dir / str(num)
            rows = [(s, lv, 2 * lv * (1 + 0.3 * np.exp(-s / 50)), lv, s / 1000) for s in range(20, 101, 20)]
            write_run(run_dir, config, overrides, metrics=rows)
            keys = evaluate.record(run_dir, {"trained": mse, "pretrain": 1.5 * mse, "scratch": 3 * mse},
                                   "trained", EvalConfig().report_steps, 5)
            planted = (statuses or {}).get((ci, seed))
            status = planted if isinstance(planted, str) else rundir.COMPLETED
            val = planted if isinstance(planted, float) else lv * np.exp(rng.normal(0.0, val_noise))
            summary = {"status": status, "steps": 100, "outer_steps": 100, "val_mse": val,
                       "val_meta_objective": lv / 2, "ms_per_step": 1.0, "wall_s": 0.1, "noise_floor": 0.01, **keys}
            rundir.write_json(run_dir / rundir.SUMMARY, summary)
            out.append(run_dir)
            num += 1
    return out
