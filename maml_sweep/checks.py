"""Value checks that collect one line per problem, naming the key and what is allowed: the pieces
``config.check_values`` and every registered task family and algorithm (their ``check``) share."""
from __future__ import annotations

import math
from typing import Any


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
