"""Process sandbox for untrusted code: a pool of pre-started workers behind OS isolation.

Isolation levels, best first (``isolation="auto"`` picks the first that works here):

* ``bwrap``   - bubblewrap: read-only view of only the system and Python directories, private
  ``/tmp`` (tmpfs), no network, own PID/IPC/UTS namespaces, dies with the parent.
* ``unshare`` - util-linux ``unshare``: no network, own PID/IPC/UTS/mount namespaces (the
  filesystem stays visible; writes are stopped by the uid drop and the audit hook).
* ``rlimits`` - no namespaces: resource limits, uid drop (when root) and the audit hook only.
  Chosen with a logged warning.

Inside every level each run is a fresh fork of the worker with its own session/process group,
wall-clock deadline and CPU limit, address-space, file-size, open-file and (with the uid drop)
process-count limits, a throwaway working directory, capped output, and a sweep that kills and
reaps everything the run left behind (see ``worker.py``). Every result carries the
isolation level actually used.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import select
import shutil
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tasks.verifiers._base import logger

__all__ = ["ISOLATION_LEVELS", "RunLimits", "SandboxPool", "detect_isolation", "get_pool"]

ISOLATION_LEVELS = ("bwrap", "unshare", "rlimits")
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
_HDR = struct.Struct(">I")
_uid_counter = itertools.count()
_probe_cache: dict[str, bool] = {}
_pools: dict[tuple, SandboxPool] = {}
_pools_lock = threading.Lock()


@dataclass(frozen=True)
class RunLimits:
    """Per-run limits (seconds, MiB, counts, bytes)."""

    timeout: float = 4.0
    memory_mb: int = 512
    fsize_mb: int = 16
    nofile: int = 64
    nproc: int = 16
    max_output: int = 1 << 20
    audit: bool = True

    def as_job(self) -> dict[str, Any]:
        return {
            "timeout": float(self.timeout), "memory_mb": int(self.memory_mb), "fsize_mb": int(self.fsize_mb),
            "nofile": int(self.nofile), "nproc": int(self.nproc), "max_output": int(self.max_output),
            "audit": bool(self.audit),
        }


def _world_readable(path: str) -> bool:
    parts = os.path.realpath(path).strip("/").split("/")
    return all(os.stat("/" + "/".join(parts[:k])).st_mode & 0o005 == 0o005 for k in range(1, len(parts) + 1))


def _python() -> str:
    return os.path.realpath(sys.executable)


def _bwrap_cmd(worker: str) -> list[str]:
    cmd = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for d in ("bin", "lib", "lib64", "sbin", "lib32", "libx32"):
        p = f"/{d}"
        if os.path.islink(p):
            cmd += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            cmd += ["--ro-bind", p, p]
    made: set[str] = set()
    for p in sorted({sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(_python()))}):
        if p.startswith("/usr"):
            continue
        parts = p.strip("/").split("/")
        for k in range(1, len(parts)):  # parents bwrap would otherwise create as 0700
            parent = "/" + "/".join(parts[:k])
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", p, p]
    for p in ("/etc/ld.so.cache", "/etc/localtime"):
        cmd += ["--ro-bind-try", p, p]
    cmd += [
        "--ro-bind", worker, "/opt/rlvr/worker.py",
        "--ro-bind", os.path.join(os.path.dirname(worker), "child.py"), "/opt/rlvr/child.py",
        "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
        "--chdir", "/tmp", _python(), "-I", "/opt/rlvr/worker.py",
    ]
    return cmd


def _command(isolation: str) -> list[str]:
    if isolation == "bwrap":
        return _bwrap_cmd(_WORKER)
    if isolation == "unshare":
        return ["unshare", "--net", "--pid", "--ipc", "--uts", "--mount", "--mount-proc", "--fork",
                "--kill-child", _python(), "-I", _WORKER]
    return [_python(), "-I", _WORKER]


def _probe(isolation: str) -> bool:
    if isolation in _probe_cache:
        return _probe_cache[isolation]
    ok = isolation == "rlimits"
    if not ok and shutil.which(isolation):
        cmd = _command(isolation)
        probe = cmd[: cmd.index("-I") + 1] + ["-c", "import socket\ntry:\n socket.create_connection(('10.255.255.1', 9), 0.5)\nexcept OSError: pass\nelse: raise SystemExit(1)"]
        try:
            ok = subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
    _probe_cache[isolation] = ok
    return ok


def detect_isolation(preferred: str = "auto") -> str:
    """The isolation level to use: ``preferred`` if it works, else the best available one."""
    if preferred != "auto" and preferred not in ISOLATION_LEVELS:
        raise ValueError(f"isolation must be 'auto' or one of {ISOLATION_LEVELS}, got {preferred!r}")
    order = ISOLATION_LEVELS if preferred == "auto" else (preferred,) + ISOLATION_LEVELS
    for level in dict.fromkeys(order):
        if _probe(level):
            if level == "rlimits":
                logger.warning(
                    "code sandbox: no OS isolation available (install bubblewrap: apt-get install -y "
                    "bubblewrap); falling back to resource limits, uid drop and audit hooks only")
            elif preferred not in ("auto", level):
                logger.warning("code sandbox: isolation %r unavailable, using %r", preferred, level)
            return level
    return "rlimits"  # pragma: no cover


class _Spawner:
    """Starts workers from one long-lived daemon thread.

    Workers (and bwrap's ``--die-with-parent``) use ``PR_SET_PDEATHSIG``, which fires when the
    *thread* that started them exits, so they must not be started from short-lived threads
    (executor threads, per-request threads)."""

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


def _spawn(cmd: list[str]) -> subprocess.Popen:
    global _spawner
    with _pools_lock:
        if _spawner is None or _spawner.pid != os.getpid():
            _spawner = _Spawner()
        spawner = _spawner
    return spawner.call(lambda: subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        close_fds=True, start_new_session=True))


def _write(stream, obj: Any) -> None:
    data = json.dumps(obj).encode()
    stream.write(_HDR.pack(len(data)) + data)
    stream.flush()


def _read(stream, timeout: float) -> Any:
    fd = stream.fileno()
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise TimeoutError("sandbox worker did not answer")
    hdr = stream.read(_HDR.size)
    if len(hdr) < _HDR.size:
        raise EOFError("sandbox worker died")
    return json.loads(stream.read(_HDR.unpack(hdr)[0]))


@dataclass
class _Worker:
    isolation: str
    proc: subprocess.Popen | None = None
    uid: int | None = None
    runs: int = 0
    extra: dict = field(default_factory=dict)

    def start(self) -> None:
        root_dir = "/tmp/sbx" if self.isolation == "bwrap" else os.path.join(
            "/tmp", f"rlvr-sandbox-{os.getpid()}-{next(_uid_counter)}")
        self.uid = (200000 + (os.getpid() * 64 + next(_uid_counter) % 64) % 2_000_000_000) if os.geteuid() == 0 else None
        self.proc = _spawn(_command(self.isolation))
        prefixes = sorted({sys.base_prefix, sys.prefix}) if self.isolation == "unshare" else []
        _write(self.proc.stdin, {"uid": self.uid, "root": root_dir, "expose_prefixes": prefixes,
                                 "namespaced": self.isolation in ("bwrap", "unshare")})
        hello = _read(self.proc.stdout, 30.0)
        if not hello.get("ready"):
            raise RuntimeError(f"sandbox worker failed to start: {hello}")

    def call(self, job: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None
        _write(self.proc.stdin, job)
        reply = _read(self.proc.stdout, job["timeout"] + 10.0)
        self.runs += 1
        return reply

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.SubprocessError, ValueError):
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class SandboxPool:
    """A thread-safe pool of pre-started sandbox workers; ``run``/``run_many`` execute jobs."""

    def __init__(self, workers: int | None = None, isolation: str = "auto"):
        self.size = max(1, workers or min(4, os.cpu_count() or 1))
        self.isolation = detect_isolation(isolation)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all = [_Worker(self.isolation) for _ in range(self.size)]
        for w in self._all:
            self._idle.put(w)
        self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="sandbox")
        if self.isolation == "rlimits" and os.geteuid() == 0 and not _world_readable(sys.base_prefix):
            logger.warning("code sandbox (rlimits): %s is not readable by the unprivileged run uid; solutions "
                           "can import only the preloaded standard-library modules", sys.base_prefix)
        self.closed = False

    def warm(self) -> None:
        """Start every worker now (otherwise each starts on first use)."""
        list(self._executor.map(lambda w: w.start() if w.proc is None else None, self._all))

    def run(self, job: dict) -> dict:
        """Run one job ``{"mode": "io"|"assert", "code", "stdin"|"steps", **RunLimits}``."""
        if self.closed:
            raise RuntimeError("sandbox pool is closed")
        w = self._idle.get()
        try:
            reply = w.call(job)
        except Exception as e:  # noqa: BLE001 - a dead or hung worker: replace it, fail the run
            logger.warning("sandbox worker failed (%s); restarting it", e)
            if w.proc is not None:
                w.proc.kill()
                w.proc.wait()
                w.proc = None
            reply = {"status": "sandbox_error", "error": repr(e)}
        finally:
            self._idle.put(w)
        reply["isolation"] = self.isolation
        return reply

    def run_many(self, jobs: list[dict]) -> list[dict]:
        if len(jobs) <= 1:
            return [self.run(j) for j in jobs]
        return list(self._executor.map(self.run, jobs))

    def close(self) -> None:
        self.closed = True
        for w in self._all:
            w.stop()
        self._executor.shutdown(wait=False)


def get_pool(workers: int | None = None, isolation: str = "auto") -> SandboxPool:
    """The process-wide pool for these settings (created on first use, closed at exit)."""
    key = (os.getpid(), workers, isolation)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = _pools[key] = SandboxPool(workers, isolation)
        return pool


@atexit.register
def _close_pools() -> None:
    for key, pool in list(_pools.items()):
        if key[0] == os.getpid():
            pool.close()
