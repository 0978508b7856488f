"""math-verify out of process: every call bounded in wall-clock time, the caller's GIL never held.

Python big-integer arithmetic inside sympy runs in C holding the GIL, so a thread timeout cannot
stop it and the whole calling process stalls. Here math-verify runs only in worker processes
(``mv_worker.py``): a zygote imports it once and forks workers; each request waits at most
``TIMEOUT_S`` on the worker's socket (the caller releases the GIL while it waits) and a worker
that has not answered by then is SIGKILLed and replaced by a fresh fork. A timed-out request
returns ``TIMED_OUT``. One pool per process (``get_pool``), ``workers`` = usable cores (max 4),
requests of a batch spread across them (``ask_many``), callers served in turn.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

__all__ = ["TIMED_OUT", "TIMEOUT_S", "MathVerifyError", "MathVerifyPool", "get_pool"]

TIMEOUT_S = 1.5
START_TIMEOUT_S = 120.0
TIMED_OUT = "timed_out"
_HDR = struct.Struct(">I")
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mv_worker.py")
_pools: dict[int, MathVerifyPool] = {}
_lock = threading.Lock()


class MathVerifyError(RuntimeError):
    """The math-verify worker processes cannot be started."""


def _recv_exact(sock: socket.socket, n: int, deadline_s: float) -> bytes:
    out = bytearray()
    while len(out) < n:
        ready, _, _ = select.select([sock], [], [], deadline_s)
        if not ready:
            raise TimeoutError
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("math-verify worker died")
        out += chunk
    return bytes(out)


class _Zygote:
    def __init__(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # -P: this folder (with its math.py) must not shadow the standard library in the worker
        self.proc = subprocess.Popen([sys.executable, "-P", _WORKER, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.sock = mine
        ready, _, _ = select.select([mine], [], [], START_TIMEOUT_S)
        if not ready or mine.recv(16) != b"ready":
            self.close()
            raise MathVerifyError("the math-verify zygote did not start (is math-verify installed?)")

    def fork(self) -> tuple[int, socket.socket]:
        self.sock.send(b"fork")
        ready, _, _ = select.select([self.sock], [], [], 30.0)
        if not ready:
            raise MathVerifyError("the math-verify zygote did not fork a worker")
        msg, fds, _, _ = socket.recv_fds(self.sock, 32, 1)
        if not msg or not fds:
            raise MathVerifyError("the math-verify zygote died")
        return int(msg), socket.socket(fileno=fds[0])

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Slot:
    """One worker process (started on first use, replaced after a timeout)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.sock: socket.socket | None = None

    def ask(self, pool: MathVerifyPool, req: list) -> Any:
        if self.sock is None:
            self.pid, self.sock = pool.fork()
        data = json.dumps(req).encode()
        try:
            self.sock.sendall(_HDR.pack(len(data)) + data)
            n = _HDR.unpack(_recv_exact(self.sock, _HDR.size, TIMEOUT_S))[0]
            return json.loads(_recv_exact(self.sock, n, TIMEOUT_S))
        except (TimeoutError, EOFError, OSError):
            self.kill()
            return TIMED_OUT

    def kill(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.sock is not None:
            self.sock.close()
        self.pid, self.sock = None, None


class _Lane:
    """The requests of one ``ask_many`` call, served in turn with every other caller's."""

    def __init__(self, reqs: list[list], deadline: float | None):
        self.reqs, self.deadline = reqs, deadline
        self.todo = collections.deque(range(len(reqs)))
        self.results: list = [TIMED_OUT] * len(reqs)
        self.left = len(reqs)
        self.done = threading.Event()


class MathVerifyPool:
    """``ask(["gold", g])`` / ``ask(["eq", pred, gold])`` on worker processes (see the module docstring).

    Fair: each ``ask_many`` call is a lane and the workers take one request from each lane in
    turn, so a caller with many slow requests (one reward's hostile batch) cannot starve another
    running beside it (``ConcurrentReward``); a request not started by its lane's deadline is
    ``TIMED_OUT`` without running."""

    def __init__(self, workers: int | None = None):
        self.size = workers or max(1, min(4, len(os.sched_getaffinity(0))))
        self._zygote: _Zygote | None = None
        self._zygote_lock = threading.Lock()
        self._all = [_Slot() for _ in range(self.size)]
        self._lanes: collections.deque[_Lane] = collections.deque()
        self._cv = threading.Condition()
        for slot in self._all:
            threading.Thread(target=self._serve, args=(slot,), name="math-verify", daemon=True).start()

    def fork(self) -> tuple[int, socket.socket]:
        with self._zygote_lock:
            if self._zygote is None or self._zygote.proc.poll() is not None:
                self._zygote = _Zygote()
            return self._zygote.fork()

    def _serve(self, slot: _Slot) -> None:
        while True:
            with self._cv:
                while not self._lanes:
                    self._cv.wait()
                lane = self._lanes.popleft()
                i = lane.todo.popleft()
                if lane.todo:
                    self._lanes.append(lane)  # round robin: to the back of the line
            late = lane.deadline is not None and time.monotonic() > lane.deadline
            try:
                result = TIMED_OUT if late else slot.ask(self, lane.reqs[i])
            except MathVerifyError as e:  # handed to the caller: math-verify cannot run here
                result = e
            lane.results[i] = result
            with self._cv:
                lane.left -= 1
                if lane.left == 0:
                    lane.done.set()

    def ask(self, req: list) -> Any:
        return self.ask_many([req])[0]

    def ask_many(self, reqs: list[list], budget_s: float | None = None) -> list:
        """Answers to ``reqs`` (``TIMED_OUT`` for a request killed at ``TIMEOUT_S`` or not started
        within ``budget_s`` of this call)."""
        if not reqs:
            return []
        lane = _Lane(reqs, None if budget_s is None else time.monotonic() + budget_s)
        with self._cv:
            self._lanes.append(lane)
            self._cv.notify_all()
        lane.done.wait()
        for r in lane.results:
            if isinstance(r, MathVerifyError):
                raise r
        return lane.results

    def close(self) -> None:
        for s in self._all:
            s.kill()
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None


def get_pool() -> MathVerifyPool:
    """This process's pool (created on first use, closed at exit)."""
    with _lock:
        pool = _pools.get(os.getpid())
        if pool is None:
            pool = _pools[os.getpid()] = MathVerifyPool()
        return pool


@atexit.register
def _close() -> None:
    pool = _pools.get(os.getpid())
    if pool is not None:
        pool.close()
