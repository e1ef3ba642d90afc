"""``hydra.sweeper``'s settings of a search and their checks, importable without the sweeper (the sweep's
start callback refuses bad settings before anything is written)."""
from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from . import space as search_space
from . import study as studies


@dataclass
class Settings:
    """``hydra.sweeper``'s keys (defaults in conf/hydra/sweeper/optuna.yaml)."""

    study_name: str
    storage: str | None
    sampler: str
    seed: int | None
    pruner: str
    n_trials: int
    n_jobs: int
    seeds: int
    params: dict = field(default_factory=dict)

    def errors(self) -> list[str]:
        """One line per bad value, naming the key and what it takes."""
        bad = []
        if self.sampler not in studies.SAMPLERS:
            bad.append(f"hydra.sweeper.sampler={self.sampler}: choose one of {', '.join(studies.SAMPLERS)}")
        elif studies.missing_sampler_package(self.sampler):
            bad.append(f"hydra.sweeper.sampler={self.sampler} needs the package "
                       f"{studies.missing_sampler_package(self.sampler)} (pip install it, or choose tpe)")
        if self.pruner not in studies.PRUNERS:
            bad.append(f"hydra.sweeper.pruner={self.pruner}: choose one of {', '.join(studies.PRUNERS)}")
        for key in ("n_trials", "n_jobs", "seeds"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad.append(f"hydra.sweeper.{key}={value}: a whole number >= 1")
        if not str(self.study_name).strip():
            bad.append("hydra.sweeper.study_name is empty: name the study")
        return bad


def split(settings: dict) -> tuple[Settings, list[str]]:
    """(the known settings, the sorted names of unknown ones)."""
    known = set(Settings.__dataclass_fields__)
    return Settings(**{k: v for k, v in settings.items() if k in known}), sorted(set(settings) - known)


def check(settings: Settings, unknown: list[str], arguments: list[str]):
    """(every problem as one line naming the key, the search space or None when it cannot be parsed)."""
    errors = [f"hydra.sweeper.{key} is not a setting of the search: use "
              + ", ".join(Settings.__dataclass_fields__) for key in unknown] + settings.errors()
    try:
        space = search_space.parse(settings.params, arguments)
    except search_space.SpaceError as exc:
        return errors + [str(exc)], None
    if settings.seeds > 1 and "seed" in space.distributions:
        errors.append("hydra.sweeper.seeds > 1 pairs the seeds itself: do not search over seed")
    if not space.distributions:
        errors.append("hydra.sweeper.params has nothing to search: give interval(a, b), choice(...) or range(...)")
    return errors, space


def problems(config) -> list[str]:
    """:func:`check` on a composed multirun config (its ``hydra.sweeper`` and command line)."""
    node = {k: v for k, v in OmegaConf.to_container(config.hydra.sweeper, resolve=True).items() if k != "_target_"}
    settings, unknown = split(node)
    return check(settings, unknown, list(config.hydra.overrides.task))[0]
