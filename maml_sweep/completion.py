"""Fast tab completion: Hydra's own answers, cached, served without importing Hydra or numpy.

Each TAB runs ``maml-sweep -sc query=bash`` with the line in ``COMP_LINE``. Hydra composes the
config to answer, which with the imports takes 0.6-1.7 s. The answer for a word depends only on the
words before it and the word's *parent* (the word up to its last ``.`` or its first ``=``; ``""``
at the top): Hydra's candidates for ``tr`` are its candidates for ``""`` that start with ``tr``. So
this module keeps, per config fingerprint (package version, the config files' names, sizes and
mtimes, ``-cp``/``-cn``) and per preceding words, Hydra's answer for each parent, computed by
Hydra itself on the first miss, in a JSON file in the cache folder
(``$MAML_SWEEP_CACHE_DIR``, else ``$XDG_CACHE_HOME/maml-sweep``, else ``~/.cache/maml-sweep``).
After answering a miss, the process closes stdout (the shell has its answer) and fills in the
parents of every top-level key and group, so later TABs are served from the cache.

Words that Hydra answers in other ways (``+``/``~`` prefixes, file values, quotes) are left to Hydra.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ENV = "MAML_SWEEP_CACHE_DIR"
MAX_CACHE_BYTES = 4 << 20  # a larger file is not ours: ignored and rebuilt


def serve(argv: list[str], environ=os.environ, detach: bool = True) -> bool:
    """Answer a bash completion query (``argv`` = ``-sc query=bash`` ...) from the cache, computing
    and caching Hydra's answer on a miss; False when this is no query this module answers.
    ``detach``: after a miss, close stdout and fill the cache ahead (the shell stops waiting);
    else only the answer is cached."""
    if not _is_query(argv) or "COMP_LINE" not in environ:
        return False
    words, current = split_line(environ["COMP_LINE"])
    if current is None:
        return False
    parent = parent_of(current)
    path = cache_file(argv)
    table = _load(path) if path else {}
    key = json.dumps(words)
    answers = table.get(key, {}).get(parent)
    miss = answers is None
    if miss:
        answers = hydra_answers(argv, words, [parent])[parent]
    sys.stdout.write("\n".join(a for a in answers if a.startswith(current)) + "\n")
    sys.stdout.flush()
    if miss and path:
        table = _load(path)
        node = table.setdefault(key, {})
        node[parent] = answers
        if detach:
            os.close(sys.stdout.fileno())  # the shell has its answer; fill the cache behind it
            if "" not in node:
                node.update(hydra_answers(argv, words, [""]))
            node.update(hydra_answers(argv, words, [p for p in warm_parents(node[""]) if p not in node]))
        _save(path, table)
    return True


def split_line(line: str) -> tuple[list[str], str | None]:
    """(the words before the current one, without the program name; the current word), or
    (.., None) when the current word is one this module leaves to Hydra."""
    words = line.split()
    if not words:
        return [], None
    if line.endswith((" ", "\t")):
        before, current = words[1:], ""
    else:
        before, current = words[1:-1], words[-1]
    before = [w for w in before if w not in ("-v", "--verbose")]  # ours, not Hydra's
    if current.startswith(("+", "~", "-")) or "'" in current or '"' in current or "\\" in current:
        return before, None
    if "=" in current and current.split("=", 1)[1][:1] in (".", "~"):  # a file value: Hydra lists files
        return before, None
    return before, current


def parent_of(word: str) -> str:
    """The word up to and including its first ``=`` (a value), else its last ``/`` (a group path),
    else its last ``.`` (a key path); ``""`` if none."""
    if "=" in word:
        return word[:word.index("=") + 1]
    for sep in ("/", "."):
        if sep in word:
            return word[:word.rindex(sep) + 1]
    return ""


WARM_TOO = ("hydra/", "hydra/launcher=", "hydra/sweeper=")  # the groups Hydra's plugins add


def warm_parents(top: list[str]) -> list[str]:
    """The parents worth computing ahead: each top-level key (``train.``) and group (``task=``),
    and Hydra's launcher and sweeper groups."""
    return [a for a in top if a.endswith((".", "="))] + list(WARM_TOO)


def hydra_answers(argv: list[str], words: list[str], parents: list[str]) -> dict[str, list[str]]:
    """Hydra's own completion candidates for each parent word after ``words``."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra._internal.utils import create_config_search_path
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import register_configs

    register_configs()
    config_path, config_name = _config_args(argv)
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(config_path))
    plugin = BashCompletion(loader)
    out = {}
    for parent in parents:
        line = "".join(w + " " for w in words) + parent  # as Hydra's query() passes it: no program name
        try:
            out[parent] = sorted(plugin._query(config_name, line))
        except (HydraException, OmegaConfBaseException, ValueError):  # a line Hydra cannot compose: no candidates
            out[parent] = []
    return out


def cache_file(argv: list[str]) -> Path | None:
    """The cache file for this package version, config files and ``-cp``/``-cn`` (None: caching off)."""
    import hashlib

    from . import __version__

    folder = _cache_dir()
    if folder is None:
        return None
    h = hashlib.sha256(__version__.encode())
    h.update(json.dumps(_config_args(argv)).encode())
    for root in (_conf_dir(argv), Path(__file__).parent):
        for path in sorted(root.rglob("*.y*ml")) + sorted(root.glob("config*.py")):
            st = path.stat()
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return folder / f"completion-{h.hexdigest()[:16]}.json"


def _cache_dir() -> Path | None:
    if ENV in os.environ:
        value = os.environ[ENV].strip()
        return None if value in ("", "off") else Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maml-sweep"


def _config_args(argv: list[str]) -> tuple[str, str]:
    """(config path as Hydra takes it, config name) from ``-cp``/``-cn`` or the packaged config."""
    path, name = "pkg://maml_sweep.conf", "config"
    for flag, value in zip(argv, argv[1:]):
        if flag in ("-cp", "--config-path"):
            path = value if "://" in value else str(Path(value).absolute())
        elif flag in ("-cn", "--config-name"):
            name = value
    return path, name


def _conf_dir(argv: list[str]) -> Path:
    path, _ = _config_args(argv)
    if path.startswith("pkg://"):
        from importlib.util import find_spec

        spec = find_spec(path[len("pkg://"):])
        return Path(list(spec.submodule_search_locations)[0])
    return Path(path.split("://", 1)[-1])


def _is_query(argv: list[str]) -> bool:
    args = list(argv)
    for flag in ("-sc", "--shell-completion", "--shell_completion"):
        if flag in args:
            i = args.index(flag)
            return i + 1 < len(args) and args[i + 1] == "query=bash"
    return "--shell-completion=query=bash" in args


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CACHE_BYTES + 1)
        table = json.loads(data) if len(data) <= MAX_CACHE_BYTES else {}
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _save(path: Path, table: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(table, f)
        os.replace(tmp, path)
    except OSError:
        pass  # no cache: every TAB asks Hydra, as before
