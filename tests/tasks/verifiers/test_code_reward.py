"""code_reward and the sandbox: scoring, test styles, limits, isolation levels."""

import json
import time

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.code import compile_assert_test, extract_code, run_tests
from tasks.verifiers.sandbox.pool import ISOLATION_LEVELS, RunLimits, SandboxPool, _probe

SOLUTION = "<think>easy</think>\n```python\ndef add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    a, b = map(int, input().split())\n    print(add(a, b))\n```"
TESTS = [
    {"type": "assert", "code": "assert add(1, 2) == 3"},
    {"type": "assert", "code": "from math import isclose\nx = 0.1\nassert isclose(add(x, 0.2), 0.3)\nassert add(-1, 1) == 0"},
    {"type": "io", "input": "1 2\n", "output": "3\n"},
    {"type": "io", "input": "40 2", "output": "42"},
]


@pytest.fixture(scope="module")
def reward():
    return build_reward("code_reward", {"timeout_s": 3.0, "workers": 2})


def test_correct_solution_passes_all(reward):
    assert reward(completions=[SOLUTION], tests=[TESTS]) == [1.0]
    assert reward.stats["isolation"] in ISOLATION_LEVELS


def test_fraction_and_binary(reward):
    half = "```python\ndef add(a, b):\n    return a + b if a > 0 else 0\n```"
    tests = [{"type": "assert", "code": "assert add(1, 2) == 3"}, {"type": "assert", "code": "assert add(-1, 5) == 4"}]
    assert reward(completions=[half], tests=[tests]) == [0.5]
    binary = build_reward("code_reward", {"timeout_s": 3.0, "workers": 2, "binary": True})
    assert binary(completions=[half, SOLUTION], tests=[tests, tests]) == [0.0, 1.0]


def test_rows_without_tests_or_code(reward):
    out = reward(completions=[SOLUTION, "no code here", [{"role": "assistant", "content": SOLUTION}]],
                 tests=[None, TESTS, json.dumps(TESTS)])
    assert out == [None, 0.0, 1.0]


def test_extract_code_takes_last_block_after_reasoning():
    text = "<think>```python\nbad()\n```</think>```python\nfirst()\n```\ntext\n```py\nlast()\n```"
    assert extract_code(text) == "last()\n"
    assert extract_code("<think>```python\nx=1\n```</think>no code") is None
    assert extract_code("```\nplain()\n```") == "plain()\n"


def test_assert_compilation_keeps_expected_values_out_of_the_sandbox():
    steps, checks, env = compile_assert_test(
        "expected = [1, 2, 3]\nSECRET = 987654321\nassert sorted(f(3)) == expected\nassert f(0) == SECRET\n"
        "assert g(2) * 2 == 8\nassert abs(h(1) - 0.5) < 1e-6")
    sandbox_text = json.dumps(steps)
    assert "987654321" not in sandbox_text and "[1, 2, 3]" not in sandbox_text and "0.5" not in sandbox_text
    assert [s["eval"] for s in steps if "eval" in s] == [["f(3)"], ["f(0)"], ["g(2) * 2"], ["h(1)"]]
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
    bad = run_tests("def f(x): return x", [{"type": "assert", "code": "assert ((("}])
    assert bad[0]["status"] == "bad_test" and not bad[0]["passed"]


def test_timeout_is_enforced_and_reported():
    t = time.perf_counter()
    res = run_tests("import time\ntime.sleep(30)", [{"type": "io", "input": "", "output": ""}],
                    limits=RunLimits(timeout=1.0))
    assert res[0]["status"] == "timeout" and not res[0]["passed"]
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("level", ISOLATION_LEVELS)
def test_each_available_isolation_level(level):
    if not _probe(level):
        pytest.skip(f"{level} is not available here")
    pool = SandboxPool(1, level)
    try:
        job = {"mode": "io", "code": "print(sum(map(int, input().split())))", "stdin": "2 3\n", **RunLimits(timeout=3).as_job()}
        reply = pool.run(job)
        assert reply["status"] == "ok" and reply["stdout"] == "5\n" and reply["isolation"] == level
        net = pool.run({**job, "audit": False, "code": (
            "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    print('online')\n"
            "except OSError:\n    print('offline')")})
        if level != "rlimits":
            assert net["stdout"] == "offline\n"
    finally:
        pool.close()


def test_workers_survive_the_short_lived_thread_that_started_them():
    """PR_SET_PDEATHSIG fires when the starting *thread* exits; workers must not die with it."""
    import threading

    pool = SandboxPool(1)
    job = {"mode": "io", "code": "print(7)", "stdin": "", **RunLimits(timeout=3).as_job()}
    try:
        t = threading.Thread(target=pool.run, args=(job,))
        t.start()
        t.join()
        worker = pool._all[0]
        pid = worker.proc.pid
        time.sleep(0.3)
        assert worker.proc.poll() is None
        assert pool.run(job)["stdout"] == "7\n"
        assert worker.proc.pid == pid  # not restarted
    finally:
        pool.close()
