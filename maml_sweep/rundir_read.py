"""Reading run directories: what every reader uses (the sweep callback, the console, the analysis
loader, the report): run discovery, status, config, overrides. Readers never unpickle and never write;
YAML records are parsed safely with aliases capped (:func:`read_yaml_text`)."""
from __future__ import annotations

import glob
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from .rundir import (
    CORRUPT,
    HYDRA_CONFIG,
    HYDRA_OVERRIDES,
    KILLED,
    NO_SUMMARY,
    RUNNING,
    SUMMARY,
    UNKNOWN,
    DamagedFile,
    DamagedRunFile,
    read_text,
)
from .runlock import is_live

YAML_MAX_NODES = 100_000  # nodes of a YAML document with its aliases expanded (a run's config has ~200)

try:
    _YAML_LOADER = yaml.CSafeLoader  # libyaml: ~10x faster on 10,000 configs
except AttributeError:
    _YAML_LOADER = yaml.SafeLoader


class LoadError(ValueError):
    """Bad input to a reader (a path that does not exist, no runs found); one clear line."""


# ---------------------------------------------------------------- discovery

def natural_key(path) -> list:
    """Sort key putting ``run2`` before ``run10`` (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """A multirun's job directories (numbered subdirectories), in job order, whatever they hold yet."""
    found = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def find_runs(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """Run directories (those with ``.hydra/config.yaml``) under run dirs, sweep dirs, parents or globs.

    Returns (resolved run dirs in natural order, [(dir, reason)] for dirs with ``.hydra/`` but no
    config). Runs do not nest; hidden directories are not searched. Raises :class:`LoadError` for a
    path or glob that matches nothing.
    """
    found: dict[Path, None] = {}
    no_config: dict[Path, str] = {}
    for arg in paths:
        for top in _expand(arg):
            for root, dirs, _ in os.walk(top):
                if ".hydra" not in dirs:
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    continue
                dirs[:] = []
                run = Path(root).resolve()
                if os.path.isfile(run / HYDRA_CONFIG):
                    found[run] = None
                else:
                    no_config[run] = "no .hydra/config.yaml (run starting or not a Hydra job)"
    runs = sorted(found, key=natural_key)
    skipped = [(str(p), why) for p, why in sorted(no_config.items(), key=lambda i: natural_key(i[0]))
               if p not in found]
    return runs, skipped


def _expand(arg) -> list[str]:
    """The directories a command-line PATH names: itself, or what its glob matches."""
    arg = os.path.expanduser(str(arg))
    if os.path.exists(arg):
        matches = [arg]
    elif glob.has_magic(arg):
        matches = sorted(glob.glob(arg, recursive=True))
        if not matches:
            raise LoadError(f"PATH {arg!r} matches no files (give run or sweep directories, or globs)")
    else:
        raise LoadError(f"PATH {arg!r} does not exist (give run or sweep directories, or globs)")
    return [m for m in matches if os.path.isdir(m)]


# ---------------------------------------------------------------- status and config

@dataclass
class RunState:
    """What a run's summary says: ``status`` (a status word; :data:`NO_SUMMARY`, :data:`CORRUPT`
    or :data:`UNKNOWN` when it cannot say), the summary (empty when unreadable) and an issue text."""

    status: str
    summary: dict
    issue: str | None = None


def read_state(run_dir: Path) -> RunState:
    """The run's status and summary; never raises for a missing, half-written or foreign summary.
    A summary saying running while no process holds the run's lock is :data:`KILLED`."""
    path = Path(run_dir) / SUMMARY
    try:
        summary = json.loads(read_text(path))
    except FileNotFoundError:
        return RunState(NO_SUMMARY, {}, "no summary.json (starting, or killed before writing one)")
    except DamagedRunFile as exc:  # a link, FIFO or device, or too large
        return RunState(CORRUPT, {}, str(exc))
    except (OSError, ValueError, RecursionError):  # ValueError: invalid JSON or bytes that are no text
        return RunState(CORRUPT, {}, "summary.json unreadable (half-written?)")
    if not isinstance(summary, dict):
        return RunState(CORRUPT, {}, "summary.json unreadable (half-written?)")
    if summary.get("status") == RUNNING and not is_live(run_dir):
        return RunState(KILLED, summary, "summary says running, but no process holds the run's lock")
    return RunState(str(summary.get("status") or UNKNOWN), summary)


def _read_yaml(path: Path):
    """A run's YAML record, read as :func:`read_yaml_text` reads it, through :func:`open_fd`."""
    return read_yaml_text(read_text(path))


def read_yaml_text(text: str):
    """Safe-load YAML text with its size bounded: at most :data:`YAML_MAX_NODES` nodes once aliases
    are expanded (an alias bomb is refused with ``yaml.YAMLError`` before anything walks it)."""
    if "&" in text:  # no anchor, no alias: the common case skips the count
        _count_nodes(text)
    return yaml.load(text, Loader=_YAML_LOADER)


def _count_nodes(text: str) -> None:
    """Raise ``yaml.YAMLError`` when the document, aliases expanded, has more than YAML_MAX_NODES nodes."""
    anchors: dict[str, int] = {}
    stack: list[list] = [[None, 0]]  # [anchor, nodes so far] per open collection

    def add(n: int) -> None:
        stack[-1][1] += n
        if sum(size for _, size in stack) > YAML_MAX_NODES:
            raise yaml.YAMLError(f"more than {YAML_MAX_NODES} nodes with aliases expanded")

    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            add(anchors.get(event.anchor, 1))
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                anchors[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor:
                anchors[anchor] = size
            add(size)


def read_config(run_dir: Path) -> dict:
    """The run's resolved config (``.hydra/config.yaml``) as a plain dict, without a ``hydra`` node.
    Raises :class:`DamagedFile` naming the reason when it cannot be read."""
    try:
        config = _read_yaml(Path(run_dir) / HYDRA_CONFIG)
    except DamagedRunFile:
        raise
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        raise DamagedFile("config.yaml unreadable (invalid YAML; half-written?)") from None
    except OSError as e:
        raise DamagedFile(f"config.yaml unreadable ({e.strerror})") from None
    if not isinstance(config, dict):
        raise DamagedFile("config.yaml is not a mapping (half-written?)")
    config.pop("hydra", None)
    return config


def started_at(run_dir: Path) -> float | None:
    """When the run (or its last resume) was accepted: the mtime (epoch seconds) of its
    ``.hydra/config.yaml``, which the CLI writes then; None when there is no such regular file."""
    try:
        st = os.lstat(Path(run_dir) / HYDRA_CONFIG)
    except OSError:
        return None
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def run_files(run_dir: Path) -> list[tuple[str, int]]:
    """(name, size in bytes) of the regular files directly in ``run_dir`` (links and other kinds
    are left out, never followed), sorted by name."""
    out = []
    with os.scandir(run_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                out.append((entry.name, entry.stat(follow_symlinks=False).st_size))
    return sorted(out)


# ---------------------------------------------------------------- overrides

@dataclass(frozen=True)
class Override:
    """One command-line override of a run: ``key`` (dotted key, or config group, package dropped),
    ``value`` (its text; None for a deletion without value), ``op``: ``set`` (``key=v``),
    ``add`` (``+key=v``), ``force_add`` (``++key=v``) or ``delete`` (``~key`` or ``~key=v``),
    and ``text`` as written."""

    key: str
    value: str | None
    op: str
    text: str


def parse_override(text) -> Override | None:
    """Parse one override as Hydra's grammar reads its key side (``[~|+|++]key[@package][=value]``;
    the value is kept as text). None for ``hydra.*`` overrides and text that is no override."""
    written = text = str(text).strip()
    if text.startswith("~"):
        op, text = "delete", text[1:]
    elif text.startswith("++"):
        op, text = "force_add", text[2:]
    elif text.startswith("+"):
        op, text = "add", text[1:]
    else:
        op = "set"
    key, eq, value = text.partition("=")
    key = key.split("@", 1)[0].strip()  # group@package=choice: the group
    if not key or key == "hydra" or key.startswith(("hydra.", "hydra/")) or (not eq and op != "delete"):
        return None
    return Override(key, value.strip() if eq else None, op, written)


def read_overrides(run_dir: Path) -> list[Override]:
    """The run's overrides (``.hydra/overrides.yaml``), parsed; [] when there is no such file.
    Raises :class:`DamagedFile` when it exists but is no list."""
    path = Path(run_dir) / HYDRA_OVERRIDES
    try:
        texts = _read_yaml(path)
    except FileNotFoundError:
        return []
    except DamagedRunFile:
        raise
    except (OSError, ValueError, RecursionError, yaml.YAMLError):
        texts = None
    if not isinstance(texts, list):
        raise DamagedFile("overrides.yaml unreadable; its keys are not treated as swept")
    return [o for o in map(parse_override, texts) if o is not None]


def read_sweep_overrides(sweep_dir: Path) -> tuple[list[str], list[str]] | None:
    """The command-line overrides a multirun was started with, from Hydra's ``multirun.yaml`` in
    ``sweep_dir``: (task overrides, hydra overrides); None when there is no readable record."""
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        record = _read_yaml(path)
        overrides = record["hydra"]["overrides"]
        task, hydra_args = overrides.get("task") or [], overrides.get("hydra") or []
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(t, str) for t in [*task, *hydra_args]):
        return None
    return list(task), list(hydra_args)
