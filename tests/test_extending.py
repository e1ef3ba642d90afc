"""docs/extending.md's worked examples, run as the page shows them: its Python blocks executed in the module
they go into (``maml_sweep/tasks.py``, ``maml_sweep/algorithms.py``), its YAML blocks written as the option
files (into a directory on Hydra's search path, not into conf/), then a short training by ``train.run``.
Each test removes what it registered."""
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY, compose

from maml_sweep import algorithms, tasks
from maml_sweep.config import check_values
from maml_sweep.maml import InnerLoop
from maml_sweep.train import run

PAGE = REPO / "docs" / "extending.md"


def section_blocks(title: str) -> dict[str, str]:
    """The ```python and ```yaml blocks of the page's section ``## title``."""
    text = PAGE.read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return {lang: code for lang, code in re.findall(r"```(python|yaml)\n(.*?)```", section, re.S)}


@pytest.fixture
def declared(tmp_path):
    """``declare(section, module, group)``: the section's Python run in ``module``'s namespace (it
    registers itself there) and its YAML written as ``<group>/<name>.yaml`` under a search-path
    directory; returns the overrides that put that directory on Hydra's search path. Registrations
    made are removed afterwards."""
    before = (dict(tasks.TASK_FAMILIES), dict(algorithms.ALGORITHMS))

    def declare(section: str, module, group: str) -> list[str]:
        blocks = section_blocks(section)
        exec(compile(blocks["python"], f"{PAGE}:{section}", "exec"), vars(module))
        name = re.search(r"^name: (\w+)$", blocks["yaml"], re.M).group(1)
        (tmp_path / "conf" / group).mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / group / f"{name}.yaml").write_text(blocks["yaml"])
        return [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"{group}={name}"]

    yield declare
    for registry, saved in zip((tasks.TASK_FAMILIES, algorithms.ALGORITHMS), before):
        registry.clear()
        registry.update(saved)


def test_the_task_family_example_trains_and_checks_its_own_key(declared, tmp_path):
    option = declared("A task family", tasks, "task")
    cfg = compose([*option, *TINY, "task.num_points=20"])
    assert cfg.task.name == "line" and cfg.task.scale == 2.0
    family = tasks.make_tasks(cfg.task, "float64")
    task = family.sample(np.random.RandomState(0))
    slope, intercept = np.polyfit(task.x, task.y, 1)  # noise 0: every task is a line
    assert np.allclose(slope * task.x + intercept, task.y) and abs(slope) <= 2 and abs(intercept) <= 2
    assert check_values(compose([*option, "task.scale=0"])) == [
        "task.scale=0.0 is not allowed: must be a finite number > 0"]
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and np.isfinite(summary["test_mse_k5"])
    assert (tmp_path / "run" / "adaptation.csv").is_file()


def test_the_algorithm_example_trains_with_its_own_hyperparameter(declared, tmp_path):
    option = declared("An algorithm", algorithms, "algorithm")
    cfg = compose([*option, *TINY, "algorithm.adapt_layers=2"])
    assert cfg.algorithm.adapt_layers == 2
    errors = check_values(compose([*option, "algorithm.adapt_layers=4"]))
    assert errors == ["algorithm.adapt_layers=4 is not allowed: must be an integer in 1..3 (the model's layers)"]
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and np.isfinite(summary["test_mse_k5"])

    # Built from its config, it adapts what it says: adapt_layers=1 is ANIL's inner loop, its
    # direction ANIL's (second order) and adapt_layers=3 MAML's.
    from test_fast import make
    model, params, batch = make((5, 6), "tanh", 2, True, seed=3)
    inner = InnerLoop(0.1, 2, loss_scale=0.5)
    cls = algorithms.ALGORITHMS["lastlayers"]
    for layers, same in ((1, "anil"), (3, "maml")):
        mine = cls(dataclasses.replace(cls.schema(), adapt_layers=layers)).direction(model, params, batch, inner)
        theirs = algorithms.ALGORITHMS[same]().direction(model, params, batch, inner)
        assert mine[0] == pytest.approx(theirs[0], rel=1e-10)
        assert all(np.allclose(mine[1][k], theirs[1][k], rtol=1e-9, atol=1e-12) for k in params)


def test_the_page_lists_every_registry_and_is_linked():
    text = PAGE.read_text()
    for needle in ("register_task_family", "register_algorithm", "register_optimizer"):
        assert needle in text
    assert "docs/extending.md" in (REPO / "README.md").read_text()
    for page in Path(REPO / "docs").glob("*.md"):
        assert "(extending.md)" in page.read_text(), f"{page.name}: no link to extending.md in its navigation"
