"""The one-way layering docs/architecture.md claims, on the import graph of tests/test_imports.py
(function-level imports included), followed transitively: data never reaches training or
evaluation; verifiers never reach a stage (data, train, eval, the stage lifecycle); nothing in
tasks/ reaches flows/; flows only compose (no compute library imported in flows/)."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO
from tests.test_imports import _graph

#: What the flows may not import themselves: the libraries that compute (they live in tasks/).
COMPUTE = ("torch", "transformers", "trl", "datasets", "lm_eval", "numpy", "pandas", "peft", "accelerate", "vllm")


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _breaks(graph, layer: str, forbidden: tuple[str, ...], exempt: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Modules of `layer` (less `exempt`) -> the forbidden modules they reach."""
    out = {}
    for name in graph:
        if _within(name, (layer,)) and not _within(name, exempt):
            bad = {m for m in _reach(graph, name) if _within(m, forbidden)}
            if bad:
                out[name] = bad
    return out


def test_reach_follows_imports_transitively():
    assert _reach({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}
    graph = {"x.one": {"y"}, "x.two": {"z.bad"}, "y": {"z.bad"}, "z.bad": set()}
    assert _breaks(graph, "x", ("z",), exempt=("x.two",)) == {"x.one": {"z.bad"}}


@pytest.mark.parametrize(("layer", "forbidden", "exempt"), [
    ("tasks.data", ("tasks.train", "tasks.eval", "flows"), ()),
    ("tasks.verifiers", ("tasks.data", "tasks.train", "tasks.eval", "tasks.stages", "flows"), ()),
    ("tasks", ("flows",), ("tasks.ops",)),  # the command line and the stack start the flows
], ids=["data-never-imports-train-or-eval", "verifiers-never-import-stages", "tasks-never-import-flows"])
def test_imports_point_one_way(layer, forbidden, exempt):
    assert not _breaks(_graph(), layer, forbidden, exempt)


def test_flows_only_compose():
    """A flow module imports Prefect, MLflow, the standard library and tasks/, never a library
    that computes: the work is a task function, the flow calls it."""
    for path in sorted((REPO / "flows").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        bad = {m for m in imported if m.split(".")[0] in COMPUTE}
        assert not bad, f"{path.name} imports {bad}: move that work into tasks/"
