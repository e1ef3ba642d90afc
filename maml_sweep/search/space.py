"""The search space: Hydra override syntax to Optuna distributions, and back to overrides.

``key: tag(log, interval(a, b))`` -> a float between a and b (log scale with the ``log`` tag);
``key: choice(x, y, ...)`` or ``key: x,y,...`` -> a categorical; ``key: range(start, stop, step)``
-> integers (or floats) ``start, start+step, ...`` below ``stop`` (``log`` tag: log scale, step 1);
``key: value`` -> fixed for every trial. The command line's overrides of the same forms join or
replace ``hydra.sweeper.params``.
"""
from __future__ import annotations

from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException


class SpaceError(ValueError):
    """A parameter that cannot be searched; the message is one line naming it."""


@dataclass
class Space:
    """``distributions``: key -> Optuna distribution (searched); ``fixed``: overrides given to every trial."""

    distributions: dict
    fixed: list[str]


def parse(params: dict | None, arguments: list[str]) -> Space:
    """The search space of ``hydra.sweeper.params`` (key -> override text) and the command line."""
    texts = {str(k): f"{k}={v}" for k, v in (params or {}).items()}
    for arg in arguments:
        key = arg.lstrip("+~").split("=", 1)[0]
        texts.pop(key, None)
        texts[arg] = arg
    parser = OverridesParser.create()
    distributions, fixed = {}, []
    for text in texts.values():
        try:
            override = parser.parse_override(text)
        except HydraException as exc:
            raise SpaceError(f"cannot parse the search parameter {text!r}: {str(exc).splitlines()[0]}") from None
        if override.is_sweep_override():
            distributions[override.get_key_element()] = distribution(override)
        else:
            fixed.append(text)
    return Space(distributions, fixed)


def distribution(override: Override):
    """The Optuna distribution of one sweep override (interval, choice or range)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, value = override.get_key_element(), override.value()
    log = "log" in (getattr(value, "tags", None) or set())
    if isinstance(value, IntervalSweep):
        if not value.start < value.end or (log and value.start <= 0):
            raise SpaceError(f"{key}: interval({value.start}, {value.end}) needs start < end (and start > 0 with log)")
        return FloatDistribution(value.start, value.end, log=log)
    if isinstance(value, RangeSweep):
        try:
            items = list(override.sweep_iterator())
        except ValueError as exc:  # range(0, 3, 0)
            raise SpaceError(f"{key}: range({value.start}, {value.stop}, {value.step}): {exc}") from None
        if not items:
            raise SpaceError(f"{key}: range({value.start}, {value.stop}, {value.step}) is empty")
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(items[0], items[-1], log=log, step=1 if log else value.step)
        return FloatDistribution(items[0], items[-1], log=log, step=None if log else value.step)
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator())
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in choices):
            raise SpaceError(f"{key}: choice(...) takes numbers, strings, booleans or null")
        return CategoricalDistribution(choices)
    raise SpaceError(f"{key}: use interval(a, b), choice(...) or range(start, stop, step)")


def overrides(params: dict) -> list[str]:
    """A trial's parameters (key -> value) as Hydra overrides, in a stable order."""
    return [f"{key}={_text(value)}" for key, value in sorted(params.items())]


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
