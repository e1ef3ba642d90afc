"""Every command shown in the README and docs/ keeps working.

Commands come from ```bash blocks (one per line, ``\\`` continuations joined, ``# comments`` dropped) and
from inline code spans that start with ``maml-sweep``. ``maml-sweep`` commands are composed with their
overrides (a sweep by its first value), ``maml-sweep-report`` and ``python -m`` commands are parsed by
their own argument parsers. The slow test runs the ``maml-sweep`` ones for real with ``--cfg job``.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO, run_cli

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HYDRA_FLAGS = {"-m", "--multirun", "--help", "-h", "--info", "--hydra-help", "-v", "--verbose"}  # -v: maml-sweep's
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "-sc", "--shell-completion", "--package", "-p"}
SHELL_ONLY = ("python3 -m venv", "source ", "bash .ci/run", "cd ")


def _block_commands(text: str) -> list[str]:
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" # ")[0].split("  #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds


def _inline_commands(text: str) -> list[str]:
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return [c for c in re.findall(r"`([^`\n]+)`", outside) if re.match(r"maml-sweep(-report)? ", c)]


def commands() -> list[tuple[str, str]]:
    """(page name, command) for every command in the README and docs/."""
    out = []
    for page in PAGES:
        text = page.read_text()
        out += [(page.name, c) for c in _block_commands(text) + _inline_commands(text)]
    return out


def argv_of(cmd: str) -> list[str]:
    """The command's argv: ``eval "$(X)"`` unwrapped; placeholders ``...`` and ``[optional]`` dropped."""
    m = re.fullmatch(r'eval "\$\((.*)\)"', cmd)
    argv = shlex.split(m.group(1) if m else cmd)
    argv = [a for a in argv if a != "..."]
    return [a[1:-1] if a.startswith("[") and a.endswith("]") else a for a in argv]


def hydra_overrides(args: list[str]) -> list[str]:
    """The config overrides of a ``maml-sweep`` argv, flags removed, each sweep at its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif a not in HYDRA_FLAGS:
            plain.append(a)
    parsed = OverridesParser.create().parse_overrides(plain)
    return [f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override()
            else o.input_line for o in parsed]


def _python_module(argv: list[str]) -> tuple[str, list[str]] | None:
    if len(argv) >= 3 and argv[0] in ("python", "python3", ".venv/bin/python") and argv[1] == "-m":
        return argv[2], argv[3:]
    return None


ALL = commands()


def test_the_docs_show_commands():
    pages = {p for p, _ in ALL}
    assert "README.md" in pages and len(pages) >= 4, pages
    assert sum(c.startswith("maml-sweep ") for _, c in ALL) >= 8
    assert any(c.startswith("maml-sweep-report ") for _, c in ALL)


def test_readme_quickstart_fits_one_screen():
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert len(quick.strip().splitlines()) <= 25
    for needed in ("source .venv/bin/activate", "-sc install=bash", "hydra.run.dir=", "outputs/", "maml-sweep-report"):
        assert needed in quick, needed
    for page in re.findall(r"\]\((docs/[^)]+)\)", text):
        assert (REPO / page).is_file(), page


@pytest.mark.parametrize("page,cmd", ALL, ids=[f"{p}:{c[:60]}" for p, c in ALL])
def test_command_composes_or_parses(page, cmd, compose_cfg):
    argv = argv_of(cmd)
    if cmd.startswith(SHELL_ONLY):
        return  # set-up lines: tests/test_readme.py and .ci/run check those
    if argv[0] == "maml-sweep":
        compose_cfg(hydra_overrides(argv[1:]))
    elif argv[0] == "maml-sweep-report":
        from maml_sweep.analysis.report_cli import build_parser
        build_parser().parse_args(argv[1:])
    elif argv[0] == "maml-sweep-runs":
        from maml_sweep.runs_cli import build_parser
        build_parser().parse_args(argv[1:])
    elif (mod := _python_module(argv)) is not None:
        name, args = mod
        assert importlib.util.find_spec(name) is not None, f"{page}: no module {name}"
        if name == "pytest":
            return
        module = importlib.import_module(name)
        if hasattr(module, "build_parser"):
            module.build_parser().parse_args(args)
    else:
        pytest.fail(f"{page}: a command this test does not know how to check: {cmd}")


@pytest.mark.slow
def test_maml_sweep_commands_print_their_config(tmp_path):
    """Each ``maml-sweep`` command of the docs, run for real with ``--cfg job`` (prints, trains nothing);
    a sweep's job config is shown at its sweeps' first values."""
    seen = set()
    for page, cmd in ALL:
        argv = argv_of(cmd)
        if argv[0] != "maml-sweep" or cmd in seen or "-sc" in argv or "--cfg" in argv:
            continue
        seen.add(cmd)
        args = hydra_overrides(argv[1:])  # --cfg shows one job: a sweep at its first value
        proc = run_cli([*args, "--cfg", "job"], cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, f"{page}: {cmd}\n{proc.stderr[-2000:]}"
        assert "train:" in proc.stdout
    assert len(seen) >= 8
    assert not any(tmp_path.iterdir()), "--cfg job must write nothing"


def test_no_documented_report_writes_into_the_tracked_example():
    """Only ``python -m maml_sweep.tools.example`` writes analysis/example (tracked files)."""
    from maml_sweep.analysis.report_cli import build_parser, default_out
    from maml_sweep.tools.example import OUT

    reports = [argv_of(c) for _, c in ALL if c.startswith("maml-sweep-report ")]
    assert reports
    for argv in reports:
        args = build_parser().parse_args(argv[1:])
        out = Path(args.out) if args.out else default_out(args.paths)
        assert Path(out) != OUT and OUT not in Path(out).parents, argv


def test_every_relative_link_in_readme_and_docs_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
