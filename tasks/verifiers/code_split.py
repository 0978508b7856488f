"""Split assert tests: the solution-side parts run in the sandbox, the comparisons run here.

``compile_assert_test(code)`` replaces every sub-expression of an ``assert`` that needs the
solution (``f(1)``) by a placeholder. The sandbox only evaluates those leaves and returns their
values as plain builtin data (``sandbox.wire``); ``split_passed`` then evaluates the rest of each
assert - comparisons, literals, names bound to literals and a whitelist of pure helpers
(``sorted``, ``abs``, ``math.isclose``, ...) - in this trusted process. Solution-sized values
never drive ``*``/``**`` here (such a product is evaluated in the sandbox as a whole).
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import math
from typing import Any

from tasks.verifiers.sandbox.wire import decode

__all__ = ["compile_assert_test", "split_passed"]

_SAFE_FUNCS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "len", "list", "max",
                 "min", "round", "set", "sorted", "str", "sum", "tuple", "isinstance", "reversed")
}
_SAFE_MATH = {"isclose", "sqrt", "fabs", "floor", "ceil", "isnan", "isinf", "isfinite", "pi", "inf", "e"}
_SAFE_METHODS = {"strip", "rstrip", "lstrip", "split", "splitlines", "lower", "upper", "keys", "values",
                 "items", "count", "index", "startswith", "endswith", "replace", "get", "join"}
_HEAVY_OPS = (ast.Mult, ast.Pow, ast.LShift, ast.MatMult)


class _Lifter(ast.NodeTransformer):
    """Replace every sub-expression that needs the solution by a ``__leaf_k`` placeholder."""

    def __init__(self, parent_names: set[str], math_alias: set[str], math_funcs: set[str]):
        self.parent_names = parent_names
        self.math_alias = math_alias
        self.math_funcs = math_funcs
        self.leaves: list[str] = []

    def leaf(self, node: ast.AST) -> ast.Name:
        self.leaves.append(ast.unparse(node))
        return ast.Name(id=f"__leaf_{len(self.leaves) - 1}", ctx=ast.Load())

    def lift(self, node: ast.AST) -> ast.AST:
        heavy = isinstance(node, ast.BinOp) and isinstance(node.op, _HEAVY_OPS)
        original = copy.deepcopy(node) if heavy else None
        n = len(self.leaves)
        out = self._lift(node)
        if heavy and len(self.leaves) > n:
            del self.leaves[n:]  # never let solution-sized values drive * or ** here
            return self.leaf(original)
        return out

    def _lift(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, ast.Name):
            return node if node.id in self.parent_names or node.id in _SAFE_FUNCS else self.leaf(node)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            node.elts = [self.lift(e) for e in node.elts]
            return node
        if isinstance(node, ast.Dict) and None not in node.keys:
            node.keys = [self.lift(k) for k in node.keys]
            node.values = [self.lift(v) for v in node.values]
            return node
        if isinstance(node, ast.UnaryOp):
            node.operand = self.lift(node.operand)
            return node
        if isinstance(node, ast.BinOp):
            node.left, node.right = self.lift(node.left), self.lift(node.right)
            return node
        if isinstance(node, ast.BoolOp):
            node.values = [self.lift(v) for v in node.values]
            return node
        if isinstance(node, ast.Compare):
            node.left = self.lift(node.left)
            node.comparators = [self.lift(c) for c in node.comparators]
            return node
        if isinstance(node, ast.IfExp):
            node.test, node.body, node.orelse = self.lift(node.test), self.lift(node.body), self.lift(node.orelse)
            return node
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            node.value, node.slice = self.lift(node.value), self.lift(node.slice)
            return node
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in self.math_alias and node.attr in _SAFE_MATH:
            return node
        if isinstance(node, ast.Call) and not any(isinstance(a, ast.Starred) for a in node.args) \
                and all(k.arg for k in node.keywords):
            f = node.func
            safe = (isinstance(f, ast.Name) and (f.id in _SAFE_FUNCS or f.id in self.math_funcs)) \
                or (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in self.math_alias
                    and f.attr in _SAFE_MATH) \
                or (isinstance(f, ast.Attribute) and f.attr in _SAFE_METHODS)
            if safe:
                if isinstance(f, ast.Attribute) and f.attr in _SAFE_METHODS:
                    f.value = self.lift(f.value)
                node.args = [self.lift(a) for a in node.args]
                for k in node.keywords:
                    k.value = self.lift(k.value)
                return node
        return self.leaf(node)


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def compile_assert_test(code: str) -> tuple[list[dict], list[tuple[Any, int, int]], dict]:
    """Split assert-style test code into sandbox ``steps`` and trusted ``checks``.

    Returns ``(steps, checks, env)``: ``steps`` go to the sandbox (``{"exec": src}`` or
    ``{"eval": [leaf sources]}``); each check is ``(compiled expression, step index, number of
    leaves)`` evaluated here with ``env`` plus the leaf values.
    """
    tree = ast.parse(code)
    env: dict[str, Any] = {}
    math_alias: set[str] = set()
    bound: set[str] = set()
    steps: list[dict] = []
    checks: list[tuple[Any, int, int]] = []
    literal_assigns: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert):
            lifter = _Lifter(set(env), math_alias, bound)
            expr = lifter.lift(stmt.test)
            compiled = compile(ast.fix_missing_locations(ast.Expression(expr)), "<check>", "eval")
            steps.append({"eval": lifter.leaves})
            checks.append((compiled, len(steps) - 1, len(lifter.leaves)))
            continue
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name == "math":
                    math_alias.add(a.asname or "math")
                    env[a.asname or "math"] = math
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "math":
            for a in stmt.names:
                if a.name in _SAFE_MATH:
                    env[a.asname or a.name] = getattr(math, a.name)
                    bound.add(a.asname or a.name)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and _literal(stmt.value):
            env[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            literal_assigns[stmt.targets[0].id] = len(steps)
        steps.append({"exec": ast.unparse(stmt)})
    # literal assignments stay out of the sandbox unless solution-side code refers to them
    literal_steps = set(literal_assigns.values())
    used: set[str] = set()
    for i, step in enumerate(steps):
        sources = [(src, "eval") for src in step.get("eval", [])]
        if "exec" in step and i not in literal_steps:
            sources.append((step["exec"], "exec"))
        for src, mode in sources:
            used |= {n.id for n in ast.walk(ast.parse(src, mode=mode)) if isinstance(n, ast.Name)}
    for name, idx in literal_assigns.items():
        if name not in used:
            steps[idx] = {"exec": "pass"}
    return steps, checks, env


def split_passed(reply: dict, checks: list, env: dict) -> bool:
    """Whether a split assert test passed: its leaf values (plain data from the sandbox) make every check true."""
    if reply.get("status") not in ("ok",):
        return False
    values: dict[tuple[int, int], Any] = {}
    done = False
    for line in reply.get("results", "").splitlines():
        try:
            item = json.loads(line)
            if item == "done":
                done = True
                continue
            si, li, enc = item
            if (si, li) in values or enc[0] == "E":
                return False
            values[(si, li)] = decode(enc)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            return False
    if not done:
        return False
    for compiled, si, n in checks:
        scope = dict(env)
        try:
            scope.update({f"__leaf_{k}": values[(si, k)] for k in range(n)})
            if not eval(compiled, {"__builtins__": _SAFE_FUNCS, "math": math}, scope):  # noqa: S307 - trusted AST
                return False
        except Exception:  # noqa: BLE001 - a failing check is a failed test
            return False
    return True
