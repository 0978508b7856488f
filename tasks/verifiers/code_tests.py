"""The ``tests`` column of code rows: parsing, validation and the plan that judges each test.

Accepted: a list of test dicts (or its JSON string), or the APPS/TACO shape
``{"inputs": [...], "outputs": [...]}``. Each test is judged in one of three ways:

* ``io`` ``{"type": "io", "input": str, "output": str}``: the program runs on stdin in the
  sandbox; its stdout is compared in the trusted process.
* ``split`` - an ``assert`` test made only of ``assert`` statements, literal assignments
  (``x = [1, 2]``) and ``import math`` / ``from math import ...``, whose asserts use only
  solution-owned sub-expressions (``f(x)``: evaluated in the solution's sandbox, back as plain
  data), literals, a whitelist of pure helpers and bounded operators (run in the trusted
  process; see ``code_split``).
* ``proxy`` - every other ``assert`` test (helpers and reference functions, loops, computed
  expected values, ``range``, comprehensions, other imports, HumanEval's ``def check(candidate)`` with ``entry_point``):
  the test code runs in its own sandboxed process, where each name it does not define is a
  proxy for the solution's (a call sends plain-data arguments to the solution's sandbox and
  gets plain data, or an opaque handle, back). The verdict is the test process's.

``tests_problem`` says why a ``tests`` value cannot be judged (curation quarantines the row);
``runnable_tests`` gives the plans of the tests that can be, and how many could not.
"""

from __future__ import annotations

import ast
import builtins
import json
import symtable
from dataclasses import dataclass, field
from typing import Any

from tasks.verifiers.code_split import NotSplittable, compile_assert_test

__all__ = ["BadTest", "JudgePlan", "parse_tests", "plan_test", "runnable_tests", "tests_problem"]

MAX_TEST_CHARS = 200_000
_SPLIT_IMPORTS = {"math"}
_EXAMPLE = '{"type": "assert", "code": "assert f(1) == 2"} or {"type": "io", "input": "1\\n", "output": "2\\n"}'


class BadTest(ValueError):
    """A test that cannot be judged safely; the message says why."""


@dataclass
class JudgePlan:
    kind: str  # io | split | proxy
    job: dict[str, Any] = field(default_factory=dict)  # everything of the job but the solution code
    expected: str = ""  # io: the expected stdout (never sent to the sandbox)
    checks: list = field(default_factory=list)  # split: trusted checks
    env: dict[str, Any] = field(default_factory=dict)  # split: literal names for the checks


def parse_tests(tests: Any) -> list:
    """The list of test entries in a ``tests`` value; ``BadTest`` when it is not one."""
    if tests is None:
        raise BadTest("no tests")
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except ValueError as e:
            raise BadTest(f"tests is a string but not JSON ({e})") from None
    if isinstance(tests, dict):
        if "fn_name" in tests:
            raise BadTest("functional APPS tests (fn_name) are not supported; give assert tests instead")
        if "inputs" not in tests or "outputs" not in tests:
            raise BadTest(f"tests is a dict without inputs/outputs (keys: {sorted(tests)[:5]})")
        ins, outs = tests["inputs"], tests["outputs"]
        if not isinstance(ins, list) or not isinstance(outs, list) or len(ins) != len(outs):
            raise BadTest("tests inputs/outputs must be two lists of the same length")
        tests = [{"type": "io", "input": i, "output": o} for i, o in zip(ins, outs)]
    if not isinstance(tests, list):
        raise BadTest(f"tests must be a list of test dicts, got {type(tests).__name__}")
    if not tests:
        raise BadTest("tests is an empty list")
    return tests


