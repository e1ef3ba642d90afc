"""Every config option composes; bad values are named with what is allowed."""
from pathlib import Path

import pytest

import maml_sweep
from omegaconf import OmegaConf
from maml_sweep.config import check_values

CONF = Path(maml_sweep.__file__).parent.parent / "conf"
GROUPS = ["model", "task", "optimizer", "algorithm"]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_is_valid(compose_cfg, group, option):
    cfg = compose_cfg([f"{group}={option}"])
    assert cfg[group].name == option
    assert check_values(cfg) == []


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_is_valid(compose_cfg, experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert check_values(cfg) == []


def test_defaults_are_the_notebook(compose_cfg):
    cfg = compose_cfg()
    assert cfg.seed == 0
    assert list(cfg.model.hidden) == [50, 50] and cfg.model.activation == "relu" and cfg.model.init_std == 0.1
    t = cfg.task
    assert (t.xmin, t.xmax, t.ymin, t.ymax, t.noise, t.bins, t.num_points) == (-3, 3, -3, 3, 0.1, 6, 100)
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.01
    assert (cfg.algorithm.name, cfg.algorithm.inner_steps, cfg.algorithm.inner_lr) == ("maml", 5, 0.1)
    assert (cfg.train.outer_steps, cfg.train.meta_batch_size, cfg.train.eval_every) == (12000, 1, 100)
    assert compose_cfg(["experiment=seed_notebook"]) == cfg


BAD_VALUES = [
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=-1", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("optimizer.lr=inf", "optimizer.lr"),
    ("algorithm.inner_lr=0", "algorithm.inner_lr"),
    ("algorithm.inner_steps=-1", "algorithm.inner_steps"),
    ("task.bins=0", "task.bins"),
    ("task.num_points=0", "task.num_points"),
    ("task.xmin=3", "task.xmin"),
    ("task.noise=-0.1", "task.noise"),
    ("model.hidden=[]", "model.hidden"),
    ("model.hidden=[50,0]", "model.hidden"),
    ("model.activation=sigmoid", "model.activation"),
    ("train.outer_steps=0", "train.outer_steps"),
    ("seed=-1", "seed"),
]


@pytest.mark.parametrize("override,key", BAD_VALUES)
def test_bad_values_name_the_key_and_what_is_allowed(compose_cfg, override, key):
    errors = check_values(compose_cfg([override]))
    assert len(errors) == 1
    assert errors[0].startswith(f"{key}=") and "must be" in errors[0]


@pytest.mark.parametrize("preset", options("sweep"))
def test_every_sweep_preset_composes_with_its_search_space(compose_cfg, preset):
    cfg = compose_cfg([f"sweep={preset}"], hydra=True)
    assert check_values(cfg) == [] and len(cfg.hydra.sweeper.params) >= 1
    for key in cfg.hydra.sweeper.params:
        assert key in ("algorithm", "seed") or OmegaConf.select(cfg, key) is not None, key
