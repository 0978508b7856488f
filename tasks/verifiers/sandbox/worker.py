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
  itself and pid 1 is a leftover) and sends the verdict;
* only then deletes the directory, visiting at most ``CLEAN_ENTRIES`` entries ``CLEAN_DEPTH``
  deep, and says ``{"clean": ...}``. A run that left more (hundreds of thousands of files, deep
  nesting, unreadable directories) retires the worker: it exits, and its private ``/tmp``
  tmpfs goes with its mount namespace in O(1) (under ``rlimits`` the pool deletes its directory
  in the background). Cleanup can neither delay a verdict nor turn one into a fault.

The worker is non-dumpable, so a run with the same uid (unprivileged pools) cannot read its
memory through ``/proc``; the runs' seccomp filter forbids them to signal or trace it anyway.
"""

import importlib.util
import json
import os
import select
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
CLEAN_ENTRIES = 4096
CLEAN_DEPTH = 64
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


def _hold(prefixes):
    """``unshare`` level: an ``O_PATH`` descriptor of each Python prefix, taken before the private
    ``/tmp`` (or a tmpfs over an unreadable ancestor) can hide it: a prefix under ``/tmp`` (a
    checkout or virtualenv in a scratch directory) is bound back from its descriptor."""
    return {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in prefixes if os.path.isdir(p)}


def _expose(held):
    """``unshare`` level: make each held prefix readable at its own path for the run uid: a tmpfs
    hides an ancestor the run uid cannot traverse (e.g. /root), missing parents are made 0755 and
    the prefix is bound back read-only from its descriptor."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ms_rdonly, ms_remount, ms_bind, ms_rec = 1, 32, 4096, 16384
    for p, fd in sorted(held.items()):
        parts = p.strip("/").split("/")
        hidden = True
        for k in range(1, len(parts) + 1):
            anc = "/" + "/".join(parts[:k])
            try:
                mode = os.stat(anc).st_mode
            except FileNotFoundError:
                break  # hidden by the private /tmp: made below
            if mode & 0o005 != 0o005:
                if libc.mount(b"tmpfs", anc.encode(), b"tmpfs", 0, b"mode=755,size=1m,nr_inodes=1024") != 0:
                    raise OSError(ctypes.get_errno(), "tmpfs " + anc)
                break
        else:
            hidden = False
        if hidden:
            os.makedirs(p, 0o755, exist_ok=True)
            if libc.mount(f"/proc/self/fd/{fd}".encode(), p.encode(), None, ms_bind | ms_rec, None) != 0:
                raise OSError(ctypes.get_errno(), "bind " + p)
            libc.mount(None, p.encode(), None, ms_bind | ms_remount | ms_rdonly, None)
        os.close(fd)


def _private_tmp():
    """``unshare`` level: fresh size-limited tmpfs over the host's world-writable directories."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(d) and libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, b"mode=755,size=256m,nr_inodes=65536") != 0:
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


def _clear(path):
    """Delete a run's directory when it is small: True when it is gone. At most ``CLEAN_ENTRIES``
    entries and ``CLEAN_DEPTH`` levels are visited (by descriptor, so no path grows too long),
    so this is bounded whatever the run left; anything bigger is left to ``_retire``."""
    budget = [CLEAN_ENTRIES]

    def rm(dir_fd, name, depth):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            entries = []
            with os.scandir(fd) as it:
                for e in it:
                    budget[0] -= 1
                    if budget[0] < 0:
                        return False
                    entries.append((e.name, e.is_dir(follow_symlinks=False)))
            for sub, is_dir in entries:
                if not is_dir:
                    os.unlink(sub, dir_fd=fd)
                elif depth >= CLEAN_DEPTH or not rm(fd, sub, depth + 1):
                    return False
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
        return True

    try:
        parent = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            return rm(parent, os.path.basename(path), 0)
        finally:
            os.close(parent)
    except OSError:
        return False


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
    exit_code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else None
    sig = os.WTERMSIG(st) if os.WIFSIGNALED(st) else None
    if setup[:1] != b"R":
        return workdir, {"status": "setup_error", "error": setup[1:].decode("utf-8", "replace") or "child died in setup"}
    return workdir, {"status": _status(exit_code, sig, timed_out), "exit_code": exit_code, "signal": sig,
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
    held = _hold(cfg.get("expose_prefixes") or [])
    if cfg.get("private_tmp"):
        _private_tmp()
    _expose(held)
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
        workdir = None
        try:
            workdir, reply = _run(header, named, cfg, kernel)
        except Exception as e:  # noqa: BLE001 - report, keep serving
            reply = {"status": "setup_error", "error": f"worker: {type(e).__name__}: {e}"}
        ctl.send(json.dumps(reply).encode())
        # cleanup after the verdict went out: bounded, and a run that left more than it can
        # delete retires this worker (its private /tmp goes with its mount namespace)
        clean = workdir is None or _clear(workdir)
        ctl.send(json.dumps({"clean": clean}).encode())
        if not clean:
            break


if __name__ == "__main__":
    main()
