"""Every config option composes and matches its schema; bad values, unknown keys and impossible
combinations are named with what is allowed."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

import maml_sweep
from maml_sweep.config import (
    GROUPS,
    SCHEMAS,
    Config,
    EvalConfig,
    SineTaskConfig,
    StepsTaskConfig,
    TrainConfig,
    check_values,
)
from maml_sweep.maml import InnerLoop
from maml_sweep.tasks import TASK_FAMILIES, make_tasks

CONF = Path(maml_sweep.__file__).parent.parent / "conf"


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_option_has_a_schema_and_every_schema_an_option():
    assert {(g, o) for g in GROUPS for o in options(g)} == set(SCHEMAS)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_to_its_schema_and_holds_only_what_it_changes(compose_cfg, group, option):
    """The drift test: each default in one place. The option's YAML names the option and sets only
    keys whose value differs from its schema's default; the composed node is typed by the schema,
    has exactly its fields, and every value not set by the YAML is the schema's default."""
    cfg = compose_cfg([f"{group}={option}"])
    node, schema = cfg[group], SCHEMAS[group, option]
    assert OmegaConf.get_type(node) is schema and node.name == option
    assert list(node) == [f.name for f in dataclasses.fields(schema)]
    own = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    assert own.pop("defaults") == [f"/{group}_{schema.__name__}@_here_", "_self_"]
    assert own.pop("name") == option
    defaults = OmegaConf.structured(schema)
    for key, value in own.items():
        assert key in defaults, f"{group}/{option}.yaml sets {key}, which {schema.__name__} does not have"
        assert OmegaConf.is_missing(defaults, key) or defaults[key] != value, \
            f"{group}/{option}.yaml repeats {schema.__name__}'s default {key}={value!r}: keep it in one place"
    for key in defaults:
        if key not in own and key != "name":
            assert node[key] == defaults[key], f"{group}.{key} is set somewhere besides {schema.__name__}"
    assert check_values(cfg) == []


def test_the_primary_config_holds_no_values_only_the_defaults_list_and_hydra_settings(compose_cfg):
    assert set(yaml.safe_load((CONF / "config.yaml").read_text())) == {"defaults", "hydra"}
    cfg = compose_cfg()
    assert OmegaConf.to_container(cfg.train) == dataclasses.asdict(TrainConfig())
    assert OmegaConf.to_container(cfg.eval) == dataclasses.asdict(EvalConfig())
    assert cfg.seed == Config.seed


def test_runtime_classes_take_their_values_from_the_config_only():
    """Task families and the inner loop carry no defaults of their own to drift from the schemas."""
    for name, family in TASK_FAMILIES.items():
        schema = SCHEMAS["task", name]
        fields = {f.name for f in dataclasses.fields(family)}
        assert fields == {f.name for f in dataclasses.fields(schema)} - {"name"} | {"dtype"}  # dtype: train.dtype
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(family)), name
    required = {f.name for f in dataclasses.fields(InnerLoop) if f.default is dataclasses.MISSING}
    assert required == {"lr", "steps"}
    with pytest.raises(TypeError, match="needs loss_scale"):
        InnerLoop(0.1, 5)
    assert InnerLoop(0.1, 5, False, 1.0).loss_scale == InnerLoop(0.1, 5, loss_scale=1.0).loss_scale == 1.0


def test_make_tasks_refuses_keys_it_would_otherwise_drop(compose_cfg):
    cfg = compose_cfg(["task=sine", "+task.bins=3"])  # check_values refuses this first; make_tasks too
    with pytest.raises(ValueError, match=r"unknown keys \['bins'\]"):
        make_tasks(cfg.task, "float64")