def _free_names(tree: symtable.SymbolTable) -> set[str]:
    """Names the test code reads but never binds (at module level) and Python does not define."""
    top_bound = {s.get_name() for s in tree.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    free: set[str] = set()

    def walk(t: symtable.SymbolTable) -> None:
        for s in t.get_symbols():
            global_ref = s.is_referenced() and (t is tree or s.is_global())
            if global_ref and s.get_name() not in top_bound:
                free.add(s.get_name())
        for child in t.get_children():
            walk(child)

    walk(tree)
    return free - set(dir(builtins))


def _bounded_arithmetic(tree: ast.Module) -> bool:
    """No ``**`` / ``<<`` and no product with a large constant (the trusted side evaluates them)."""
    for n in ast.walk(tree):
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Pow, ast.LShift)):
            return False
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult) and any(
                isinstance(c, ast.Constant) and isinstance(c.value, int) and abs(c.value) > 10_000
                for c in (n.left, n.right)):
            return False
    return True


def _splittable(tree: ast.Module) -> bool:
    if not _bounded_arithmetic(tree):
        return False
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert):
            continue
        if isinstance(stmt, ast.Import) and all(a.name in _SPLIT_IMPORTS for a in stmt.names):
            continue
        if isinstance(stmt, ast.ImportFrom) and stmt.module in _SPLIT_IMPORTS:
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                ast.literal_eval(stmt.value)
                continue
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return False
        return False
    return True


def _assert_plan(t: dict) -> JudgePlan:
    code, entry = t.get("code"), t.get("entry_point")
    if not isinstance(code, str) or not code.strip():
        raise BadTest("assert test without a code string")
    if len(code) > MAX_TEST_CHARS:
        raise BadTest(f"test code over {MAX_TEST_CHARS} characters")
    try:
        tree = ast.parse(code)
        table = symtable.symtable(code, "<test>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise BadTest(f"test code does not parse: {e}") from None
    if not any(isinstance(n, (ast.Assert, ast.Raise)) for n in ast.walk(tree)):
        raise BadTest("test code has no assert (nothing could fail)")
    if entry is not None:
        if not isinstance(entry, str) or not entry.isidentifier():
            raise BadTest(f"entry_point must be a function name, got {entry!r}")
        if not any(isinstance(s, ast.FunctionDef) and s.name == "check" and s.args.args for s in tree.body):
            raise BadTest("a test with entry_point must define check(candidate)")
        return JudgePlan("proxy", {"mode": "proxy", "test": code, "entry_point": entry})
    if not _free_names(table):
        raise BadTest("test code never refers to the solution (no name it does not define itself)")
    if _splittable(tree):
        try:
            steps, checks, env = compile_assert_test(code)
        except NotSplittable:
            checks = []
        if checks:
            return JudgePlan("split", {"mode": "eval", "steps": steps}, checks=checks, env=env)
    return JudgePlan("proxy", {"mode": "proxy", "test": code})


def plan_test(t: Any) -> JudgePlan:
    """How test ``t`` is judged (see the module docstring); ``BadTest`` when it cannot be."""
    if not isinstance(t, dict):
        raise BadTest(f"a {type(t).__name__}, not a test dict such as {_EXAMPLE}")
    kind = t.get("type") or ("io" if "input" in t else "assert")
    if kind == "io":
        inp, out = t.get("input", ""), t.get("output")
        if not isinstance(inp, str) or not isinstance(out, str):
            raise BadTest("io test input and output must be strings")
        return JudgePlan("io", {"mode": "io", "stdin": inp}, expected=out)
    if kind == "assert":
        return _assert_plan(t)
    raise BadTest(f"unknown test type {kind!r} (valid: io, assert)")


def tests_problem(tests: Any) -> str | None:
    """Why a row's ``tests`` value cannot be judged (the first problem found), or None."""
    try:
        for i, t in enumerate(parse_tests(tests)):
            try:
                plan_test(t)
            except BadTest as e:
                return f"tests[{i}]: {e}"
    except BadTest as e:
        return str(e)
    return None


def runnable_tests(tests: Any) -> tuple[list[JudgePlan], int]:
    """(plans of the tests that can be judged, number that cannot) for one row."""
    try:
        entries = parse_tests(tests)
    except BadTest:
        return [], 0 if tests is None else 1
    plans, bad = [], 0
    for t in entries:
        try:
            plans.append(plan_test(t))
        except BadTest:
            bad += 1
    return plans, bad
