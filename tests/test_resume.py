"""Resume by directory: ``maml-sweep hydra.run.dir=DIR`` / ``-m hydra.sweep.dir=DIR`` alone resumes with the
overrides DIR records; differing overrides are refused naming each differing key and the resuming command."""
import shlex

import pytest
from conftest import TINY, curve, run_cli, set_summary, summary_of

from maml_sweep.resume import differing_keys, fill_in
from maml_sweep.tools.synthetic import base_config, write_run


def test_a_lone_run_dir_gets_the_recorded_overrides(tmp_path):
    write_run(tmp_path / "r", base_config(3), ["experiment=maml2017_sine", "seed=3"], summary=None)
    argv, said = fill_in(["-cp", "conf", "hydra.run.dir=" + str(tmp_path / "r")])
    assert argv[-2:] == ["experiment=maml2017_sine", "seed=3"] and "experiment=maml2017_sine seed=3" in said
    for unchanged in (["seed=4", f"hydra.run.dir={tmp_path / 'r'}"],
                      ["--cfg", "job", f"hydra.run.dir={tmp_path / 'r'}"],
                      [f"hydra.run.dir={tmp_path / 'nothing'}"], ["-m", f"hydra.sweep.dir={tmp_path / 'r'}"]):
        assert fill_in(unchanged) == (unchanged, None)


def test_differing_keys_name_each_key_with_both_values():
    assert differing_keys(["experiment=maml2017_sine", "seed=3", "task.bins=3"], ["seed=5", "task.bins=3", "+x=1"]) == [
        "experiment (maml2017_sine there, unset here)", "seed (3 there, 5 here)", "x (unset there, 1 here)"]


@pytest.mark.slow
def test_a_run_started_with_overrides_resumes_by_its_directory_alone(tmp_path):
    args = ["seed=3", "algorithm=fomaml", *TINY]
    assert run_cli([*args, "hydra.run.dir=straight"], cwd=tmp_path).returncode == 0
    assert run_cli([*args, "hydra.run.dir=r"], cwd=tmp_path).returncode == 0
    set_summary(tmp_path / "r", status="interrupted")  # as if stopped during the test-bank evaluation

    proc = run_cli(["hydra.run.dir=r"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == f"maml-sweep: resuming the run in r with its overrides: {' '.join(args)}"
    assert summary_of(tmp_path / "r")["status"] == "completed"
    assert summary_of(tmp_path / "r")["test_mse_k5"] == summary_of(tmp_path / "straight")["test_mse_k5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "straight"]  # no new directory

    refused = run_cli(["seed=4", *TINY, "hydra.run.dir=r"], cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    err = refused.stderr
    assert "seed (3 there, 4 here)" in err and "algorithm (fomaml there, unset here)" in err
    command = shlex.split(err.split("resume that run with: ")[1].strip())
    assert command[:3] == ["python", "-m", "maml_sweep"] and command[3:] == [*args, "hydra.run.dir=r"]


@pytest.mark.slow
def test_a_sweep_started_with_overrides_resumes_by_its_directory_alone(tmp_path):
    args = ["-m", "seed=0,1", "task.bins=3", *TINY]
    assert run_cli([*args, "hydra.sweep.dir=s"], cwd=tmp_path).returncode == 0
    first = curve(tmp_path / "s" / "1")
    set_summary(tmp_path / "s" / "1", status="interrupted")
    before = (tmp_path / "s" / "0" / "summary.json").read_bytes()

    proc = run_cli(["-m", "hydra.sweep.dir=s"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == ("maml-sweep: resuming the sweep in s with its overrides: "
                                           f"{' '.join(args[1:])}")
    assert (tmp_path / "s" / "0" / "summary.json").read_bytes() == before  # completed: skipped
    assert summary_of(tmp_path / "s" / "1")["status"] == "completed" and curve(tmp_path / "s" / "1") == first
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.isdigit()) == ["0", "1"]

    refused = run_cli(["-m", "seed=0,1", "task.bins=6", *TINY, "hydra.sweep.dir=s"], cwd=tmp_path)
    assert refused.returncode == 2 and "task.bins (3 there, 6 here)" in refused.stderr
    command = shlex.split(refused.stderr.split("resume that sweep with: ")[1].split(" (or choose")[0])
    assert command[3:] == [*args, "hydra.sweep.dir=s"]  # python -m maml_sweep ...
