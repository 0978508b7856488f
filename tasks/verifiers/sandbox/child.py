"""Child side of the sandbox: runs in the forked process, applies the limits, runs the code.

Loaded by ``worker.py`` from its own directory by file path (never via ``sys.path``,
so nothing here can shadow a standard-library module for the solution). Stdlib only.
"""

import json
import os
import resource
import signal
import sys
import tempfile
import traceback

_BLOCKED_EVENTS = (
    "socket.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "subprocess.", "pty.", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.", "mmap.",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.remote_exec", "os.setuid",
    "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "os.startfile",
)
_BLOCKED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess"}
_PRELOAD = (
    "collections", "collections.abc", "heapq", "bisect", "itertools", "functools", "math", "cmath", "re",
    "string", "fractions", "decimal", "statistics", "random", "typing", "dataclasses", "copy", "operator",
    "array", "datetime", "json", "enum", "abc", "io", "struct", "textwrap", "unicodedata", "queue",
    "hashlib", "base64", "numbers", "contextlib", "types", "threading", "pprint", "difflib", "calendar",
    "socket", "inspect", "time", "sys", "os", "traceback", "warnings", "weakref", "zlib", "binascii",
)
_PATH_EVENTS = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
    "os.symlink", "os.truncate", "os.utime", "os.chflags", "os.mkfifo", "os.mknod", "shutil.rmtree",
    "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move", "os.chdir",
}


def _load_prctl():
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).prctl
        fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        return fn
    except Exception:  # noqa: BLE001 - no prctl: best effort
        return None


_PRCTL = _load_prctl()  # resolved once in the worker: a fresh dlopen per child costs milliseconds


def _prctl(option, arg):
    """prctl(2); returns its result (-1 when unavailable)."""
    if _PRCTL is None:
        return -1
    return _PRCTL(option, arg, 0, 0, 0)


def _encode(v, depth=0, budget=None):
    """Tagged JSON of a value made only of exact builtin types (no user __eq__/__repr__ runs)."""
    if budget is None:
        budget = [20000]
    budget[0] -= 1
    if depth > 40 or budget[0] < 0:
        raise ValueError("value too large")
    t = type(v)
    if v is None:
        return ["n"]
    if t is bool:
        return ["b", int(v)]
    if t is int:
        s = int.__repr__(v)
        if len(s) > 5000:
            raise ValueError("int too large")
        return ["i", s]
    if t is float:
        return ["f", float.__repr__(v)]
    if t is complex:
        return ["c", float.__repr__(v.real), float.__repr__(v.imag)]
    if t is str:
        return ["s", str.__str__(v)]
    if t is bytes:
        return ["y", bytes.hex(v)]
    if t in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
        return [tag, [_encode(x, depth + 1, budget) for x in t.__iter__(v)]]
    if t is dict:
        return ["d", [[_encode(k, depth + 1, budget), _encode(x, depth + 1, budget)] for k, x in dict.items(v)]]
    raise TypeError("not a plain builtin value: " + t.__name__)


def _make_hook(workdir, read_roots):
    import os.path as osp

    workdir = osp.realpath(workdir)
    busy = [False]

    def inside(path, roots):
        if isinstance(path, int):
            return True
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if not isinstance(path, str):
            return False
        real = osp.realpath(osp.join(workdir, path))
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    def hook(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            if event.startswith(_BLOCKED_EVENTS):
                raise PermissionError("sandbox: " + event + " is not allowed")
            if event == "import" and args[0].split(".")[0] in _BLOCKED_IMPORTS:
                raise PermissionError("sandbox: import of " + args[0] + " is not allowed")
            if event == "open":
                path, mode = args[0], args[1]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                roots = (workdir, "/dev/null") if writing else read_roots
                if not inside(path, roots):
                    raise PermissionError("sandbox: open of " + str(path) + " is not allowed")
            elif event in _PATH_EVENTS:
                for a in args[:2]:
                    if isinstance(a, (str, bytes)) and not inside(a, (workdir,)):
                        raise PermissionError("sandbox: " + event + " outside the working directory")
        finally:
            busy[0] = False

    return hook


def _child(job, cfg, workdir, stdin_fd, out_w, err_w, res_w):
    """Runs in the forked child; never returns."""
    try:
        signal.set_wakeup_fd(-1)  # the worker's wake-up pipe is not ours
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(res_w, 3)
        os.closerange(4, 1 << 16)
        os.chdir(workdir)
        cpu = int(job["timeout"]) + 1
        limits = [
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_AS, job["memory_mb"] << 20, job["memory_mb"] << 20),
            (resource.RLIMIT_FSIZE, job["fsize_mb"] << 20, job["fsize_mb"] << 20),
            (resource.RLIMIT_NOFILE, job["nofile"], job["nofile"]),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        uid = cfg.get("uid")
        if uid is not None:
            limits.append((resource.RLIMIT_NPROC, job["nproc"], job["nproc"]))
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"})
        tempfile.tempdir = workdir
        import io

        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace")
        res = io.FileIO(3, "w", closefd=False)
        for name in list(sys.modules):
            if name.split(".")[0] in _BLOCKED_IMPORTS:
                del sys.modules[name]
        if job.get("audit", True):
            sys.addaudithook(_make_hook(workdir, cfg["read_roots"] + [workdir]))
    except BaseException:  # noqa: BLE001 - setup failure: report and die
        os._exit(70)
    code = 0
    try:
        if job["mode"] == "io":
            ns = {"__name__": "__main__", "__builtins__": __builtins__}
            exec(compile(job["code"], "<solution>", "exec"), ns)
        else:
            ns = {"__name__": "__solution__", "__builtins__": __builtins__}
            exec(compile(job["code"], "<solution>", "exec"), ns)
            for si, step in enumerate(job["steps"]):
                if "exec" in step:
                    exec(compile(step["exec"], "<test>", "exec"), ns)
                    continue
                for li, src in enumerate(step["eval"]):
                    try:
                        line = json.dumps([si, li, _encode(eval(compile(src, "<test>", "eval"), ns))])
                    except BaseException as e:  # noqa: BLE001
                        if isinstance(e, (SystemExit, KeyboardInterrupt)):
                            raise
                        line = json.dumps([si, li, ["E", type(e).__name__]])
                    res.write((line + "\n").encode())
            res.write(b'"done"\n')
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001
        code = 1
        try:
            traceback.print_exc(limit=-3)
        except BaseException:  # noqa: BLE001
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(code & 0xFF)
