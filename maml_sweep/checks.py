"""What every registry (task families, algorithms, optimizers) shares: the class decorator that
registers by name, and value checks that collect one line per problem, naming the key and what is
allowed (``config.check_values`` and each registered class's ``check``)."""
from __future__ import annotations

import math
from typing import Any


def registrar(table: dict):
    """``register = registrar(TABLE)``, then ``@register("name")`` on a class puts it in ``table`` under
    ``name`` (the config option ``<group>=name``)."""
    def register_as(name: str):
        def register(cls):
            table[name] = cls
            return cls
        return register
    return register_as


def finite_positive(value: Any) -> bool:
    """True for a finite int or float > 0."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


class Checks:
    """Collects problems: ``need(ok, key, allowed, value)`` records ``key=value is not allowed: must
    be allowed`` when not ``ok``; ``errors`` is the list so far."""

    def __init__(self):
        self.errors: list[str] = []

    def need(self, ok: bool, key: str, allowed: str, value: Any) -> None:
        if not ok:
            self.errors.append(f"{key}={value!r} is not allowed: must be {allowed}")

    def ordered(self, group: str, node, low: str, high: str, strict: bool = False) -> None:
        """``low`` < (or <=) ``high``, both finite, and their difference too (no overflow)."""
        lo, hi = node[low], node[high]
        ok = all(math.isfinite(v) for v in (lo, hi, hi - lo)) and (lo < hi if strict else lo <= hi)
        self.need(ok, f"{group}.{low}", f"finite, {'<' if strict else '<='} {group}.{high} ({hi!r}), "
                  "and their difference finite", lo)
