"""The layout holds: no import circle between the project's modules (function-level and
TYPE_CHECKING imports included, so a lazy import cannot hide one), no module over 400 lines,
at most 10 modules flat in tasks/, and flows/ holds flows and their small Prefect helpers."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("tasks", "flows")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules `name` imports anywhere in its file, plus the packages above each."""
    is_pkg = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names}
    edges = set()
    for t in targets:
        parts = t.split(".")
        edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # a.b.c imports a and a.b first
    return {e for e in edges if e in modules and e != name and not name.startswith(e + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_function_level_imports():
    graph = _graph()
    assert "tasks.recipe" in graph["tasks.data.sources"]
    assert "tasks.train.launch" in graph["tasks.train.sft"]  # imported inside a function there


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_tasks_top_holds_only_the_shared_core():
    flat = sorted(p.name for p in (REPO / "tasks").glob("*.py") if p.name != "__init__.py")  # empty: a marker
    assert len(flat) <= 10, flat


def test_flows_hold_flows_and_prefect_helpers_only():
    """Every module of flows/ defines a flow or imports Prefect (a small helper of the flows)."""
    for path in sorted((REPO / "flows").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if path.name != "__init__.py":
            assert any(str(n).startswith("prefect") or n == "flow" for n in names), path.name
