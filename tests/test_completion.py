"""Tab completion from the cache gives Hydra's own candidates without importing Hydra or numpy (the
speed, in seconds per TAB against Hydra's, is measured by ``python -m maml_sweep.tools.bench_completion``);
``--help`` lists every group, Hydra's launchers included."""
import io
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import REPO, run_cli, subprocess_env

from maml_sweep import completion

LINES = ["maml-sweep ", "maml-sweep tr", "maml-sweep train.", "maml-sweep train.outer_steps=", "maml-sweep algorithm=f",
         "maml-sweep task=sine task.", "maml-sweep seed=3 task=sine task.amp", "maml-sweep hydra/launcher=",
         "maml-sweep hydra/la", "maml-sweep -m hydra.launcher.", "maml-sweep experiment="]


def hydra_reference(line: str) -> list[str]:
    """Hydra's own answer for ``line`` (what ``-sc query=bash`` printed before the cache)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra._internal.utils import create_config_search_path

    plugin = BashCompletion(ConfigLoaderImpl(config_search_path=create_config_search_path("pkg://maml_sweep.conf")))
    return sorted(plugin._query("config", line.split(" ", 1)[1]))


def served(line: str, cache: Path) -> list[str]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert completion.serve(["-sc", "query=bash"], {"COMP_LINE": line}, detach=False)
    return sorted(out.getvalue().split())


def test_cached_answers_are_hydras_answers(tmp_path, monkeypatch):
    monkeypatch.setenv(completion.ENV, str(tmp_path))
    for line in LINES[::3]:
        first = served(line, tmp_path)  # a miss asks Hydra (and caches its answer), a hit reads the cache
        assert first == served(line, tmp_path) == hydra_reference(line), line


@pytest.mark.slow
def test_cached_answers_are_hydras_answers_for_all_kinds_of_words(tmp_path, monkeypatch):
    monkeypatch.setenv(completion.ENV, str(tmp_path))
    for line in LINES:
        first = served(line, tmp_path)  # a miss asks Hydra (and fills the cache) or a hit reads it
        assert first == served(line, tmp_path) == hydra_reference(line), line
    assert "hydra/launcher=joblib" in served("maml-sweep hydra/launcher=j", tmp_path)


def test_a_cached_tab_imports_neither_hydra_nor_numpy(tmp_path, monkeypatch):
    monkeypatch.setenv(completion.ENV, str(tmp_path))
    assert served("maml-sweep train.", tmp_path)  # the cache now holds the parent "train."
    env = {**subprocess_env(), completion.ENV: str(tmp_path), "COMP_LINE": "maml-sweep train.o"}
    check = ("import sys, runpy; sys.argv = ['maml-sweep', '-sc', 'query=bash']; "
             "runpy.run_module('maml_sweep', run_name='__main__'); "
             "print('imported:', *sorted(m for m in ('hydra', 'numpy', 'omegaconf') if m in sys.modules), "
             "file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.split() == ["train.outer_steps="]
    assert proc.stderr.strip().endswith("imported:"), proc.stderr


def test_help_lists_every_group_with_the_launchers(tmp_path):
    proc = run_cli(["--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for group in sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in (REPO / "conf" / group).glob("*.yaml"))
        assert f"{group}: {', '.join(options)}" in lines
    launchers = next(line for line in lines if line.startswith("hydra/launcher: "))
    assert {"basic", "joblib", "slurm", "submitit_local"} <= set(launchers.split(": ")[1].split(", "))
    assert any(line.startswith("hydra/sweeper: ") and "optuna" in line for line in lines)
