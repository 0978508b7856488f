"""Child side of the sandbox: the forked process that locks itself down and runs one job. Stdlib only.

Loaded by ``worker.py`` by file path (never via ``sys.path``, so nothing here can shadow a
standard-library module for the solution). ``start`` runs in the fresh fork and never returns:

1. own session; dies with the worker; the descriptors it was handed land on fixed numbers
   (0 stdin, 1 stdout, 2 stderr, 3 results, 4 job, 5/6 channel in/out, 7 setup status) and
   every other descriptor is closed, so nothing of the worker is reachable;
2. working directory, rlimits (CPU, address space, file size, open files, processes, no core);
3. drop to the run's own uid/gid with no supplementary groups (root pools);
4. ``no_new_privs`` and the run's seccomp filter (``seccomp.run_filter``): from here on the
   kernel refuses new processes, ``execve``, signals, sockets, IPC and the rest;
5. a minimal environment, then "ready" on the status pipe, which is closed before any untrusted
   code runs: a solution cannot fake a sandbox failure or a success.

Modes: ``io`` (a program on stdin/stdout), ``eval`` (evaluate the solution-side parts of split
asserts, values to fd 3), ``serve`` (answer a test process's calls on the channel) and ``test``
(run test code whose unknown names are proxies for the solution process; verdict to fd 3).
An audit hook is added as defence in depth only: it runs in the untrusted process, so it is no
boundary (a solution can switch it off); the OS mechanisms above are.
"""

import builtins
import importlib.util
import io
import json
import os
import resource
import signal
import sys
import traceback

_spec = importlib.util.spec_from_file_location("_rlvr_sandbox_wire", os.path.join(os.path.dirname(__file__), "wire.py"))
wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire)

STATUS_FD = 7
_BLOCKED_EVENTS = ("socket.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                   "subprocess.", "pty.", "os.kill", "os.killpg", "ctypes.", "sys.remote_exec")


def _hook(event, args):
    """Defence in depth only (see the module docstring)."""
    if event.startswith(_BLOCKED_EVENTS):
        raise PermissionError("sandbox: " + event + " is not allowed")


def _fail(msg):
    try:
        os.write(STATUS_FD, b"E" + msg.encode("utf-8", "replace")[:2000])
    finally:
        os._exit(70)


def _lock_down(header, fds, status_w, workdir, seccomp):
    import fcntl

    os.setsid()
    high = {name: fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for name, fd in {**fds, "status": status_w}.items()}
    places = {"stdin": 0, "stdout": 1, "stderr": 2, "results": 3, "job": 4, "chan_in": 5, "chan_out": 6,
              "status": STATUS_FD}
    for name, target in places.items():
        if name in high:
            os.dup2(high[name], target)
        else:
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, target)
    os.closerange(STATUS_FD + 1, 1 << 20)
    os.chdir(workdir)
    cpu = int(header["timeout"]) + 1
    uid = header.get("uid")
    limits = [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, header["memory_mb"] << 20),
              (resource.RLIMIT_FSIZE, header["fsize_mb"] << 20), (resource.RLIMIT_NOFILE, header["nofile"]),
              (resource.RLIMIT_CORE, 0)]
    if uid is not None:  # counted per uid: only meaningful for the run's own uid
        limits.append((resource.RLIMIT_NPROC, header["nproc"]))
    for which, soft, *hard in limits:
        resource.setrlimit(which, (soft, hard[0] if hard else soft))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise OSError("uid drop did not take")
    seccomp.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (a credential change clears it, so after the drop)
    if os.getppid() != header["worker_pid"]:
        raise OSError("the worker is gone")
    if not seccomp.install():
        raise OSError("seccomp filter could not be installed")
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"})


def start(header, fds, status_w, workdir, seccomp):
    """Lock this fresh fork down and run the job (see the module docstring); never returns."""
    try:
        _lock_down(header, fds, status_w, workdir, seccomp)
        import tempfile

        tempfile.tempdir = os.getcwd()
        with os.fdopen(4, "rb") as f:
            job = json.loads(f.read())
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace")
        if header.get("audit", True):
            sys.addaudithook(_hook)
        os.write(STATUS_FD, b"R")
        os.close(STATUS_FD)
    except BaseException as e:  # noqa: BLE001 - setup failure: report it, never run the code
        _fail(f"{type(e).__name__}: {e}")
    code = 0
    try:
        _MODES[job["mode"]](job)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # the child reports every failure, SystemExit included, to its parent
        code = 1
        try:
            traceback.print_exc(limit=-3)
        except BaseException:  # the child reports every failure, SystemExit included, to its parent
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the child reports every failure, SystemExit included, to its parent
            pass
    os._exit(code & 0xFF)


