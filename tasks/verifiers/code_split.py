"""Split assert tests: the solution-side parts run in the sandbox, the comparisons run here.

``compile_assert_test(code)`` replaces every sub-expression of an ``assert`` that the solution
owns (``f(1)``, ``obj.attr``, ``f(x)[0]``) by a placeholder; nothing else crosses to the
solution's process (an expected value such as ``[i*i for i in range(4)]`` computed there would
use the solution's ``range``), and a test with any other sub-expression is ``NotSplittable``
(it runs as a proxy test). The sandbox only evaluates the leaves and returns their values as
plain builtin data (``sandbox.wire``); ``split_passed`` evaluates the rest of each assert -
comparisons, literals, names bound to literals, a whitelist of pure helpers (``sorted``,
``abs``, ``math.isclose``, ...) - in this trusted process, every operator through ``_op``,
which refuses (the test fails) what the solution's values could make expensive: ``%``
formatting of a string, products, powers, shifts and repetitions past ``MAX_BITS`` /
``MAX_ITEMS``, ``round`` to a huge precision, ``sum`` of sequences.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
from typing import Any

from tasks.verifiers.sandbox.wire import decode

__all__ = ["NotSplittable", "compile_assert_test", "split_passed"]

_BUILTIN_NAMES = frozenset(dir(builtins))
_SAFE_MATH = {"isclose", "sqrt", "fabs", "floor", "ceil", "isnan", "isinf", "isfinite", "pi", "inf", "e"}
_SAFE_METHODS = {"strip", "rstrip", "lstrip", "split", "splitlines", "lower", "upper", "keys", "values",
                 "items", "count", "index", "startswith", "endswith", "get", "join"}
MAX_BITS = 1 << 16  # an int the trusted side computes stays under this many bits
MAX_ITEMS = 1 << 22  # and a sequence under this many items


class NotSplittable(ValueError):
    """The test needs more than solution-side leaves and bounded trusted operators: run it as proxy."""


class TooCostly(ValueError):
    """A trusted-side operation on the solution's values would cost more than its bound (test fails)."""


def _guarded_round(x, ndigits=None):
    if ndigits is not None and (type(ndigits) is not int or abs(ndigits) > 400):
        raise TooCostly("round")
    return round(x, ndigits) if ndigits is not None else round(x)


def _guarded_sum(items, start=0):
    items = list(items)
    if not all(type(v) in (int, float, bool, complex) for v in [*items, start]):
        raise TooCostly("sum of non-numbers (quadratic)")
    return sum(items, start)


_SAFE_FUNCS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "len", "list", "max",
                 "min", "set", "sorted", "str", "tuple", "isinstance", "reversed")
} | {"round": _guarded_round, "sum": _guarded_sum}


def _size(v) -> int:
    return len(v) if isinstance(v, (str, bytes, list, tuple)) else 1


def _op(name: str, a, b):
    """``a <op> b`` on the trusted side, refused when the operands (the solution's) would make it
    expensive: str/bytes ``%`` formatting (a width of 10**9), products/powers/shifts past
    ``MAX_BITS`` or ``MAX_ITEMS``."""
    ints = type(a) is int and type(b) is int
    if name == "Mod" and isinstance(a, (str, bytes)):
        raise TooCostly("% formatting of a solution value")
    if name == "Mult":
        if ints and a.bit_length() + b.bit_length() > MAX_BITS:
            raise TooCostly("product")
        seq, n = (a, b) if type(b) is int else (b, a) if type(a) is int else (None, 0)
        if not ints and seq is not None and _size(seq) * abs(n) > MAX_ITEMS:
            raise TooCostly("repetition")  # 'ab' * 10**9
    if name == "Pow" and ints and b > 0 and a not in (0, 1, -1) and a.bit_length() * b > MAX_BITS:
        raise TooCostly("power")
    if name in ("LShift", "RShift") and ints and b > MAX_BITS:
        raise TooCostly("shift")
    if name == "Add" and _size(a) + _size(b) > MAX_ITEMS:
        raise TooCostly("concatenation")
    return _OPS[name](a, b)


_OPS = {type(o).__name__: f for o, f in (
    (ast.Add(), lambda a, b: a + b), (ast.Sub(), lambda a, b: a - b), (ast.Mult(), lambda a, b: a * b),
    (ast.Div(), lambda a, b: a / b), (ast.FloorDiv(), lambda a, b: a // b), (ast.Mod(), lambda a, b: a % b),
    (ast.Pow(), lambda a, b: a ** b), (ast.LShift(), lambda a, b: a << b), (ast.RShift(), lambda a, b: a >> b),
    (ast.BitOr(), lambda a, b: a | b), (ast.BitAnd(), lambda a, b: a & b), (ast.BitXor(), lambda a, b: a ^ b),
    (ast.MatMult(), lambda a, b: a @ b))}


class _Lifter(ast.NodeTransformer):
    """Replace every sub-expression that needs the solution by a ``__leaf_k`` placeholder.

    Only a sub-expression *owned* by the solution crosses to its process: one of its names, or a
    call, attribute or subscript of such a thing (the arguments are the solution's input, so
    whatever they evaluate to there is the solution's own business). Everything else of the
    assert is evaluated here, from literals, literal-bound names, ``_SAFE_FUNCS``, math and
    guarded operators (``_op``); any other sub-expression (a comprehension, ``range``, a lambda)
    makes the test ``NotSplittable`` and it runs as a proxy test, in its own process."""

    def __init__(self, parent_names: set[str], math_alias: set[str], math_funcs: set[str]):
        self.parent_names = parent_names
        self.math_alias = math_alias
        self.math_funcs = math_funcs
        self.leaves: list[str] = []

    def leaf(self, node: ast.AST) -> ast.Name:
        self.leaves.append(ast.unparse(node))
        return ast.Name(id=f"__leaf_{len(self.leaves) - 1}", ctx=ast.Load())

    def solution_name(self, name: str) -> bool:
        return name not in self.parent_names and name not in self.math_funcs and name not in _BUILTIN_NAMES

    def owned(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return self.solution_name(node.id)
        if isinstance(node, ast.Call):
            return self.owned(node.func)
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            return self.owned(node.value)
        return False

    def lift(self, node: ast.AST) -> ast.AST:  # noqa: C901 - a flat dispatch is clearest here
        if self.owned(node):
            return self.leaf(node)
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, ast.Name) and (node.id in self.parent_names or node.id in _SAFE_FUNCS
                                           or node.id in self.math_funcs):
            return node
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and not any(isinstance(e, ast.Starred) for e in node.elts):
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
            left, right = self.lift(node.left), self.lift(node.right)
            if isinstance(left, ast.Constant) and isinstance(right, ast.Constant):
                return ast.BinOp(left, node.op, right)
            return ast.Call(ast.Name("__op", ast.Load()), [ast.Constant(type(node.op).__name__), left, right], [])
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
            method = isinstance(f, ast.Attribute) and f.attr in _SAFE_METHODS
            if (isinstance(f, ast.Name) and (f.id in _SAFE_FUNCS or f.id in self.math_funcs)) \
                    or (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in self.math_alias
                        and f.attr in _SAFE_MATH) or method:
                if method:
                    f.value = self.lift(f.value)
                node.args = [self.lift(a) for a in node.args]
                for k in node.keywords:
                    k.value = self.lift(k.value)
                return node
        raise NotSplittable(ast.unparse(node)[:80])


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
            if not eval(compiled, {"__builtins__": _SAFE_FUNCS, "math": math, "__op": _op}, scope):  # noqa: S307
                return False
        except Exception:  # noqa: BLE001 - a failing check is a failed test
            return False
    return True