def test_num_points_are_split_into_support_and_query(compose_cfg):
    """num_points per task; the last query_size of them score, the others adapt (0: all do both)."""
    rng = np.random.RandomState(0)
    steps = make_tasks(compose_cfg().task, "float64").sample(rng)
    assert steps.x.shape == (100,) and steps.x_query is None and steps.query[0] is steps.x
    sine = make_tasks(compose_cfg(["task=sine"]).task, "float64")
    assert sine.support_size == 10 and sine.query_size == 10
    task = sine.sample(rng)
    assert task.x.shape == (10,) and task.x_query.shape == (10,)
    wider = make_tasks(SineTaskConfig(name="sine", num_points=50, query_size=15), "float64").sample(rng)
    assert wider.x.shape == (35,) and wider.x_query.shape == (15,)
    assert make_tasks(StepsTaskConfig(name="steps"), "float64").with_sizes(5, 7).sample(rng).x_query.shape == (7,)


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
    ("task.query_size=100", "task.query_size"),        # as many query points as points: nothing adapts
    ("task.query_size=-1", "task.query_size"),
    ("task.ymin=4", "task.ymin"),
    ("task.xmin=-1e308 task.xmax=1e308", "task.xmin"),  # finite, but xmax - xmin overflows
    ("task=sine task.amp_min=-1e308 task.amp_max=1e308", "task.amp_min"),
    ("algorithm=anil algorithm.first_order=true", "algorithm.first_order"),  # anil is second order
    ("algorithm=fomaml algorithm.first_order=false", "algorithm.first_order"),
    ("algorithm=reptile algorithm.first_order=true", "algorithm.first_order"),
    ("algorithm=metasgd eval.inner_lr=0.05", "eval.inner_lr"),  # metasgd adapts with its learned rates
    ("seed=4294967296", "seed"),  # the notebook's RandomState takes seeds < 2**32
    ("optimizer=adam optimizer.beta2=1", "optimizer.beta2"),
    ("train.max_memory_gb=0", "train.max_memory_gb"),
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
    errors = check_values(compose_cfg(override.split()))
    assert len(errors) == 1
    assert errors[0].startswith(f"{key}=") and "must be" in errors[0]


@pytest.mark.parametrize("preset", options("sweep"))
def test_every_sweep_preset_composes_with_its_search_space(compose_cfg, preset):
    cfg = compose_cfg([f"sweep={preset}"], hydra=True)
    assert check_values(cfg) == [] and len(cfg.hydra.sweeper.params) >= 1
    for key in cfg.hydra.sweeper.params:
        assert key in ("algorithm", "seed") or OmegaConf.select(cfg, key) is not None, key


def test_seeds_beyond_the_notebook_streams_range_are_fine_with_independent_streams(compose_cfg):
    assert check_values(compose_cfg(["seed=4294967295"])) == []
    assert check_values(compose_cfg(["seed=4294967296", "train.rng=streams"])) == []


@pytest.mark.parametrize("overrides,key,schema", [
    ("+model.dropout=0.5", "model.dropout", "ModelConfig"),
    ("+train.foo=1", "train.foo", "TrainConfig"),
    ("+eval.bar=2", "eval.bar", "EvalConfig"),
    ("+optimizer.beta=0.9", "optimizer.beta", "OptimizerConfig"),  # sgd has no momentum
    ("task=sine +task.bins=3", "task.bins", "SineTaskConfig"),
    ("++task.nonsense=1", "task.nonsense", "StepsTaskConfig"),
    ("+foo=1", "foo", "Config"),
])
def test_added_keys_are_refused_with_the_schema_that_lacks_them(compose_cfg, overrides, key, schema):
    """Hydra's ``+key=value`` adds a key even to a typed node; the composed config is closed here."""
    errors = check_values(compose_cfg(overrides.split()))
    assert len(errors) == 1 and errors[0].startswith(f"{key}=") and f"not in '{schema}'" in errors[0]


def test_a_name_that_is_not_the_chosen_options_is_refused(compose_cfg):
    errors = check_values(compose_cfg(["task.name=sine"]))
    assert errors == ["task.name='sine' is not allowed: the chosen task option's schema is StepsTaskConfig, "
                      "not SineTaskConfig (choose task=sine instead)"]
    assert check_values(compose_cfg(["optimizer.name=rmsprop"]))[0].startswith("optimizer.name='rmsprop'")


def test_configs_read_back_from_a_run_directory_are_checked_the_same_way(compose_cfg):
    """Untyped (plain YAML) configs, as restore() reads them: same answers, missing keys named."""
    def plain(overrides):
        return OmegaConf.create(OmegaConf.to_container(compose_cfg(overrides), resolve=True))
    assert check_values(plain(["task=sine", "optimizer=adam"])) == []
    assert check_values(plain(["task.bins=0"])) == ["task.bins=0 is not allowed: must be an integer >= 1"]
    old = plain([])
    del old.train["max_hours"]
    old.task["support_size"] = 100
    assert check_values(old) == [
        "task.support_size=100 is not allowed: Key 'support_size' not in 'StepsTaskConfig' (task=steps has: "
        "name, xmin, xmax, noise, num_points, query_size, ymin, ymax, bins)",
        "train.max_hours is missing: TrainConfig needs it"]
