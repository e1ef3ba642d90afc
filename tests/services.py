"""Real services for the slow tests: Debian packages installed on demand, a single-node SLURM
cluster in a temporary folder. Everything started here is stopped by its PID."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import wait_for


def need_debian_packages(packages: list[str], binaries: list[str]) -> None:
    """Make sure ``binaries`` are on PATH, installing Debian's ``packages`` with apt-get if not.

    Skips the calling test (with the reason) where that truly cannot happen: not root, or no apt-get."""
    if all(shutil.which(b) for b in binaries):
        return
    if os.geteuid() != 0:
        pytest.skip(f"needs {', '.join(packages)} from Debian's archive: not root, so apt-get cannot install them")
    if not shutil.which("apt-get"):
        pytest.skip(f"needs {', '.join(packages)}: this system has no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True, timeout=900)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *lock, *packages], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"apt-get install {' '.join(packages)} failed:\n{proc.stderr[-2000:]}"
    missing = [b for b in binaries if not shutil.which(b)]
    assert not missing, f"installed {packages} but {missing} are still not on PATH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=local
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge/socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def slurm_cluster(folder: Path):
    """A single-node SLURM cluster (munged, slurmctld, slurmd) configured and run inside ``folder``;
    yields the environment (``SLURM_CONF``) for its client commands. Stopped by PID on exit."""
    need_debian_packages(["slurmctld", "slurmd", "slurm-client", "munge"],
                         ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "munged", "munge"])
    folder = Path(folder)
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "munge").chmod(0o755)  # munged wants the socket's folder searchable
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    mem_mb = int(int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemAvailable"))) / 1024 * 0.8)
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], dir=folder, cpus=os.cpu_count(),
                                      mem_mb=mem_mb, ctld_port=free_port(), d_port=free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen] = []

    def start(argv, log):
        started.append(subprocess.Popen(argv, env=env, stdout=open(folder / log, "w"), stderr=subprocess.STDOUT))

    try:
        m = folder / "munge"
        start(["munged", "--foreground", "--force", f"--socket={m}/socket", f"--key-file={key}",
               f"--log-file={m}/munged.log", f"--pid-file={m}/munged.pid", f"--seed-file={m}/munged.seed"],
              "munged.out")
        wait_for(lambda: (m / "socket").exists(), 30, "munged's socket", interval=0.5)
        start(["slurmctld", "-D", "-f", str(conf)], "slurmctld.out")
        wait_for(lambda: subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True).stdout
                 .count("UP"), 60, "slurmctld", interval=0.5)
        start(["slurmd", "-D", "-f", str(conf)], "slurmd.out")
        wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                                  text=True).stdout, 60, "the node to be idle", interval=0.5)
        yield env
    finally:
        if len(started) == 3:  # jobs a failed test left behind end with the cluster
            subprocess.run(["scancel", "--full", "--quiet", f"--user={os.getuid()}"], env=env, timeout=30)
            time.sleep(1)
        for proc in reversed(started):  # slurmd, slurmctld, munged: by the PIDs we started
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium(url: str, profile: Path, *args: str, width: int = 1280, height: int = 900) -> str:
    """Run Debian's headless Chromium once on ``url`` with a fresh profile folder; returns its stdout."""
    need_debian_packages(["chromium"], ["chromium"])
    proc = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           f"--window-size={width},{height}", *args, url],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
