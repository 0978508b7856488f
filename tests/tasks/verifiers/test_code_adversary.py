"""A policy that has read code_reward's source: one test per class of attack (issue 28).

Each attack asserts its score, a time bound, and that nothing outside changed (no file it
names outside its run directory, no process left, the pool still serving honest runs); the
honest forms at the end must score 1.0.
"""

import os
import resource
import threading
import time
import uuid
from pathlib import Path

import pytest

from tasks.verifiers import build_reward
from tests.conftest import descendants

MARK = f"adv_{uuid.uuid4().hex[:8]}"
WATCHED = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path.home(), Path.cwd(), Path(__file__).parent]
TIMEOUT = 2.0


# every solution below first tries to leave a mark where no run may write, at every level
PRELUDE = "".join(f"try:\n    open({str(d / MARK)!r}, 'w').write('x')\nexcept OSError:\n    pass\n"
                  for d in (Path.home(), Path.cwd(), Path(__file__).parent))


def _code(src: str) -> str:
    return f"<think>x</think>\n```python\n{PRELUDE}{src}\n```"


def _outside() -> list[str]:
    return [str(d / MARK) for d in WATCHED if (d / MARK).exists()]


@pytest.fixture(scope="module")
def reward():
    return build_reward("code_reward", {"timeout_s": TIMEOUT, "workers": 2, "memory_mb": 256})


def _score(reward, code, tests, **kw):
    procs = descendants(os.getpid())
    t = time.perf_counter()
    out = reward(completions=[_code(code)], tests=[tests], **kw)
    elapsed = time.perf_counter() - t
    time.sleep(0.05)
    assert _outside() == [] and _left(procs) == set()
    return out[0], elapsed


def _left(before: set[int]) -> set[int]:
    """Processes started since ``before`` other than the pools' workers and their background ``rm``."""
    workers = {p for pool in _pools() for w in pool._all if w.proc for p in {w.proc.pid} | descendants(w.proc.pid)}
    left = set()
    for pid in descendants(os.getpid()) - before - workers:
        try:
            if open(f"/proc/{pid}/comm").read().strip() != "rm":
                left.add(pid)
        except OSError:
            pass
    return left


def _pools():
    from tasks.verifiers.sandbox.pool import _pools as pools

    return [p for k, p in pools.items() if k[0] == os.getpid()]


# -------------------------------------------------------------- class 1: cleanup cannot fail a stage
MESS = """
import os, time
t = time.time()
n = 0
try:  # as many entries as it can make (until a private tmpfs's inode cap refuses more)
    while time.time() - t < SECONDS and n < FILES:
        for i in range(500):
            open('f%d_%d' % (n, i), 'w').close()
        n += 500
    for i in range(DEPTH):  # and nesting (3,000 levels is past PATH_MAX)
        os.mkdir('dd')
        os.chdir('dd')
except OSError:
    pass
os.chmod('.', 0)
def f(x):
    return x + 1
"""
# the private tmpfs levels get the big mess; rlimits writes to the host's disk, so a smaller one
# (still past the worker's bounded cleanup: > 4,096 entries, > 64 levels)
MESSES = {"bwrap": (1.0, 10**6, 3000), "unshare": (1.0, 10**6, 3000), "rlimits": (1.0, 5000, 100)}


@pytest.mark.parametrize("level", ["bwrap", "unshare", "rlimits"])
def test_a_run_that_leaves_a_mess_is_judged_and_the_pool_keeps_serving(level):
    reward = build_reward("code_reward", {"timeout_s": 4.0, "workers": 2, "memory_mb": 256, "isolation": level})
    tests = [{"type": "assert", "code": f"assert f({i}) == {i + 1}"} for i in range(3)]
    seconds, files, depth = MESSES[level]
    mess = MESS.replace("SECONDS", str(seconds)).replace("FILES", str(files)).replace("DEPTH", str(depth))
    score, elapsed = _score(reward, mess, tests)
    assert score == 1.0  # a correct solution that litters is still correct: cleanup is not the verdict
    assert elapsed < 3 * (4.0 + 2.0)
    honest, t = _score(reward, "def f(x):\n    return x + 1", tests)
    assert honest == 1.0 and t < 10.0


# -------------------------------------------------------------- class 2: expected values stay on the test side
@pytest.mark.parametrize("solution, test", [
    ("range = lambda *a: []\ndef squares(n):\n    return []", "assert squares(4) == [i*i for i in range(4)]"),
    ("range = lambda *a: []\ndef f(n):\n    return -1", "assert all(f(i) == i * i for i in range(4))"),
    ("sorted = lambda x: 1\nlen = lambda x: 3\ndef f(n):\n    return [9]", "assert len(f(3)) * 1 == 3"),
    ("def add(a, b):\n    raise StopIteration",
     {"entry_point": "add", "code": "def check(candidate):\n    assert all(map(lambda x: candidate(x, x) == 2 * x, [1, 2, 3]))\n"}),
    ("def add(a, b):\n    raise GeneratorExit",
     {"entry_point": "add", "code": "def check(candidate):\n    assert all(candidate(x, x) == 2 * x for x in [1, 2, 3])\n"}),
])
def test_solution_cannot_reach_expected_values_or_control_flow(reward, solution, test):
    test = {"type": "assert", **test} if isinstance(test, dict) else {"type": "assert", "code": test}
    score, elapsed = _score(reward, solution, [test])
    assert score == 0.0 and elapsed < 2 * (TIMEOUT + 2.0)


