"""Sandbox worker: a small, stdlib-only, pre-started process that forks one child per run.

Started by ``tasks.verifiers.sandbox.pool`` as ``python -I worker.py CONTROL_FD`` inside the
isolation level's namespaces, with an explicit minimal environment. It talks to the pool over
a Unix ``SOCK_SEQPACKET`` socket: one JSON config message, then per run a JSON header (uid,
limits) that carries the run's descriptors (job, stdin, stdout, stderr, results and channel
memfds/pipes) as ``SCM_RIGHTS``. The worker only forks, waits and cleans up: it never reads a
run's code, input, output or tests, so no bytes of one run are in the memory the next run is
forked from. Per run it:

* makes a fresh working directory (``mkdtemp``, 0700, owned by the run's uid) in a root-owned
  0711 directory with a random name (the run's uid may pass through it to its own directory,
  but neither list nor write it): the sandbox's private ``/tmp`` under bwrap and unshare, a
  ``mkdtemp`` of the pool's under rlimits; then forks the child (``child.py``), which locks
  itself down before running anything;
* waits on a pidfd with the run's wall-clock deadline and SIGKILLs the child when it passes;
* kills and reaps anything left behind (it is a subreaper; in a PID namespace every process but
  itself and pid 1 is a leftover) and deletes the directory.

The worker is non-dumpable, so a run with the same uid (unprivileged pools) cannot read its
memory through ``/proc``; the runs' seccomp filter forbids them to signal or trace it anyway.
"""

import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_rlvr_sandbox_child", os.path.join(_here, "child.py"))
_child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_child)

SETUP_TIMEOUT = 10.0
_PRELOAD = (
    "collections", "collections.abc", "heapq", "bisect", "itertools", "functools", "math", "cmath", "re",
    "string", "fractions", "decimal", "statistics", "random", "typing", "dataclasses", "copy", "operator",
    "array", "datetime", "json", "enum", "abc", "io", "struct", "textwrap", "unicodedata", "queue",
    "hashlib", "base64", "numbers", "contextlib", "types", "threading", "pprint", "difflib", "calendar",
    "inspect", "time", "traceback", "warnings", "weakref", "zlib", "binascii", "tempfile", "fcntl",
)


