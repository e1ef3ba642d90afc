"""maml_sweep.search in-process: the search space, storage names, per-trial sampler seeds, settings
checks, the job's reporter against a real SQLite study, and the trainer's pruning seam."""
import json
import math

import pytest
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna", reason="the [hpo] extra (optuna) is not installed")

from conftest import TINY  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

from maml_sweep import checkpoint, rundir, train  # noqa: E402
from maml_sweep.search import space, study, trial  # noqa: E402
from maml_sweep.search.settings import Settings  # noqa: E402


def test_params_and_the_command_line_make_the_space():
    params = {"algorithm.inner_lr": "tag(log, interval(0.001, 1.0))", "optimizer.lr": "interval(0.1, 0.5)",
              "algorithm.inner_steps": "choice(1, 3, 5)"}
    got = space.parse(params, ["optimizer.lr=0.01", "task.bins=range(2, 10, 3)", "model.init=normal,xavier"])
    assert got.distributions == {
        "algorithm.inner_lr": FloatDistribution(0.001, 1.0, log=True),
        "algorithm.inner_steps": CategoricalDistribution([1, 3, 5]),
        "task.bins": IntDistribution(2, 8, step=3),
        "model.init": CategoricalDistribution(["normal", "xavier"])}
    assert got.fixed == ["optimizer.lr=0.01"]  # the command line's fixed value replaces the preset's interval
    assert space.overrides({"b": 0.5, "a": True, "c": None}) == ["a=true", "b=0.5", "c=null"]


@pytest.mark.parametrize("text, says", [("interval(1.0, 0.5)", "start < end"),
                                        ("tag(log, interval(0, 1))", "start > 0"),
                                        ("range(5, 1)", "empty"), ("choice(1, [2])", "choice"),
                                        ("interval(1", "cannot parse")])
def test_a_parameter_that_cannot_be_searched_is_one_line_naming_it(text, says):
    with pytest.raises(space.SpaceError, match=says) as err:
        space.parse({"algorithm.inner_lr": text}, [])
    assert "algorithm.inner_lr" in str(err.value) and "\n" not in str(err.value)


def test_storage_defaults_to_sqlite_in_the_sweep_dir_and_a_path_is_a_journal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study.storage_url(None, "sw") == f"sqlite:///{tmp_path}/sw/optuna.db"
    assert study.storage_url("postgresql://u@h/db", "sw") == "postgresql://u@h/db"
    assert study.storage_url("j/study.log", "sw") == str(tmp_path / "j" / "study.log")
    assert study.shown_url("postgresql+psycopg://me:secret@h:5432/db") == "postgresql+psycopg://me:***@h:5432/db"
    journal = study.open_study(study.storage_url("j/study.log", "sw"), "s", "median")
    journal.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=study.open_storage(str(tmp_path / "j/study.log"))).trials) == 2


def test_a_trial_draws_the_same_parameters_whoever_asks_and_when():
    dist = {"x": FloatDistribution(1e-4, 1, log=True), "k": CategoricalDistribution([1, 3, 5])}

    def draws(name, numbers):
        s = optuna.create_study()
        out = []
        for n in numbers:
            s.sampler = study.sampler(name, 7, n)
            t = s.ask(dist)
            s.tell(t, t.params["x"])
            out.append(t.params)
        return out

    for name in ("tpe", "random"):
        assert draws(name, range(4)) == draws(name, range(4))
        assert draws(name, [0, 1])[1] != draws(name, [0, 2])[1]  # keyed by the trial's number


def test_bad_settings_are_one_line_each_naming_the_key():
    s = Settings(study_name=" ", storage=None, sampler="bayes", seed=0, pruner="early", n_trials=0, n_jobs=2,
                 seeds=True)
    errors = s.errors()
    assert [e.split("=")[0].split(" ")[0] for e in errors] == [
        "hydra.sweeper.sampler", "hydra.sweeper.pruner", "hydra.sweeper.n_trials", "hydra.sweeper.seeds",
        "hydra.sweeper.study_name"]
    assert ("tpe, random, cmaes, gp" in errors[0]
            and "none, median, successive_halving, hyperband, wilcoxon" in errors[1])


