"""Which config keys are conditions: what the task is, so runs that differ in one are never compared
or ranked together (best is chosen per condition; paired comparisons stay inside one). The one rule,
used by the sweep's console (on swept override keys) and the report's design (on config columns)."""
from __future__ import annotations

# Config keys that decide which test tasks a run is scored on (with every task.* key).
BANK_KEYS = ("eval.seed", "eval.num_tasks", "eval.support_size", "eval.query_size")


def is_condition(key: str) -> bool:
    """True for a key that changes the task or the test bank: the ``task`` group, a ``task.*`` key
    (``task/...`` as an override's group path) or one of :data:`BANK_KEYS`."""
    return key == "task" or key.startswith(("task.", "task/")) or key in BANK_KEYS