class _Kernel:
    """prctl(2) and the run's seccomp program, resolved once in the worker (forks inherit them)."""

    def __init__(self, program: bytes):
        import ctypes

        self._ct = ctypes
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._buf = ctypes.create_string_buffer(program, len(program))
        self._prog = SockFprog(len(program) // 8, ctypes.addressof(self._buf))

    def prctl(self, option, arg):
        return self._prctl(option, arg, 0, 0, 0)

    def install(self):
        """no_new_privs + the run filter on this thread; True when the kernel took both."""
        if self._prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return False
        return self._prctl(22, 2, self._ct.addressof(self._prog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER


def _expose(prefixes):
    """``unshare`` level: hide each non-world-readable ancestor of the Python prefixes (e.g. /root)
    under a tmpfs in this private mount namespace and bind the prefixes back read-only, so the
    unprivileged run uid can import the whole standard library."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ms_rdonly, ms_remount, ms_bind, ms_rec = 1, 32, 4096, 16384
    groups = {}
    for p in prefixes:
        parts = p.strip("/").split("/")
        for k in range(1, len(parts)):
            anc = "/" + "/".join(parts[:k])
            if os.stat(anc).st_mode & 0o005 != 0o005:
                groups.setdefault(anc, []).append(p)
                break
    for anc, paths in groups.items():
        stages = []
        for p in paths:
            stage = tempfile.mkdtemp(prefix="rlvr-stage-")
            if libc.mount(p.encode(), stage.encode(), None, ms_bind | ms_rec, None) != 0:
                raise OSError(ctypes.get_errno(), "bind " + p)
            stages.append((p, stage))
        if libc.mount(b"tmpfs", anc.encode(), b"tmpfs", 0, b"mode=755,size=1m") != 0:
            raise OSError(ctypes.get_errno(), "tmpfs " + anc)
        for p, stage in stages:
            os.makedirs(p, 0o755, exist_ok=True)
            libc.mount(stage.encode(), p.encode(), None, ms_bind | ms_rec, None)
            libc.mount(None, p.encode(), None, ms_bind | ms_remount | ms_rdonly, None)
            libc.umount2(stage.encode(), 2)
            os.rmdir(stage)


def _private_tmp():
    """``unshare`` level: fresh size-limited tmpfs over the host's world-writable directories."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(d) and libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, b"mode=755,size=256m") != 0:
            raise OSError(ctypes.get_errno(), "tmpfs " + d)


def _procs():
    """``(pid, ppid, state)`` of every process visible in /proc."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            yield int(entry), int(fields[1]), fields[0]


def _sweep(namespaced):
    """Kill and reap every process a run left behind (none can exist under the run filter)."""
    me = os.getpid()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # we are a subreaper: no child at all means nothing was left
        if pid:
            continue
        for p, ppid, state in _procs():
            if state != b"Z" and p != me and p != 1 and (namespaced or ppid == me):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.0005)


def _status(exit_code, sig, timed_out):
    if timed_out or sig == signal.SIGXCPU:
        return "timeout"
    if sig:
        return "signal"
    return "ok" if exit_code == 0 else "error"


def _run(header, fds, cfg, kernel):
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="run-", dir=cfg["root"])
    uid = header.get("uid")
    if uid is not None:
        os.chown(workdir, uid, uid)
    header["worker_pid"] = os.getpid()
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        _child.start(header, fds, status_w, workdir, kernel)
    for fd in list(fds.values()) + [status_w]:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([status_r], [], [], SETUP_TIMEOUT)
    setup = os.read(status_r, 4096) if ready else b""
    os.close(status_r)
    timed_out = False
    if setup[:1] == b"R":
        ready, _, _ = select.select([pidfd], [], [], max(0.0, t0 + header["timeout"] - time.monotonic()))
        timed_out = not ready
    if not ready or setup[:1] != b"R":
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    os.close(pidfd)
    _sweep(cfg["namespaced"])
    shutil.rmtree(workdir, ignore_errors=True)
    exit_code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else None
    sig = os.WTERMSIG(st) if os.WIFSIGNALED(st) else None
    if setup[:1] != b"R":
        return {"status": "setup_error", "error": setup[1:].decode("utf-8", "replace") or "child died in setup"}
    return {"status": _status(exit_code, sig, timed_out), "exit_code": exit_code, "signal": sig,
            "elapsed": time.monotonic() - t0}


def main():
    ctl = socket.socket(fileno=int(sys.argv[1]))
    cfg = json.loads(ctl.recv(1 << 16) or b"null")
    if cfg is None:
        return
    kernel = _Kernel(bytes.fromhex(cfg["run_filter"]))
    kernel.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with whoever started us
    kernel.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans of a run come back to us for the sweep
    kernel.prctl(4, 0)  # PR_SET_DUMPABLE 0
    if cfg.get("private_tmp"):
        _private_tmp()
    if cfg.get("expose_prefixes"):
        _expose(cfg["expose_prefixes"])
    if not cfg.get("root"):  # in this sandbox's private /tmp
        cfg["root"] = tempfile.mkdtemp(prefix="rlvr-runs-")
        os.chmod(cfg["root"], 0o711)
    for name in _PRELOAD:  # importable in the child even where the uid drop cannot read the prefix
        __import__(name)
    ctl.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 16)
        if not msg:
            break
        header = json.loads(msg)
        named = dict(zip(header.pop("fds"), fds))
        try:
            reply = _run(header, named, cfg, kernel)
        except Exception as e:  # noqa: BLE001 - report, keep serving
            reply = {"status": "setup_error", "error": f"worker: {type(e).__name__}: {e}"}
        ctl.send(json.dumps(reply).encode())


if __name__ == "__main__":
    main()
