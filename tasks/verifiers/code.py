"""Code reward: run the completion's last code block against the row's tests in the sandbox.

Tests (column ``tests``: a list of dicts, or its JSON string):

* ``{"type": "io", "input": "1 2\\n", "output": "3\\n"}`` - the program reads stdin; its stdout
  is compared here, in the trusted process, with the expected output (per line, trailing
  whitespace ignored; ``io_compare="tokens"`` compares whitespace-separated tokens).
* ``{"type": "assert", "code": "assert f(1) == 2"}`` - the assertions are split before anything
  runs: the sandbox only evaluates the sub-expressions that need the solution (``f(1)``) and
  returns their values as plain builtin data; the comparison (``== 2``), literals, names bound
  to literals and a whitelist of pure helpers (``sorted``, ``abs``, ``math.isclose``, ...) are
  evaluated here. Expected values never enter the sandbox, so a solution cannot read them,
  override ``__eq__`` (non-builtin results fail), patch the harness, print "PASSED" or exit
  early to pass. Other statements (imports, setup assignments) run in the sandbox.

Score = fraction of tests passed (``binary=True``: 1.0 only if all pass); ``None`` for a row
without tests; 0.0 when no code block is found.
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import math
import re
from typing import Any

from tasks.verifiers._base import Reward, column, log_metric, logger
from tasks.verifiers.math import answer_region
from tasks.verifiers.sandbox import ISOLATION_LEVELS, RunLimits, get_pool

__all__ = ["CodeReward", "compile_assert_test", "extract_code", "run_tests"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[ \t]*\n(.*?)```", re.DOTALL)
_SAFE_FUNCS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "len", "list", "max",
                 "min", "round", "set", "sorted", "str", "sum", "tuple", "isinstance", "reversed")
}
_SAFE_MATH = {"isclose", "sqrt", "fabs", "floor", "ceil", "isnan", "isinf", "isfinite", "pi", "inf", "e"}
_SAFE_METHODS = {"strip", "rstrip", "lstrip", "split", "splitlines", "lower", "upper", "keys", "values",
                 "items", "count", "index", "startswith", "endswith", "replace", "get", "join"}
_HEAVY_OPS = (ast.Mult, ast.Pow, ast.LShift, ast.MatMult)


def extract_code(text: str, language: str = "python") -> str | None:
    """The last fenced code block of the answer (after ``</think>`` when present), else ``None``."""
    region = answer_region(text or "")
    if region is None:
        return None
    ok = {"python": {"python", "py", "python3", ""}}.get(language, {language, ""})
    blocks = [body for lang, body in _FENCE.findall(region) if lang.lower() in ok]
    return blocks[-1] if blocks else None


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

    def _lift(self, node: ast.AST) -> ast.AST:  # noqa: C901
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


_TAGS = {"l": list, "t": tuple, "S": set, "F": frozenset}


def _decode(v: Any) -> Any:
    tag = v[0]
    if tag == "n":
        return None
    if tag == "b":
        return bool(v[1])
    if tag == "i":
        return int(v[1])
    if tag == "f":
        return float(v[1])
    if tag == "c":
        return complex(float(v[1]), float(v[2]))
    if tag == "s":
        return str(v[1])
    if tag == "y":
        return bytes.fromhex(v[1])
    if tag in _TAGS:
        return _TAGS[tag](_decode(x) for x in v[1])
    if tag == "d":
        return {_decode(k): _decode(x) for k, x in v[1]}
    raise ValueError(f"bad value tag {tag!r}")


def _assert_passed(reply: dict, steps: list[dict], checks: list, env: dict) -> bool:
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
            values[(si, li)] = _decode(enc)
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


def _io_equal(out: str, expected: str, mode: str) -> bool:
    if mode == "tokens":
        return out.split() == expected.split()
    a = [ln.rstrip() for ln in out.rstrip().splitlines()]
    b = [ln.rstrip() for ln in expected.rstrip().splitlines()]
    return a == b


def _parse_tests(tests: Any) -> list[dict] | None:
    if tests is None:
        return None
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except ValueError:
            return None
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:  # apps/taco style
        tests = [{"type": "io", "input": i, "output": o} for i, o in zip(tests["inputs"], tests["outputs"])]
    if not isinstance(tests, list) or not tests:
        return None
    return [t for t in tests if isinstance(t, dict)]


def run_tests(code: str, tests: list[dict], *, limits: RunLimits | None = None, io_compare: str = "lines",
              workers: int | None = None, isolation: str = "auto") -> list[dict]:
    """Run ``code`` against ``tests``; one ``{"passed", "status", "isolation"}`` per test."""
    jobs, judges = _prepare(code, tests, limits or RunLimits(), io_compare)
    pool = get_pool(workers, isolation)
    replies = pool.run_many([j for j in jobs if j is not None])
    return _judge(jobs, judges, iter(replies))


def _prepare(code: str, tests: list[dict], limits: RunLimits, io_compare: str):
    jobs: list[dict | None] = []
    judges: list = []
    base = limits.as_job()
    for t in tests:
        kind = t.get("type") or ("io" if "input" in t else "assert")
        try:
            if kind == "io":
                jobs.append({"mode": "io", "code": code, "stdin": str(t.get("input", "")), **base})
                expected = str(t.get("output", ""))
                judges.append(lambda r, e=expected: r.get("status") == "ok" and _io_equal(r.get("stdout", ""), e, io_compare))
            elif kind == "assert":
                steps, checks, env = compile_assert_test(str(t["code"]))
                if not checks:
                    raise ValueError("assert test without any assert statement")
                jobs.append({"mode": "assert", "code": code, "steps": steps, **base})
                judges.append(lambda r, s=steps, c=checks, e=env: _assert_passed(r, s, c, e))
            else:
                raise ValueError(f"unknown test type {kind!r}")
        except (SyntaxError, ValueError, KeyError) as e:
            logger.warning("code_reward: bad test %r skipped as failed: %s", t, e)
            jobs.append(None)
            judges.append(None)
    return jobs, judges


def _judge(jobs, judges, replies) -> list[dict]:
    out = []
    for job, judge in zip(jobs, judges):
        if job is None:
            out.append({"passed": False, "status": "bad_test", "isolation": None})
            continue
        r = next(replies)
        out.append({"passed": bool(judge(r)), "status": r.get("status"), "isolation": r.get("isolation")})
    return out


class CodeReward(Reward):
    """Fraction of the row's tests passed by the completion's last code block, run sandboxed.

    Scoring rule: passed / total over column ``tests`` (io and assert tests, see the module
    docstring); with ``binary=True`` 1.0 only when every test passes, else 0.0. No code block:
    0.0. Row without tests: ``None``. Params: ``timeout_s`` (wall clock per test; CPU limit is
    this + 1 s), ``memory_mb``, ``fsize_mb``, ``nofile``, ``nproc``, ``max_output_bytes``,
    ``binary``, ``io_compare`` ("lines" | "tokens"), ``language``, ``workers`` (0 = auto),
    ``isolation`` ("auto" | "bwrap" | "unshare" | "rlimits"), ``tests_column``.
    """

    name = "code_reward"
    FAMILIES = ("code",)
    COLUMNS = ("tests_column",)
    PARAMS = {
        "timeout_s": 4.0, "memory_mb": 512, "fsize_mb": 16, "nofile": 64, "nproc": 16,
        "max_output_bytes": 1 << 20, "binary": False, "io_compare": "lines", "language": "python",
        "workers": 0, "isolation": "auto", "tests_column": "tests",
    }

    def _validate(self) -> None:
        p = self.params
        if not 0 < p["timeout_s"] <= 120:
            self._fail("timeout_s must be in (0, 120]")
        for k in ("memory_mb", "fsize_mb", "nofile", "nproc", "max_output_bytes"):
            if p[k] <= 0:
                self._fail(f"{k} must be > 0")
        if p["memory_mb"] < 64:
            self._fail("memory_mb must be >= 64 (the Python interpreter needs it)")
        if p["io_compare"] not in ("lines", "tokens"):
            self._fail("io_compare must be 'lines' or 'tokens'")
        if p["isolation"] not in ("auto",) + ISOLATION_LEVELS:
            self._fail(f"isolation must be 'auto' or one of {ISOLATION_LEVELS}")
        if p["language"] != "python":
            self._fail("only language='python' is supported")
        if p["workers"] < 0:
            self._fail("workers must be >= 0")
        self.stats = {"runs": 0, "passed": 0, "timeouts": 0, "isolation": None}

    def limits(self) -> RunLimits:
        p = self.params
        return RunLimits(timeout=p["timeout_s"], memory_mb=p["memory_mb"], fsize_mb=p["fsize_mb"],
                         nofile=p["nofile"], nproc=p["nproc"], max_output=p["max_output_bytes"])

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        rows = column(kwargs, p["tests_column"], len(texts))
        plan = []  # per completion: None (no tests) | 0.0 (no code) | (start, count)
        jobs: list = []
        judges: list = []
        for text, tests in zip(texts, rows):
            tests = _parse_tests(tests)
            if tests is None:
                plan.append(None)
                continue
            code = extract_code(text, p["language"])
            if code is None:
                plan.append(0.0)
                continue
            j, g = _prepare(code, tests, self.limits(), p["io_compare"])
            plan.append((len(jobs), len(j)))
            jobs += j
            judges += g
        results: list[dict] = []
        if jobs:
            pool = get_pool(p["workers"] or None, p["isolation"])
            replies = pool.run_many([j for j in jobs if j is not None])
            results = _judge(jobs, judges, iter(replies))
            self.stats["isolation"] = pool.isolation
        out: list[float | None] = []
        for item in plan:
            if not isinstance(item, tuple):
                out.append(item)
                continue
            start, n = item
            passed = sum(r["passed"] for r in results[start:start + n])
            out.append((1.0 if passed == n else 0.0) if p["binary"] else passed / n)
        self.stats["runs"] += len(results)
        self.stats["passed"] += sum(r["passed"] for r in results)
        self.stats["timeouts"] += sum(r["status"] == "timeout" for r in results)
        if results:
            log_metric(kwargs, "code/test_pass_rate", sum(r["passed"] for r in results) / len(results))
        return out
