"""The tests column: validation reasons (for curation's quarantine) and where each shape is judged."""

import json

import pytest

from tasks.verifiers import tests_problem as problem_of
from tasks.verifiers.code_tests import plan_test, runnable_tests

HUMANEVAL = {"type": "assert", "entry_point": "add", "code": (
    "METADATA = {}\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n    for i in range(3):\n"
    "        assert candidate(i, 0) == i\n")}


@pytest.mark.parametrize("test, kind", [
    ({"type": "io", "input": "1\n", "output": "2\n"}, "io"),
    ({"input": "1\n", "output": "2\n"}, "io"),
    ({"type": "assert", "code": "assert f(1) == 2"}, "split"),
    ({"type": "assert", "code": "import math\nx = [1, 2]\nassert math.isclose(f(x), 1.5)"}, "split"),
    ({"type": "assert", "code": "data = [5, 3]\nexpected = sorted(data)\nassert f(data) == expected"}, "proxy"),
    ({"type": "assert", "code": "def ref(n):\n    return n * 2\nfor n in range(3):\n    assert f(n) == ref(n)"}, "proxy"),
    ({"type": "assert", "code": "import random\nassert f(random.Random(0).random()) < 1"}, "proxy"),
    ({"type": "assert", "code": "assert f(2) == 2 ** 10"}, "proxy"),  # ** runs sandboxed, never here
    (HUMANEVAL, "proxy"),
])
def test_each_shape_is_judged_where_the_docs_say(test, kind):
    plan = plan_test(test)
    assert plan.kind == kind
    if kind == "proxy":
        assert plan.job["mode"] == "proxy" and plan.job["test"] == test["code"]
    if kind == "io":
        assert plan.expected == "2\n" and "2\n" not in json.dumps(plan.job)  # the expected output stays here


@pytest.mark.parametrize("tests, reason", [
    (None, "no tests"),
    ([], "empty list"),
    ("[{", "not JSON"),
    ({"fn_name": "f", "inputs": [], "outputs": []}, "fn_name"),
    ({"inputs": ["1"], "outputs": []}, "same length"),
    ([["assert f(1) == 1"]], "tests[0]: a list, not a test dict"),
    (["assert f(1) == 1"], "tests[0]: a str, not a test dict"),
    ([{"type": "assert", "code": "assert f(1) == 1"}, {"type": "assert"}], "tests[1]: assert test without a code string"),
    ([{"type": "assert", "code": "assert ((("}], "does not parse"),
    ([{"type": "assert", "code": "x = f(1)"}], "no assert"),
    ([{"type": "assert", "code": "assert 1 == 1"}], "never refers to the solution"),
    ([{"type": "io", "input": 1, "output": "1"}], "must be strings"),
    ([{"type": "shell", "code": "ls"}], "unknown test type 'shell'"),
    ([{**HUMANEVAL, "entry_point": "not a name"}], "entry_point must be a function name"),
    ([{"type": "assert", "entry_point": "f", "code": "assert f(1) == 1"}], "must define check(candidate)"),
])
def test_bad_tests_have_a_reason(tests, reason):
    problem = problem_of(tests)
    assert problem and reason in problem, problem
    plans, bad = runnable_tests(tests)
    assert not plans or bad


def test_good_tests_have_no_problem_and_all_run():
    tests = [{"type": "io", "input": "1", "output": "1"}, {"type": "assert", "code": "assert f(1) == 1"}, HUMANEVAL]
    assert problem_of(tests) is None and problem_of(json.dumps(tests)) is None
    assert problem_of({"inputs": ["1\n"], "outputs": ["1\n"]}) is None
    plans, bad = runnable_tests(tests)
    assert [p.kind for p in plans] == ["io", "split", "proxy"] and bad == 0