# -------------------------------------------------------------- class 3: the trusted side never computes what the solution sized
@pytest.mark.parametrize("solution, test", [
    ("def f(x):\n    return '%0536870912d'", "assert f(7) % 2 == 1"),
    ("def f(x):\n    return 5 if x == 1 else -10 ** 18", "assert round(f(1), f(2)) == 5"),
    ("def f(x):\n    return [[0] * 100 for _ in range(5000)]", "assert sum(f(1)) == 3"),
    ("def f(x):\n    return 7 ** 4000", "assert f(1) * f(1) * f(1) * f(1) * f(1) * f(1) == 3"),
    ("def f(x):\n    return 'ab' * 400000", "assert f(1) * 50 == 'ab'"),
    ("def f(x):\n    return 10 ** 9", "assert 'ab' * f(1) == 'ab'"),
    ("def f(x):\n    return [10 ** 9]", "assert [0] * f(1)[0] == [0]"),
])
def test_solution_values_cannot_make_the_trusted_side_expensive(reward, solution, test):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    score, elapsed = _score(reward, solution, [{"type": "assert", "code": test}])
    assert score == 0.0 and elapsed < TIMEOUT + 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 << 10  # KiB: no 512 MB string here


# -------------------------------------------------------------- class 4: budgets
LOOP = "while True:\n    pass"
IO_TESTS = [{"type": "io", "input": f"{i}\n", "output": f"{i}\n"} for i in range(10)]


def test_a_looping_completion_costs_one_timeout_not_one_per_test(reward):
    logged = []
    before = reward.stats["hostile_completions"]
    score, elapsed = _score(reward, LOOP, IO_TESTS, log_metric=lambda n, v: logged.append((n, v)))
    assert score == 0.0 and elapsed < TIMEOUT + 2.0  # was 10 x the timeout
    assert reward.stats["hostile_completions"] == before + 1 and ("code/hostile_completions", 1.0) in logged


def test_hostile_completions_cost_honest_ones_at_most_about_twice(reward):
    honest = _code("print(input())")
    t = time.perf_counter()
    assert reward(completions=[honest] * 4, tests=[IO_TESTS] * 4) == [1.0] * 4
    alone = time.perf_counter() - t
    t = time.perf_counter()
    out = reward(completions=[_code(LOOP), honest, _code(LOOP), honest], tests=[IO_TESTS] * 4)
    mixed = time.perf_counter() - t
    assert out == [0.0, 1.0, 0.0, 1.0]
    assert mixed < alone + TIMEOUT + 2.0  # the loopers each hold one worker for one timeout, side by side


def test_the_batch_budget_stops_a_batch_and_scores_what_was_cut_zero():
    reward = build_reward("code_reward", {"timeout_s": TIMEOUT, "workers": 2, "batch_budget_s": 1.0})
    t = time.perf_counter()
    out = reward(completions=[_code("import time\ntime.sleep(0.3)\nprint(input())")] * 2, tests=[IO_TESTS] * 2)
    assert out == [0.0, 0.0] and time.perf_counter() - t < 1.0 + TIMEOUT
    assert reward.stats["hostile_completions"] == 2


def test_a_looping_reward_thread_never_stalls_the_caller(reward):
    done = threading.Event()
    worker = threading.Thread(target=lambda: (reward(completions=[_code(LOOP)], tests=[IO_TESTS]), done.set()))
    ticks, t = 0, time.perf_counter()
    worker.start()
    while not done.is_set() and time.perf_counter() - t < 3 * TIMEOUT:
        ticks += 1
        time.sleep(0.01)
    worker.join()
    assert done.is_set() and ticks > 10


# -------------------------------------------------------------- honest answers in odd forms score 1.0
@pytest.mark.parametrize("solution, test", [
    ("def f(n):\n    return list(range(n))", "assert f(10) == list(range(10))"),
    ("def squares(n):\n    return [i * i for i in range(n)]", "assert squares(4) == [i*i for i in range(4)]"),
    ("def f(n):\n    return n * n", "assert all(f(i) == i * i for i in range(5))"),
    ("def f(n):\n    return 7", "assert f(7) % 2 == 1"),
    ("def f(n):\n    return 'ab' * n", "assert f(2) * 2 == 'abababab' and len(f(3)) == 6"),
    ("def f(n):\n    return [1, 2]", "assert sum(f(1)) == 3 and round(f(0)[0] / 3, 2) == 0.33"),
    ("def f(n):\n    raise ValueError(n)", "try:\n    f(1)\nexcept ValueError:\n    pass\nelse:\n    assert False"),
])
def test_honest_solutions_in_odd_but_correct_test_forms_score_one(reward, solution, test):
    score, _ = _score(reward, solution, [{"type": "assert", "code": test}])
    assert score == 1.0

