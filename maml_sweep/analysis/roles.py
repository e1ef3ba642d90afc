"""Which swept key goes where in the figures, and which metric: chosen from what was swept,
overridable by flags (``--metric``, ``--hue``, ``--facet``, ``--heatmap``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .aggregate import SELECT, is_test_metric
from .load import RunSet


class RoleError(ValueError):
    """A flag names something these runs do not have; the message names the flag and what is allowed."""


@dataclass
class Roles:
    """Figure roles: ``hue``/``col``/``row`` for learning curves, ``heat_x``/``heat_y`` for the
    heatmap, ``metric`` for tables and heatmap, ``select`` the validation metric the best
    configuration is chosen on. Keys on no axis are held at the best configuration's values."""

    metric: str
    select: str
    hue: str | None = None
    col: str | None = None
    row: str | None = None
    heat_x: str | None = None
    heat_y: str | None = None
    levels: dict = field(default_factory=dict)

    def curve_keys(self) -> list[str]:
        return [k for k in (self.hue, self.col, self.row) if k]


def resolve_key(name: str, allowed: list[str], flag: str) -> str:
    """A swept key by its full name or an unambiguous suffix (``bins`` -> ``task.bins``,
    ``algorithm`` -> ``algorithm.name``)."""
    if name in allowed:
        return name
    hits = [k for k in allowed if k.endswith("." + name) or k == f"{name}.name"]
    if len(hits) == 1:
        return hits[0]
    what = ", ".join(allowed) if allowed else "none (only seeds differ)"
    raise RoleError(f"{flag} {name!r} is not a swept key of these runs; allowed: {what}")


def choose_roles(rs: RunSet, metric: str | None = None, hue: str | None = None,
                 facet: list[str] | None = None, heatmap: list[str] | None = None) -> Roles:
    """Roles from the swept keys (most levels first; a ``sweep`` key is the column facet, so
    sweeps sit side by side), with flag values taking precedence. Raises :class:`RoleError`."""
    metrics = [m for m in rs.metrics if rs.runs[m].notna().any()] or list(rs.metrics)
    # Selection: the shared validation MSE where the runs have it (older runs: the meta-objective).
    default = next((m for m in (SELECT, "val_meta_objective") if m in metrics), None)
    if metric is None:
        metric = default or (metrics[0] if metrics else None)
        if metric is None:
            raise RoleError("--metric: these runs have no summary metrics yet (no summary.json written)")
    elif metric not in rs.metrics:
        raise RoleError(f"--metric {metric!r} is not a metric of these runs; allowed: {', '.join(rs.metrics)}")
    select = metric if not is_test_metric(metric) and metric.startswith("val") else (default or "val_meta_objective")
    if select not in rs.metrics:
        select = "last_val_meta_objective"

    keys = rs.group_keys
    levels = {k: rs.runs[k].nunique(dropna=False) for k in keys}
    by_levels = sorted((k for k in keys if k != "sweep"), key=lambda k: (-levels[k], keys.index(k)))
    roles = Roles(metric=metric, select=select, levels=levels)

    taken: list[str] = []
    if hue is not None:
        roles.hue = resolve_key(hue, keys, "--hue")
        taken.append(roles.hue)
    facets = []
    for f in facet or []:
        for name in [p for p in f.split(",") if p]:
            facets.append(resolve_key(name, keys, "--facet"))
    if len(facets) > 2:
        raise RoleError(f"--facet takes at most two keys (columns, rows); got {', '.join(facets)}")
    if set(facets) & set(taken) or len(set(facets)) < len(facets):
        raise RoleError(f"--facet {', '.join(facets)}: a key can have only one role (hue is {roles.hue})")
    taken += facets
    free = [k for k in by_levels if k not in taken]
    if "sweep" in keys and "sweep" not in taken and facet is None:
        facets = ["sweep"] + facets
    if roles.hue is None and free:
        roles.hue = free.pop(0)
    if facet is None:
        facets += free[: 2 - len(facets)]
    roles.col = facets[0] if facets else None
    roles.row = facets[1] if len(facets) > 1 else None

    if heatmap:
        names = [p for h in heatmap for p in h.split(",") if p]
        if len(names) != 2:
            raise RoleError(f"--heatmap takes two keys X,Y; got {len(names)}: {', '.join(names) or 'none'}")
        roles.heat_x, roles.heat_y = (resolve_key(n, keys, "--heatmap") for n in names)
        if roles.heat_x == roles.heat_y:
            raise RoleError(f"--heatmap needs two different keys; got {roles.heat_x} twice")
    elif len(by_levels) >= 2:
        roles.heat_x, roles.heat_y = by_levels[0], by_levels[1]
    return roles
