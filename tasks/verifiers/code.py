"""Code reward: run the completion's last code block against the row's tests in the sandbox.

Tests (column ``tests``) and where each shape is judged: see ``code_tests`` (``io``: stdout
compared here; ``split`` asserts: solution-side values from the sandbox, comparisons here;
``proxy`` asserts: test code in its own sandboxed process, the solution in another). Expected
values and reference code never enter the solution's process.

Score = fraction of the row's runnable tests passed (``binary=True``: 1.0 only if all pass);
0.0 when no code block is found or the completion was stopped by its budget (``run_budgeted``); ``None`` for a row without a runnable test (counted as
``code/no_runnable_tests``; malformed tests are left out and counted as ``code/bad_tests``).
A sandbox failure raises ``SandboxError`` after bounded retries: never a silent 0.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
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

__all__ = ["CodeReward", "extract_code", "run_budgeted", "run_tests"]

MIN_RUN_S = 0.2  # a run needs at least this much of its completion's budget left to start

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
    runnable test: ``None`` (counted). Budget: a completion's tests run one after another and
    stop at its first timeout or when ``completion_budget_s`` (0 = 2 x ``timeout_s``) or the
    batch's ``batch_budget_s`` is spent: such a completion scores 0.0 and is counted as
    ``code/hostile_completions``. Params: ``timeout_s`` (wall clock per test; CPU limit is
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
        "tests_column": "tests", "completion_budget_s": 0.0, "batch_budget_s": 600.0,
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
        if p["completion_budget_s"] < 0 or p["batch_budget_s"] <= 0:
            self._fail("completion_budget_s must be >= 0 (0 = 2 x timeout_s) and batch_budget_s > 0")
        self.stats = {"runs": 0, "passed": 0, "timeouts": 0, "hostile_completions": 0, "no_runnable_tests": 0,
                      "bad_tests": 0, "isolation": None}
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
        plan = []  # per completion: None (no runnable test) | 0.0 (no code) | index into groups
        groups: list[tuple[list[JudgePlan], str]] = []
        cache: dict = {}
        no_tests = bad = 0
        for text, tests in zip(texts, column(kwargs, p["tests_column"], len(texts))):
            row_plans, row_bad = self._plans(tests, cache)
            bad += row_bad
            if not row_plans:
                no_tests += 1
                plan.append(None)
                continue
            code = extract_code(text, p["language"])
            if code is None:
                plan.append(0.0)
                continue
            plan.append(len(groups))
            groups.append((row_plans, code))
        verdicts: list[tuple[list[bool], bool]] = []
        if groups:
            pool = self._pool()
            budget = p["completion_budget_s"] or 2 * p["timeout_s"]
            runs = run_budgeted(pool, [[{**tp.job, "code": code} for tp in plans] for plans, code in groups],
                                self.limits(), budget, p["batch_budget_s"])
            for (plans, _), (replies, stopped) in zip(groups, runs):
                verdicts.append(([_passed(tp, r, p["io_compare"]) for tp, r in zip(plans, replies)], stopped))
            self.stats["isolation"] = pool.isolation
            self.stats["timeouts"] += sum(r["status"] == "timeout" for replies, _ in runs for r in replies)
        out: list[float | None] = []
        for item in plan:
            if not isinstance(item, int):
                out.append(item)
                continue
            passed, stopped = verdicts[item]
            n = len(groups[item][0])
            k = 0 if stopped else sum(passed)  # a completion stopped by its budget scores 0
            out.append((1.0 if k == n else 0.0) if p["binary"] else k / n)
        ran = [x for passed, _ in verdicts for x in passed]
        hostile = sum(stopped for _, stopped in verdicts)
        self.stats["runs"] += len(ran)
        self.stats["passed"] += sum(ran)
        self.stats["hostile_completions"] += hostile
        self.stats["no_runnable_tests"] += no_tests
        self.stats["bad_tests"] += bad
        if ran:
            log_metric(kwargs, "code/test_pass_rate", sum(ran) / len(ran))
        if hostile:
            log_metric(kwargs, "code/hostile_completions", hostile)
        if no_tests:
            log_metric(kwargs, "code/no_runnable_tests", no_tests)
        if bad:
            log_metric(kwargs, "code/bad_tests", bad)
        return out


def run_budgeted(pool, groups: list[list[dict]], limits: RunLimits, completion_s: float,
                 batch_s: float) -> list[tuple[list[dict], bool]]:
    """Each group (one completion's tests) in order, one run at a time, groups side by side
    (``pool.size`` at once, so a hostile completion holds one worker while the others go on).
    A group stops at its first timeout, or when its own ``completion_s`` or the batch's
    ``batch_s`` (counted from this call) is spent; each run's timeout is cut to what is left.
    Returns per group (the replies of the runs made, stopped)."""
    batch_end = time.monotonic() + batch_s

    def one(jobs: list[dict]) -> tuple[list[dict], bool]:
        end = min(time.monotonic() + completion_s, batch_end)
        replies: list[dict] = []
        for job in jobs:
            left = end - time.monotonic()
            if left < MIN_RUN_S:
                return replies, True
            reply = pool.run(job, replace(limits, timeout=min(limits.timeout, left)))
            replies.append(reply)
            if reply["status"] == "timeout":
                return replies, True
        return replies, False

    if len(groups) == 1:
        return [one(groups[0])]
    with ThreadPoolExecutor(max_workers=pool.size, thread_name_prefix="code-reward") as ex:
        return list(ex.map(one, groups))