def _solution_ns(job, name):
    ns = {"__name__": name, "__builtins__": builtins}
    exec(compile(job["code"], "<solution>", "exec"), ns)
    return ns


def _io(job):
    _solution_ns(job, "__main__")


def _eval(job):
    ns = _solution_ns(job, "__solution__")
    res = io.FileIO(3, "w", closefd=False)
    for si, step in enumerate(job["steps"]):
        if "exec" in step:
            exec(compile(step["exec"], "<test>", "exec"), ns)
            continue
        for li, src in enumerate(step["eval"]):
            try:
                line = json.dumps([si, li, wire.encode(eval(compile(src, "<test>", "eval"), ns))])
            except Exception as e:  # noqa: BLE001 - reported as an error value, judged outside
                line = json.dumps([si, li, ["E", type(e).__name__]])
            res.write((line + "\n").encode())
    res.write(b'"done"\n')


def _serve(job):
    """Solution side of a proxied test: answer ``g`` (global), ``c`` (call), ``a`` (attribute)."""
    ns = _solution_ns(job, "__solution__")
    handles = []
    limit = job["max_frame"]

    def resolve(ref):
        if ref[0] == "g":
            if ref[1] not in ns:
                raise NameError(f"name {ref[1]!r} is not defined by the solution")
            return ns[ref[1]]
        return handles[int(ref[1])]

    def arg(tagged):
        if tagged[0] != "r":
            raise ValueError("bad argument")
        return resolve(tagged[1])

    def reply(value):
        try:
            return ["v", wire.encode(value)]
        except wire.Unencodable:
            handles.append(value)
            return ["h", len(handles) - 1]

    while True:
        try:
            req = wire.recv_frame(5, limit)
        except EOFError:
            return
        try:
            if req[0] == "g":
                out = reply(resolve(["g", req[1]]))
            elif req[0] == "c":
                out = reply(resolve(req[1])(*wire.decode(req[2], other=arg), **wire.decode(req[3], other=arg)))
            else:
                out = reply(getattr(resolve(req[1]), str(req[2])))
        except Exception as e:  # noqa: BLE001 - the test side sees the exception's type name only
            out = ["E", type(e).__name__ if type(e).__module__ == "builtins" else "Exception"]
        wire.send_frame(6, out)


class _Remote:
    """A value that lives in the solution's process: calls and attributes go over the channel."""

    __slots__ = ("_ref",)

    def __init__(self, ref):
        object.__setattr__(self, "_ref", ref)

    def __call__(self, *args, **kwargs):
        return _ask(["c", self._ref, _send_value(list(args)), _send_value(kwargs)])

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _ask(["a", self._ref, name])

    def __repr__(self):
        return f"<solution object {self._ref!r}>"


def _send_value(v):
    def other(x):
        if type(x) is _Remote:
            return ["r", x._ref]
        raise TypeError(f"cannot pass a {type(x).__name__} to the solution (plain data only)")

    return wire.encode(v, other=other)


_LIMIT = [1 << 20]
# the only exception types a solution's exception is raised as in the test process: ordinary
# errors a test may expect. Control-flow exceptions (StopIteration ending an ``all(map(...))``
# early, GeneratorExit, ...) and everything else come back as RuntimeError, which no test expects.
_RERAISED = {e.__name__: e for e in (
    ArithmeticError, AttributeError, IndexError, KeyError, LookupError, NameError,
    NotImplementedError, OverflowError, RecursionError, TypeError, UnicodeError, ValueError, ZeroDivisionError)}


def _exchange(req):
    wire.send_frame(6, req)
    reply = wire.recv_frame(5, _LIMIT[0])
    return reply[0], reply[1:]


def _ask(req):
    kind, rest = _exchange(req)
    if kind == "v":
        return wire.decode(rest[0])
    if kind == "h":
        return _Remote(["h", int(rest[0])])
    exc = _RERAISED.get(str(rest[0]), RuntimeError)
    raise exc("raised by the solution")


class _SolutionNames(dict):
    """Builtins for the test code: a name neither the test nor Python defines is the solution's."""

    def __missing__(self, name):
        kind, rest = _exchange(["g", name])
        if kind == "v":
            return wire.decode(rest[0])
        if kind == "h":
            remote = self[name] = _Remote(["g", name])
            return remote
        raise NameError(f"name {name!r} is not defined")


def _test(job):
    _LIMIT[0] = job["max_frame"]
    ns = {"__name__": "__test__", "__builtins__": _SolutionNames(builtins.__dict__)}
    exec(compile(job["code"], "<test>", "exec"), ns)
    if job.get("entry_point"):
        ns["check"](_Remote(["g", job["entry_point"]]))
    os.write(3, b"pass")


_MODES = {"io": _io, "eval": _eval, "serve": _serve, "test": _test}
