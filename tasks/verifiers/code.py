"""Code reward: run the completion's last code block against the row's tests in the sandbox.

Tests (column ``tests``) and where each shape is judged: see ``code_tests`` (``io``: stdout
compared here; ``split`` asserts: solution-side values from the sandbox, comparisons here;
``proxy`` asserts: test code in its own sandboxed process, the solution in another). Expected
values and reference code never enter the solution's process.

Score = fraction of the row's runnable tests passed (``binary=True``: 1.0 only if all pass);
0.0 when no code block is found; ``None`` for a row without a runnable test (counted as
``code/no_runnable_tests``; malformed tests are left out and counted as ``code/bad_tests``).
A sandbox failure raises ``SandboxError`` after bounded retries: never a silent 0.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tasks.verifiers._base import Reward, column, log_metric, logger
from tasks.verifiers.code_split import split_passed
from tasks.verifiers.code_tests import JudgePlan, runnable_tests
from tasks.verifiers.math import answer_region
from tasks.verifiers.sandbox import (
    LEVELS,
    RunLimits,
    UidRange,
    get_pool,
    isolation_problem,
)
from tasks.verifiers.sandbox.uids import DEFAULT_UIDS

__all__ = ["CodeReward", "extract_code", "run_tests"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[ \t]*\n(.*?)```", re.DOTALL)
_WEAK = {"unshare": "no filesystem isolation: the host's files stay visible, protected only by the run's own uid",
         "rlimits": "no namespaces: only the run's own uid, rlimits and the seccomp filter stand between the code "
                    "and this machine"}


def extract_code(text: str, language: str = "python") -> str | None:
    """The last fenced code block of the answer (after ``</think>`` when present), else ``None``."""
    region = answer_region(text or "")
    if region is None:
        return None
    ok = {"python": {"python", "py", "python3", ""}}.get(language, {language, ""})
    blocks = [body for lang, body in _FENCE.findall(region) if lang.lower() in ok]
    return blocks[-1] if blocks else None


def _io_equal(out: str, expected: str, mode: str) -> bool:
    if mode == "tokens":
        return out.split() == expected.split()
    a = [ln.rstrip() for ln in out.rstrip().splitlines()]
    b = [ln.rstrip() for ln in expected.rstrip().splitlines()]
    return a == b


def _passed(plan: JudgePlan, reply: dict, io_compare: str) -> bool:
    if plan.kind == "io":
        return reply.get("status") == "ok" and _io_equal(reply.get("stdout", ""), plan.expected, io_compare)
    if plan.kind == "split":
        return split_passed(reply, plan.checks, plan.env)
    return reply.get("status") == "ok" and reply.get("results") == "pass"


def run_tests(code: str, tests: Any, *, limits: RunLimits | None = None, io_compare: str = "lines",
              workers: int | None = None, isolation: str = "bwrap", uids: UidRange = DEFAULT_UIDS) -> list[dict]:
    """Run ``code`` against the runnable tests of ``tests``; one ``{"passed", "status", "isolation"}`` each."""
    plans, _ = runnable_tests(tests)
    pool = get_pool(workers, isolation, uids)
    replies = pool.run_many([{**p.job, "code": code} for p in plans], limits or RunLimits())
    return [{"passed": _passed(p, r, io_compare), "status": r["status"], "isolation": r["isolation"]}
            for p, r in zip(plans, replies)]


class CodeReward(Reward):
    """Fraction of the row's runnable tests passed by the completion's last code block, run sandboxed.

    Scoring rule: passed / runnable tests of column ``tests`` (shapes in ``code_tests``); with
    ``binary=True`` 1.0 only when every test passes, else 0.0. No code block: 0.0. Row without a
    runnable test: ``None`` (counted). Params: ``timeout_s`` (wall clock per test; CPU limit is
    this + 1 s), ``memory_mb``, ``fsize_mb``, ``nofile``, ``nproc``, ``max_output_bytes``,
    ``binary``, ``io_compare`` ("lines" | "tokens"), ``language``, ``workers`` (0 = auto),
    ``isolation`` ("bwrap" | "unshare" | "rlimits"; nothing falls back), ``uid_base`` /
    ``uid_count`` (the run uids, root only), ``tests_column``.
    """

    name = "code_reward"
    FAMILIES = ("code",)
    COLUMNS = ("tests_column",)
    PARAMS = {
        "timeout_s": 4.0, "memory_mb": 512, "fsize_mb": 16, "nofile": 64, "nproc": 16,
        "max_output_bytes": 1 << 20, "binary": False, "io_compare": "lines", "language": "python",
        "workers": 0, "isolation": "bwrap", "uid_base": UidRange.base, "uid_count": UidRange.count,
        "tests_column": "tests",
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
        if p["isolation"] not in LEVELS:
            self._fail(f"isolation must be one of {LEVELS} (bwrap is the default; weaker levels only by name)")
        if p["language"] != "python":
            self._fail("only language='python' is supported")
        if p["workers"] < 0:
            self._fail("workers must be >= 0")
        self.stats = {"runs": 0, "passed": 0, "timeouts": 0, "no_runnable_tests": 0, "bad_tests": 0,
                      "isolation": None}
        self._warned = False

    def limits(self) -> RunLimits:
        p = self.params
        return RunLimits(timeout=p["timeout_s"], memory_mb=p["memory_mb"], fsize_mb=p["fsize_mb"],
                         nofile=p["nofile"], nproc=p["nproc"], max_output=p["max_output_bytes"])

    def uid_range(self) -> UidRange:
        return UidRange(self.params["uid_base"], self.params["uid_count"])

    def sandbox_isolation(self) -> str:
        return self.params["isolation"]

    def runtime_problem(self) -> str | None:
        return isolation_problem(self.params["isolation"], self.uid_range())

    def _pool(self):
        level = self.params["isolation"]
        if level in _WEAK and not self._warned:
            logger.warning("code_reward: running untrusted code under the weaker isolation %r the recipe asked for "
                           "(%s); the default 'bwrap' isolates it fully", level, _WEAK[level])
        self._warned = True
        return get_pool(self.params["workers"] or None, level, self.uid_range())

    def _plans(self, tests: Any, cache: dict) -> tuple[list[JudgePlan], int]:
        key = tests if isinstance(tests, str) or tests is None else json.dumps(tests, sort_keys=True, default=repr)
        if key not in cache:
            cache[key] = runnable_tests(tests)
        return cache[key]

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        slots = []  # per completion: None (no runnable test) | 0.0 (no code) | (start, count) in `plans`
        jobs: list[dict] = []
        plans: list[JudgePlan] = []
        cache: dict = {}
        no_tests = bad = 0
        for text, tests in zip(texts, column(kwargs, p["tests_column"], len(texts))):
            row_plans, row_bad = self._plans(tests, cache)
            bad += row_bad
            if not row_plans:
                no_tests += 1
                slots.append(None)
                continue
            code = extract_code(text, p["language"])
            if code is None:
                slots.append(0.0)
                continue
            slots.append((len(plans), len(row_plans)))
            plans += row_plans
            jobs += [{**tp.job, "code": code} for tp in row_plans]
        passed: list[bool] = []
        if jobs:
            pool = self._pool()
            replies = pool.run_many(jobs, self.limits())
            passed = [_passed(tp, r, p["io_compare"]) for tp, r in zip(plans, replies)]
            self.stats["isolation"] = pool.isolation
            self.stats["timeouts"] += sum(r["status"] == "timeout" for r in replies)
        out: list[float | None] = []
        for item in slots:
            if not isinstance(item, tuple):
                out.append(item)
                continue
            start, n = item
            k = sum(passed[start:start + n])
            out.append((1.0 if k == n else 0.0) if p["binary"] else k / n)
        self.stats["runs"] += len(passed)
        self.stats["passed"] += sum(passed)
        self.stats["no_runnable_tests"] += no_tests
        self.stats["bad_tests"] += bad
        if passed:
            log_metric(kwargs, "code/test_pass_rate", sum(passed) / len(passed))
        if no_tests:
            log_metric(kwargs, "code/no_runnable_tests", no_tests)
        if bad:
            log_metric(kwargs, "code/bad_tests", bad)
        return out
