"""The memory estimate bounds what a run really takes: over 30 configs spanning every size key, the
measured peak RSS of the whole command (``maml-sweep``, imports included) is at most 1.25 x the
estimate + 150 MB; and the caps refuse before any work. Slow: one subprocess per config."""
import os
import subprocess
import sys
import time

import pytest
from conftest import command, compose, run_cli, subprocess_env

from maml_sweep.bounds import GB
from maml_sweep.config import resource_estimates

SHORT = ["train.outer_steps=2", "train.eval_every=1", "train.figures=false"]
BANK = "eval.num_tasks=300"  # a config that does not size the test bank gets the old default: seconds, not minutes


def sized(overrides: list[str]) -> list[str]:
    return overrides if any(o.startswith("eval.num_tasks=") for o in overrides) else [*overrides, BANK]
# Each size key grown alone and in pairs, small enough to run in seconds on a loaded 2-core machine.
CONFIGS = [
    [], ["model.hidden=[256,256]"], ["model.hidden=[512]"], ["model.hidden=[64,64,64]"],
    ["task.num_points=5000", "model.hidden=[8]"], ["task.num_points=20000", "model.hidden=[8]"],
    ["task.num_points=2000"], ["algorithm.inner_steps=20"], ["algorithm.inner_steps=50", "model.hidden=[8]"],
    ["algorithm.inner_steps=10", "task.num_points=2000", "model.hidden=[8]"],
    ["train.meta_batch_size=32"], ["train.meta_batch_size=64", "model.hidden=[8]"],
    ["train.meta_batch_size=16", "task.num_points=1000"], ["algorithm=fomaml", "train.meta_batch_size=32"],
    ["algorithm=anil", "algorithm.inner_steps=20"], ["algorithm=reptile", "train.meta_batch_size=16"],
    ["eval.val_tasks=500"], ["eval.val_tasks=2000", "model.hidden=[8]"],
    ["eval.num_tasks=2000"], ["eval.num_tasks=5000", "model.hidden=[8]"],
    ["eval.max_steps=100"], ["eval.max_steps=300"], ["eval.max_steps=300", "eval.num_tasks=50"],
    ["eval.max_steps=200", "eval.query_size=500"], ["eval.query_size=2000"],
    ["eval.query_size=5000", "eval.num_tasks=100"], ["eval.support_size=1000"],
    ["eval.support_size=2000", "eval.num_tasks=100"], ["task=sine", "task.num_points=5000", "model.hidden=[8]"],
    ["train.dtype=float32", "task.num_points=5000"], ["algorithm=metasgd", "algorithm.inner_steps=10"],
]


# Linux carries a process's peak RSS across fork and exec: a run forked from this (large) pytest process
# would report pytest's peak. A small Python in between starts the run and reports its children's peak.
MEASURE = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
           "stderr=subprocess.PIPE); sys.stderr.write(p.stderr.decode()[-500:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")


def peak_rss(overrides, cwd) -> tuple[int, float]:
    """(peak RSS in bytes, seconds) of one ``maml-sweep`` run of ``overrides``."""
    t0 = time.perf_counter()
    run = command("maml_sweep", [*sized(overrides), *SHORT, f"hydra.run.dir=r{time.monotonic_ns()}"])
    proc = subprocess.run([sys.executable, "-c", MEASURE, *run], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{overrides}: {proc.stderr}"
    return int(proc.stdout.split()[-1]) * 1024, time.perf_counter() - t0  # ru_maxrss is in KiB on Linux


@pytest.mark.slow
def test_measured_peak_memory_stays_under_the_estimate_over_30_configs(tmp_path):
    assert len(CONFIGS) >= 30
    with open("/proc/loadavg") as f:
        print(f"\nload average {f.read().split()[:3]}; CPU {os.cpu_count()} cores", file=sys.stderr)
    rows, over = [], []
    for overrides in CONFIGS:
        parts = resource_estimates(compose([*sized(overrides), *SHORT]))
        estimate = max(e.bytes for e in parts)
        measured, seconds = peak_rss(overrides, tmp_path)
        rows.append((" ".join(overrides) or "(defaults)", measured, estimate, seconds))
        if measured > 1.25 * estimate + 0.15 * GB:
            over.append(rows[-1])
    print(f"{'config':58s} {'peak RSS':>10s} {'estimate':>10s} {'s':>6s}", file=sys.stderr)
    for name, measured, estimate, seconds in rows:
        print(f"{name:58s} {measured / 1e6:8.0f}MB {estimate / 1e6:8.0f}MB {seconds:6.1f}", file=sys.stderr)
    assert not over, f"peak RSS above 1.25 x estimate + 150 MB: {over}"


@pytest.mark.slow
@pytest.mark.parametrize("key", ["eval.max_steps=1000000", "eval.max_steps=20000", "eval.num_tasks=2000000000",
                                 "task.num_points=100000000", "model.hidden=[100000,100000]"])
def test_a_config_over_the_memory_cap_is_refused_before_any_work(tmp_path, key):
    t0 = time.perf_counter()
    proc = run_cli([key, "hydra.run.dir=run"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "train.max_memory_gb" in proc.stderr and key.split("=")[0] in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    print(f"{key}: refused in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
