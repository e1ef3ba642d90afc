"""The package's import graph has no cycle, function-level (lazy) imports included.

Every ``import``/``from ... import`` anywhere in a module (inside functions too) is an edge to the
``maml_sweep`` module it names; ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg``. A package's ``__init__`` is a module like any other."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maml_sweep"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (the package ``root.name``)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, modules) -> set[str]:
    """The modules of ``modules`` that module ``name`` (at ``path``) imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import a.b.c: the deepest module of ours it names
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None when it is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_imports_without_cycles():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and "maml_sweep.rundir" in graph["maml_sweep.train"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_a_planted_lazy_import_cycle_is_found(tmp_path):
    root = tmp_path / "maml_sweep"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "low.py").write_text("import numpy\n")
    (root / "sub" / "high.py").write_text("from .. import low\n")
    graph = import_graph(root)
    assert graph["maml_sweep.sub.high"] == {"maml_sweep.low"} and find_cycle(graph) is None
    (root / "low.py").write_text("def f():\n    from .sub.high import g\n")  # lazy, inside a function
    assert find_cycle(import_graph(root)) == ["maml_sweep.low", "maml_sweep.sub.high", "maml_sweep.low"]


@pytest.mark.parametrize("graph, cycle", [({"a": {"b"}, "b": {"c"}, "c": set()}, None),
                                          ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
                                          ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"])])
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_docs_development_names_every_module():
    """docs/development.md's module list is complete and names no module that is gone."""
    import re

    text = (PACKAGE.parent / "docs" / "development.md").read_text()
    text = text[text.index("## Layout"):text.index("## Tests and CI")]
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py)`", text)) - {"tests/test_import_graph.py"}
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert sorted(modules - named) == [] and sorted(named - modules) == []


def test_the_tools_sit_beside_the_core():
    """No module outside maml_sweep.tools imports a tool: the tools use the core, never the reverse."""
    graph = import_graph(PACKAGE)
    tools = {m for m in graph if m.startswith("maml_sweep.tools")}
    assert {m: sorted(graph[m] & tools) for m in graph if m not in tools and graph[m] & tools} == {}
