"""A thread-safe pool of pre-started sandbox workers (see ``isolation.py`` for the levels).

``SandboxPool(workers, isolation)`` refuses to exist when the level cannot work here
(``IsolationUnavailable``, with what to install): nothing falls back to a weaker level. A run is
``pool.run(job, limits)`` with ``job = {"mode": "io" | "eval" | "proxy", "code": ...}``:

* the job, stdin, stdout, stderr and results travel as memfds handed to the worker by
  ``SCM_RIGHTS``; the pool writes the inputs and reads the outputs itself, the worker never
  touches their bytes (see ``worker.py``);
* ``proxy`` runs the solution (``serve``) and the test code (``test``) as two runs in two
  workers joined by two pipes: test-side values never enter the solution's process;
* each run of a root pool gets a fresh uid from the worker's block (``uids.py``).

A worker that cannot start, dies, does not answer in time or reports a failed child setup is
replaced and the run retried (``ATTEMPTS`` in all); then ``SandboxError`` is raised, never a
silent failed test. Every reply carries the isolation level used.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import socket
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tasks.verifiers._base import logger
from tasks.verifiers.sandbox import seccomp
from tasks.verifiers.sandbox.isolation import BROKEN_HINT, MIN_ENV, prerequisite_problem, worker_command
from tasks.verifiers.sandbox.uids import DEFAULT_UIDS, UidBlock, UidRange, range_problem

__all__ = ["ATTEMPTS", "IsolationUnavailable", "RunLimits", "SandboxError", "SandboxPool", "get_pool",
           "isolation_problem"]

ATTEMPTS = 3
START_TIMEOUT = 30.0
GRACE = 10.0
CLEAN_TIMEOUT = 10.0
_pools: dict[tuple, SandboxPool] = {}
_pools_lock = threading.Lock()
_probed: dict[tuple, str | None] = {}


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the code it ran)."""


class IsolationUnavailable(SandboxError):
    """The requested isolation level cannot work on this machine."""


class _WorkerFailure(Exception):
    pass


@dataclass(frozen=True)
class RunLimits:
    """Per-run limits (seconds, MiB, counts, bytes); ``audit`` adds the in-process hook (not a boundary)."""

    timeout: float = 4.0
    memory_mb: int = 512
    fsize_mb: int = 16
    nofile: int = 64
    nproc: int = 16
    max_output: int = 1 << 20
    audit: bool = True

    def header(self) -> dict[str, Any]:
        return {"timeout": float(self.timeout), "memory_mb": int(self.memory_mb), "fsize_mb": int(self.fsize_mb),
                "nofile": int(self.nofile), "nproc": int(self.nproc), "audit": bool(self.audit)}


