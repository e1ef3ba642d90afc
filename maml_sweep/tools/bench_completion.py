"""Seconds per TAB: ``maml-sweep -sc query=bash`` answered from the completion cache against Hydra's
own answer (the reference: the command as it was, composing the config at every TAB), in one sitting.

    python -m maml_sweep.tools.bench_completion [--repeats 5]

Each query runs as the shell runs it (a new process, ``COMP_LINE`` set) and is timed until its stdout
closes, which is when the shell shows the candidates. Prints the load average at start and end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

LINES = ("maml-sweep ", "maml-sweep tr", "maml-sweep train.", "maml-sweep algorithm=", "maml-sweep seed=3 task.b",
         "maml-sweep hydra/launcher=", "maml-sweep -m task=sine task.")
CACHED = [sys.executable, "-m", "maml_sweep", "-sc", "query=bash"]
REFERENCE = [sys.executable, "-c", "import sys; from maml_sweep.cli import main; main()", "-sc", "query=bash"]


def seconds_to_answer(argv: list[str], line: str, env: dict) -> tuple[float, str]:
    """Wall seconds until the process closes its stdout, and what it printed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env={**env, "COMP_LINE": line, "COMP_POINT": str(len(line))},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    elapsed = time.perf_counter() - t0
    proc.wait()
    return elapsed, out.decode()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MAML_SWEEP_CACHE_DIR": cache}
        for line in LINES:  # the first TAB of a line fills the cache (after answering)
            seconds_to_answer(CACHED, line, env)
            time.sleep(2.0)  # let the warm-up behind the answer finish
        rows = []
        for line in LINES:
            ref, cached = [], []
            for _ in range(args.repeats):  # alternate, so load changes hit both alike
                t, want = seconds_to_answer(REFERENCE, line, env)
                ref.append(t)
                t, got = seconds_to_answer(CACHED, line, env)
                cached.append(t)
                assert sorted(got.split()) == sorted(want.split()), (line, got, want)
            rows.append((line, statistics.median(ref), statistics.median(cached)))
    print(f"{'COMP_LINE':32} {'Hydra s':>8} {'cached s':>9} {'ratio':>6}")
    for line, ref, cached in rows:
        print(f"{line!r:32} {ref:8.3f} {cached:9.3f} {ref / cached:6.1f}")
    print(f"median per TAB: Hydra {statistics.median(r for _, r, _ in rows):.3f} s, cached "
          f"{statistics.median(c for _, _, c in rows):.3f} s; load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
