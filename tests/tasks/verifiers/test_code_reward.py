"""code_reward: scoring, the three test shapes, limits, rows without runnable tests, weaker levels."""

import json
import logging
import time

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.code import extract_code, run_tests
from tasks.verifiers.code_split import compile_assert_test
from tasks.verifiers.sandbox import LEVELS, RunLimits

SOLUTION = "<think>easy</think>\n```python\ndef add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    a, b = map(int, input().split())\n    print(add(a, b))\n```"
TESTS = [
    {"type": "assert", "code": "assert add(1, 2) == 3"},
    {"type": "assert", "code": "from math import isclose\nx = 0.1\nassert isclose(add(x, 0.2), 0.3)\nassert add(-1, 1) == 0"},
    {"type": "io", "input": "1 2\n", "output": "3\n"},
    {"type": "io", "input": "40 2", "output": "42"},
    {"type": "assert", "code": "data = [5, 3, 9]\nexpected = sum(data[:2])\nassert add(*data[:2]) == expected"},
    {"type": "assert", "entry_point": "add", "code": "def check(candidate):\n    for i in range(5):\n        assert candidate(i, i) == 2 * i\n"},
]


@pytest.fixture(scope="module")
def reward():
    return build_reward("code_reward", {"timeout_s": 3.0, "workers": 2})


def test_correct_solution_passes_every_shape_under_bwrap(reward):
    assert reward(completions=[SOLUTION], tests=[TESTS]) == [1.0]
    assert reward.stats["isolation"] == "bwrap"
    assert reward.sandbox_isolation() == "bwrap" and reward.runtime_problem() is None


def test_fraction_and_binary(reward):
    half = "```python\ndef add(a, b):\n    return a + b if a > 0 else 0\n```"
    tests = [{"type": "assert", "code": "assert add(1, 2) == 3"}, {"type": "assert", "code": "assert add(-1, 5) == 4"}]
    assert reward(completions=[half], tests=[tests]) == [0.5]
    binary = build_reward("code_reward", {"timeout_s": 3.0, "workers": 2, "binary": True})
    assert binary(completions=[half, SOLUTION], tests=[tests, tests]) == [0.0, 1.0]


def test_rows_without_runnable_tests_score_none_and_are_counted(reward):
    logged = []
    before = dict(reward.stats)
    out = reward(completions=[SOLUTION, "no code here", SOLUTION, SOLUTION, SOLUTION],
                 tests=[None, TESTS, json.dumps(TESTS), [["assert add(1, 2) == 3"]], "not json"],
                 log_metric=lambda name, value: logged.append((name, value)))
    assert out == [None, 0.0, 1.0, None, None]
    assert reward.stats["no_runnable_tests"] - before["no_runnable_tests"] == 3
    assert reward.stats["bad_tests"] - before["bad_tests"] == 2
    assert ("code/no_runnable_tests", 3.0) in logged and ("code/bad_tests", 2.0) in logged


def test_malformed_tests_never_pay_even_binary():
    binary = build_reward("code_reward", {"timeout_s": 3.0, "workers": 2, "binary": True})
    code = "```python\ndef f(x):\n    return x\n```"
    assert binary(completions=[code, "```python\npass\n```"], tests=[[["assert f(1) == 1"]], [{"code": 5}]]) == [None, None]
    mixed = [{"type": "assert", "code": "assert f(1) == 1"}, "assert f(2) == 2"]  # one good, one malformed
    assert binary(completions=["```python\ndef f(x):\n    return 0\n```", code], tests=[mixed, mixed]) == [0.0, 1.0]


def test_extract_code_takes_last_block_after_reasoning():
    text = "<think>```python\nbad()\n```</think>```python\nfirst()\n```\ntext\n```py\nlast()\n```"
    assert extract_code(text) == "last()\n"
    assert extract_code("<think>```python\nx=1\n```</think>no code") is None
    assert extract_code("```\nplain()\n```") == "plain()\n"


def test_split_asserts_keep_expected_values_out_of_the_sandbox():
    steps, checks, env = compile_assert_test(
        "expected = [1, 2, 3]\nSECRET = 987654321\nassert sorted(f(3)) == expected\nassert f(0) == SECRET\n"
        "assert g(2) * 2 == 8\nassert abs(h(1) - 0.5) < 1e-6")
    sandbox_text = json.dumps(steps)
    assert "987654321" not in sandbox_text and "[1, 2, 3]" not in sandbox_text and "0.5" not in sandbox_text
    assert [s["eval"] for s in steps if "eval" in s] == [["f(3)"], ["f(0)"], ["g(2)"], ["h(1)"]]  # g(2) * 2: a guarded product here
    assert env["expected"] == [1, 2, 3] and len(checks) == 4


def test_io_compare_modes():
    code = "print('1  2 ')\nprint()\n"
    assert run_tests(code, [{"type": "io", "input": "", "output": "1  2\n"}])[0]["passed"]
    assert not run_tests(code, [{"type": "io", "input": "", "output": "1 2\n"}])[0]["passed"]
    assert run_tests(code, [{"type": "io", "input": "", "output": "1 2"}], io_compare="tokens")[0]["passed"]


def test_runtime_errors_and_syntax_errors_fail():
    tests = [{"type": "assert", "code": "assert f(1) == 1"}]
    assert not run_tests("def f(x): raise ValueError", tests)[0]["passed"]
    assert not run_tests("def f(x) return x", tests)[0]["passed"]
    assert run_tests("def f(x): return x", tests)[0]["passed"]
    assert run_tests("def f(x): return x", [{"type": "assert", "code": "assert ((("}]) == []


def test_proxied_tests_see_solution_objects_and_exceptions():
    code = ("class Stack:\n    def __init__(self): self.xs = []\n    def push(self, x): self.xs.append(x); return self\n"
            "    def top(self): return self.xs[-1]\nLIMIT = 3\ndef div(a, b): return a // b\n")
    test = ("s = Stack()\ns.push(1).push(2)\nassert s.top() == 2\nassert LIMIT == 3\n"
            "try:\n    div(1, 0)\n    raise AssertionError('no error')\nexcept ZeroDivisionError:\n    pass\n")
    assert run_tests(code, [{"type": "assert", "code": test}])[0]["passed"]
    assert not run_tests(code.replace("a // b", "0"), [{"type": "assert", "code": test}])[0]["passed"]


def test_timeout_is_enforced_and_reported():
    t = time.perf_counter()
    res = run_tests("import time\ntime.sleep(30)", [{"type": "io", "input": "", "output": ""}],
                    limits=RunLimits(timeout=1.0))
    assert res[0]["status"] == "timeout" and not res[0]["passed"]
    assert time.perf_counter() - t < 10


def test_bwrap_is_the_default_and_auto_is_gone():
    assert build_reward("code_reward").params["isolation"] == "bwrap"
    with pytest.raises(ValueError, match="isolation must be one of"):
        build_reward("code_reward", {"isolation": "auto"})


@pytest.mark.parametrize("level", [lvl for lvl in LEVELS if lvl != "bwrap"])
def test_a_weaker_level_runs_only_when_named_and_warns_once(level, caplog):
    reward = build_reward("code_reward", {"timeout_s": 3.0, "workers": 2, "isolation": level})
    with caplog.at_level(logging.WARNING, logger="tasks.verifiers"):
        for _ in range(2):
            assert reward(completions=[SOLUTION], tests=[TESTS[:3]]) == [1.0]
    assert reward.stats["isolation"] == level
    assert sum("weaker isolation" in r.message for r in caplog.records) == 1
