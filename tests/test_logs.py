"""Log lines: the run directory comes first; under a parallel launcher every line names its job."""
import io
import logging
import re

import pytest
from conftest import TINY, run_cli

from maml_sweep.logs import tag_job


def test_tag_job_prefixes_each_line_once_for_every_handler():
    root = logging.getLogger()
    streams = [io.StringIO(), io.StringIO()]
    handlers = [logging.StreamHandler(s) for s in streams]
    saved = root.handlers[:], root.level
    root.handlers[:] = handlers
    root.setLevel(logging.INFO)
    try:
        tag_job(3)
        tag_job(3)  # tagging again (the next job in a reused worker) replaces, never stacks
        logging.getLogger("maml_sweep.train").info("step %d", 100)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert [s.getvalue() for s in streams] == ["[job 3] step 100\n"] * 2


@pytest.mark.slow
def test_joblib_sweep_log_lines_name_their_job_and_the_run_directory_comes_first(tmp_path):
    proc = run_cli(["-m", "-v", "seed=0,1", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "hydra.sweep.dir=s"], cwd=tmp_path)  # -v: the jobs' lines on the console too
    assert proc.returncode == 0, proc.stderr[-2000:]
    for num in (0, 1):
        lines = (tmp_path / "s" / str(num) / "maml_sweep.log").read_text().splitlines()
        assert lines and all(f"[job {num}] " in line for line in lines), lines
        assert re.search(rf"\[job {num}\] run directory: .*/s/{num}$", lines[0]), lines[0]
    job_lines = [line for line in proc.stdout.splitlines() if "maml_sweep." in line]
    assert job_lines and all(re.search(r"\[job [01]\] ", line) for line in job_lines), job_lines


@pytest.mark.slow
def test_a_single_run_logs_its_directory_first(tmp_path):
    proc = run_cli([*TINY, "hydra.run.dir=r"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = (tmp_path / "r" / "maml_sweep.log").read_text().splitlines()[0]
    assert first.endswith(f"run directory: {tmp_path / 'r'}") and "[job" not in first


def test_slurm_without_accounting_says_so_once_and_stops_polling_sacct(tmp_path, monkeypatch, caplog):
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmJob

    from maml_sweep.cluster import QuietSacct

    fake = tmp_path / "sacct"
    fake.write_text("#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(SlurmJob.watcher, "_make_command", SlurmJob.watcher._make_command)  # undone afterwards
    basic = OmegaConf.create(
        {"hydra": {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}}})
    slurm = OmegaConf.create({"hydra": {"launcher": {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}}})
    with caplog.at_level(logging.INFO, logger="maml_sweep.cluster"):
        QuietSacct().on_multirun_start(basic)
        assert SlurmJob.watcher._make_command is not None and not caplog.records
        SlurmJob.watcher._registered.add("7")
        QuietSacct().on_multirun_start(slurm)
        SlurmJob.watcher._registered.discard("7")
    assert [r.getMessage() for r in caplog.records] == [
        "SLURM job accounting is not available (sacct: Slurm accounting storage is disabled): job states come "
        "from submitit's result files, and sacct is not polled."]
    assert SlurmJob.watcher._make_command() is None
