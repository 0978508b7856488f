"""math-verify out of process: answers, the time limit, replacement, and the workers' own alarm."""

import json
import os
import struct
import time

from tasks.verifiers.mv_pool import TIMED_OUT, TIMEOUT_S, get_pool
from tasks.verifiers.mv_worker import ALARM_S

SLOW = "((10^{999})^{999})^{999}"  # sympy works on this integer in C for minutes, holding its GIL


def test_answers_and_a_killed_request_then_a_fresh_worker():
    pool = get_pool()
    assert pool.ask(["eq", "\\log_2 8", "3"]) is True and pool.ask(["eq", "\\log_2 8", "4"]) is False
    assert pool.ask(["gold", "\\frac{"]) is False and pool.ask(["eq", "1", "\\frac{"]) is None
    t = time.perf_counter()
    assert pool.ask(["eq", SLOW, "4"]) == TIMED_OUT
    assert time.perf_counter() - t < TIMEOUT_S + 0.5
    assert pool.ask_many([["eq", "\\binom{5}{2}", "10"]] * 3) == [True] * 3  # replaced, all workers fine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_a_stuck_worker_ends_itself_even_if_nobody_kills_it():
    pid, sock = get_pool().fork()
    data = json.dumps(["eq", SLOW, "4"]).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)
    deadline = time.monotonic() + ALARM_S + 30  # the kernel's alarm, however loaded the machine
    while (alive := _alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    sock.close()
    assert not alive