def _job(tmp_path, num, seeds=1):
    return OmegaConf.create({"sweeper": {"_target_": trial.SWEEPER_TARGET, "storage": None, "study_name": "s",
                                         "pruner": "median", "seeds": seeds},
                             "sweep": {"dir": str(tmp_path)}, "job": {"num": num}})


def test_the_reporter_reports_val_mse_once_per_step_and_prunes_a_losing_trial(tmp_path):
    s = study.open_study(study.storage_url(None, tmp_path), "s", "median")
    for _ in range(5):  # MedianPruner starts after 5 finished trials
        t = s.ask()
        t.report(1.0, 10)
        s.tell(t, 1.0)
    s.ask()  # trial 5: jobs 10 and 11 with seeds=2
    assert trial.reporter(OmegaConf.merge(_job(tmp_path, 3), {"sweeper": {"_target_": "other"}})) is None
    first, second = trial.reporter(_job(tmp_path, 10, seeds=2)), trial.reporter(_job(tmp_path, 11, seeds=2))
    assert second(10, {"val_mse": 9.0}) is False  # the second seed does not report; nothing to judge yet
    assert first(10, {"val_mse": 5.0}) is True and second(10, {"val_mse": 9.0}) is True
    assert trial.reporter(_job(tmp_path, 10, seeds=2))(10, {"val_mse": 0.5}) is True  # a resumed run: step 10 kept
    assert s.trials[5].intermediate_values == {10: 5.0}
    assert json.loads(trial.record_text(_job(tmp_path, 11, seeds=2))[trial.TRIAL]) == {
        "study_name": "s", "trial": 5, "seed_index": 1}


def test_a_run_told_to_stop_ends_pruned_with_its_checkpoint_and_is_never_resumed(compose_cfg, tmp_path):
    cfg = compose_cfg(TINY + ["eval.val_every=8"])  # evaluations with val_mse at steps 8, 16, 24
    seen = []

    def prune_at_16(step, vals):
        seen.append((step, math.isfinite(vals["val_mse"])))
        return step == 16

    summary = train.run(cfg, tmp_path, on_eval=prune_at_16)
    assert (summary["status"], summary["steps"], seen) == (rundir.PRUNED, 16, [(8, True), (16, True)])
    assert checkpoint.load_checkpoint(tmp_path)["step"] == 16 and not (tmp_path / rundir.PARAMS).exists()
    again = train.run(cfg, tmp_path, on_eval=lambda step, vals: pytest.fail("a pruned run was resumed"))
    assert (again["status"], again["steps"]) == (rundir.PRUNED, 16)
    last = train.run(compose_cfg([*TINY, "seed=1", "train.figures=false"]), tmp_path / "last",
                     on_eval=lambda step, vals: step == 24)
    assert last["status"] == rundir.COMPLETED  # the last evaluation cannot prune a run that is done


def test_a_larger_n_trials_is_the_same_sweep_but_another_pruner_is_not(compose_cfg, tmp_path):
    from maml_sweep.sweep import RECORD, check_sweep_dir, planned_jobs

    def config(*overrides):
        return compose_cfg(["sweep=optuna", f"hydra.sweep.dir={tmp_path}", *overrides], hydra=True)

    (tmp_path / RECORD).write_text(OmegaConf.to_yaml(config("hydra.sweeper.n_trials=6")))
    assert check_sweep_dir(config("hydra.sweeper.n_trials=9")) is None
    assert "holds another sweep (sweeper settings)" in check_sweep_dir(config("hydra.sweeper.pruner=none"))
    assert planned_jobs(config("hydra.sweeper.n_trials=9", "hydra.sweeper.seeds=3")) == 27