class _Spawner:
    """Starts workers from one long-lived daemon thread: ``PR_SET_PDEATHSIG`` (bwrap's
    ``--die-with-parent``, the worker's own) fires when the *thread* that started them exits."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, name="sandbox-spawner", daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn, box, done = self.jobs.get()
            try:
                box.append(fn())
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                box.append(e)
            done.set()

    def call(self, fn):
        box: list = []
        done = threading.Event()
        self.jobs.put((fn, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]


_spawner: _Spawner | None = None


def _spawn(cmd: list[str], pass_fds: tuple[int, ...], stderr: int) -> subprocess.Popen:
    global _spawner
    with _pools_lock:
        if _spawner is None or _spawner.pid != os.getpid():
            _spawner = _Spawner()
        spawner = _spawner
    return spawner.call(lambda: subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=dict(MIN_ENV),
        close_fds=True, pass_fds=pass_fds, start_new_session=True))


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _tail(fd: int, n: int) -> bytes:
    return os.pread(fd, n, max(0, os.fstat(fd).st_size - n))


class _Worker:
    def __init__(self, isolation: str, uids: UidRange):
        self.isolation, self.uids = isolation, uids
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.block: UidBlock | None = None
        self.root: str | None = None
        self.cleaning = False  # a verdict was collected; the worker's {"clean": ...} is still to read

    def start(self) -> None:
        self.stop()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        filter_fd = _memfd("sbx-seccomp", seccomp.baseline_filter())
        err_fd = _memfd("sbx-stderr")
        try:
            if self.isolation == "rlimits":  # no private /tmp: a fresh, unpredictable, root-owned directory
                self.root = tempfile.mkdtemp(prefix="rlvr-sandbox-")
                os.chmod(self.root, 0o711)
            self.block = UidBlock(self.uids) if os.geteuid() == 0 else None
            os.set_inheritable(filter_fd, True)
            self.proc = _spawn(worker_command(self.isolation, theirs.fileno(), filter_fd),
                               (theirs.fileno(), filter_fd), err_fd)
            theirs.close()
            self.sock = mine
            mine.send(json.dumps({
                "root": self.root, "namespaced": self.isolation != "rlimits", "run_filter": seccomp.run_filter().hex(),
                "private_tmp": self.isolation == "unshare",
                "expose_prefixes": sorted({sys.base_prefix, sys.prefix}) if self.isolation == "unshare" else [],
            }).encode())
            hello = self._recv(START_TIMEOUT)
            if not hello.get("ready"):
                raise _WorkerFailure(f"bad hello {hello}")
        except (OSError, _WorkerFailure) as e:
            detail = _tail(err_fd, 2000).decode("utf-8", "replace").strip()
            self.stop()
            raise _WorkerFailure(f"{self.isolation} worker did not start: {e}" + (f"; it said: {detail}" if detail else "")) from e
        finally:
            os.close(filter_fd)
            os.close(err_fd)
            theirs.close()

    def _recv(self, timeout: float) -> dict:
        assert self.sock is not None
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise _WorkerFailure(f"no answer within {timeout:.0f} s")
        data = self.sock.recv(1 << 16)
        if not data:
            raise _WorkerFailure("the worker died")
        return json.loads(data)

    def _settle(self) -> None:
        """Read the worker's cleanup report of its last run; a worker that retired (its run left
        more than it deletes) or does not report in time is replaced, never counted as a fault."""
        self.cleaning = False
        try:
            clean = self._recv(CLEAN_TIMEOUT).get("clean") is True
        except (_WorkerFailure, OSError, ValueError):
            clean = False
        if not clean:
            self.stop()

    def submit(self, header: dict, fds: dict[str, int]) -> None:
        if self.cleaning:
            self._settle()
        if self.proc is None or self.proc.poll() is not None or (self.block is not None and self.block.exhausted):
            self.start()
        assert self.sock is not None
        header = {**header, "uid": self.block.next() if self.block else None, "fds": list(fds)}
        try:
            socket.send_fds(self.sock, [json.dumps(header).encode()], list(fds.values()))
        except OSError as e:
            raise _WorkerFailure(f"the worker is gone ({e})") from None

    def collect(self, timeout: float) -> dict:
        reply = self._recv(timeout + GRACE)
        self.cleaning = True
        if reply.get("status") == "setup_error":
            raise _WorkerFailure(f"run setup failed: {reply.get('error')}")
        return reply

    def stop(self) -> None:
        self.cleaning = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.block is not None:  # no process of its uids is left once the worker is reaped
            self.block.release()
            self.block = None
        if self.root:  # whatever a run left there (any size, any depth): off every caller's path
            threading.Thread(target=subprocess.run, args=(["rm", "-rf", "--one-file-system", self.root],),
                             kwargs={"stderr": subprocess.DEVNULL}, daemon=True).start()
            self.root = None


def _outputs(fds: dict[str, int], cap: int) -> dict:
    out = os.pread(fds["stdout"], cap + 1, 0)
    res = os.pread(fds["results"], cap + 1, 0)
    return {"stdout": out[:cap].decode("utf-8", "replace"), "results": res[:cap].decode("utf-8", "replace"),
            "stderr_tail": _tail(fds["stderr"], 2000).decode("utf-8", "replace"),
            "over": len(out) > cap or len(res) > cap}


class SandboxPool:
    """Pre-started workers under one isolation level; ``run``/``run_many`` are thread-safe."""

    def __init__(self, workers: int | None = None, isolation: str = "bwrap", uids: UidRange = DEFAULT_UIDS):
        problem = prerequisite_problem(isolation) or (range_problem(uids) if os.geteuid() == 0 else None)
        if problem:
            raise IsolationUnavailable(problem)
        self.isolation = isolation
        self.size = max(2, workers or min(4, os.cpu_count() or 1))
        self._all = [_Worker(isolation, uids) for _ in range(self.size)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for w in self._all:
            self._idle.put(w)
        self._pair_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="sandbox")
        self.closed = False

    def warm(self) -> None:
        """Start every worker now (otherwise each starts on first use)."""
        list(self._executor.map(lambda w: w.start() if w.proc is None else None, self._all))

    def _take(self, n: int) -> list[_Worker]:
        if n == 1:
            return [self._idle.get()]
        with self._pair_lock:
            return [self._idle.get() for _ in range(n)]

    def run(self, job: dict, limits: RunLimits) -> dict:
        """Run one job (see the module docstring); ``SandboxError`` after ``ATTEMPTS`` sandbox failures."""
        if self.closed:
            raise SandboxError("sandbox pool is closed")
        parts = _parts(job, limits.max_output)
        workers = self._take(len(parts))
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return self._attempt(workers, parts, limits)
                except _WorkerFailure as e:
                    logger.warning("code sandbox: %s (attempt %d of %d)", e, attempt, ATTEMPTS)
                    for w in workers:
                        w.stop()
                    failure = e
            raise SandboxError(f"code sandbox ({self.isolation}) failed {ATTEMPTS} times: {failure}. "
                               "This is a fault of the sandbox, not of the code it ran")
        finally:
            for w in workers:
                self._idle.put(w)

    def _attempt(self, workers: list[_Worker], parts: list[tuple[dict, bytes]], limits: RunLimits) -> dict:
        channels = [os.pipe(), os.pipe()] if len(parts) == 2 else []  # (to solution), (to test)
        all_fds = []
        try:
            fds_per = []
            for k, (payload, stdin) in enumerate(parts):
                fds = {name: _memfd(f"sbx-{name}", data) for name, data in
                       (("job", json.dumps(payload).encode()), ("stdin", stdin), ("stdout", b""), ("stderr", b""),
                        ("results", b""))}
                if channels:  # solution reads pipe 0 and writes pipe 1; the test the other way round
                    fds["chan_in"], fds["chan_out"] = (channels[0][0], channels[1][1]) if k == 0 else (
                        channels[1][0], channels[0][1])
                fds_per.append(fds)
                all_fds += [fd for name, fd in fds.items() if not name.startswith("chan")]
            for w, fds in zip(workers, fds_per):
                w.submit(limits.header(), fds)
            for r, w in channels:  # only the two runs hold the pipes now
                os.close(r)
                os.close(w)
            channels = []
            replies = [{**w.collect(limits.timeout), **_outputs(fds, limits.max_output)}
                       for w, fds in zip(workers, fds_per)]
        finally:
            for fd in all_fds + [fd for pair in channels for fd in pair]:
                os.close(fd)
        for r in replies:
            if r.pop("over"):
                r["status"] = "output_limit"
        reply = replies[-1]
        if len(replies) == 2:
            reply["solution_status"] = replies[0]["status"]
        reply["isolation"] = self.isolation
        return reply

    def run_many(self, jobs: list[dict], limits: RunLimits) -> list[dict]:
        if len(jobs) <= 1:
            return [self.run(j, limits) for j in jobs]
        return list(self._executor.map(lambda j: self.run(j, limits), jobs))

    def close(self) -> None:
        self.closed = True
        for w in self._all:
            w.stop()
        self._executor.shutdown(wait=False)


def _parts(job: dict, max_frame: int) -> list[tuple[dict, bytes]]:
    """(payload, stdin) per run: one for io/eval, two (solution, test) for proxy."""
    if job["mode"] != "proxy":
        payload = {k: v for k, v in job.items() if k != "stdin"}
        return [(payload, str(job.get("stdin", "")).encode())]
    return [({"mode": "serve", "code": job["code"], "max_frame": max_frame}, b""),
            ({"mode": "test", "code": job["test"], "entry_point": job.get("entry_point"), "max_frame": max_frame}, b"")]


def get_pool(workers: int | None = None, isolation: str = "bwrap", uids: UidRange = DEFAULT_UIDS) -> SandboxPool:
    """The process-wide pool for these settings (created on first use, closed at exit)."""
    key = (os.getpid(), workers, isolation, uids)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = _pools[key] = SandboxPool(workers, isolation, uids)
        return pool


def isolation_problem(isolation: str, uids: UidRange = DEFAULT_UIDS) -> str | None:
    """Why ``isolation`` cannot run code on this machine (it is tried once), or None."""
    if problem := prerequisite_problem(isolation) or (range_problem(uids) if os.geteuid() == 0 else None):
        return problem
    key = (os.getpid(), isolation, uids)
    if key not in _probed:
        try:
            pool = get_pool(None, isolation, uids)
            reply = pool.run({"mode": "io", "code": "print(6 * 7)"}, RunLimits(timeout=20.0))
            _probed[key] = None if reply["stdout"] == "42\n" else f"code sandbox ({isolation}): a trial run " \
                f"failed ({reply['status']}: {reply['stderr_tail'][-300:]!r}); {BROKEN_HINT}"
        except SandboxError as e:
            _probed[key] = str(e) if isinstance(e, IsolationUnavailable) else f"{e}; {BROKEN_HINT}"
    return _probed[key]


@atexit.register
def _close_pools() -> None:
    for key, pool in list(_pools.items()):
        if key[0] == os.getpid():
            pool.close()
