"""Isolation levels: the command that starts a worker under each, and what each one needs.

* ``bwrap`` (the default) - bubblewrap: own PID, network, IPC, UTS and mount namespaces (and a
  user namespace when not root), a filesystem of read-only binds of only ``/usr``, the library
  dirs, the Python installation and the three sandbox files, a private size-limited tmpfs
  ``/tmp``, fresh ``/proc`` and ``/dev``, ``--clearenv`` plus a minimal env, ``--die-with-parent``,
  the baseline seccomp filter (``seccomp.py``) and, as root, only the capabilities the worker
  needs to drop each run to its own uid, kill and clean up.
* ``unshare`` - util-linux ``unshare`` (root only): own network, PID, IPC, UTS and mount
  namespaces, but the host filesystem stays visible (only DAC on the run's own uid protects it).
* ``rlimits`` - no namespaces (root only): the run's uid, rlimits and seccomp filter only.

Every level starts its worker with ``MIN_ENV`` only (nothing of the caller's environment), and
every run gets its own uid (root), rlimits and the run seccomp filter. The weaker levels are
used only when a recipe names them (``isolation: unshare`` / ``rlimits``); nothing falls back.
"""

from __future__ import annotations

import os
import shutil
import sys

from tasks.verifiers.sandbox import seccomp

__all__ = ["BROKEN_HINT", "INSTALL_HINT", "LEVELS", "MIN_ENV", "SANDBOX_FILES", "prerequisite_problem",
           "worker_command"]

LEVELS = ("bwrap", "unshare", "rlimits")
MIN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
WEAKER_HINT = "or opt into a weaker level by name in the recipe: code_reward params isolation: unshare or rlimits"
INSTALL_HINT = f"install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap; `make install` does it), {WEAKER_HINT}"
BROKEN_HINT = ("the level is installed but cannot isolate here (a container may forbid the namespaces it needs: "
               f"allow them, e.g. unprivileged user namespaces or a privileged container), {WEAKER_HINT}")
HERE = os.path.dirname(os.path.abspath(__file__))
SANDBOX_FILES = ("worker.py", "child.py", "wire.py")
TMPFS_BYTES = 256 << 20
_WORKER_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def python() -> str:
    return os.path.realpath(sys.executable)


def prerequisite_problem(level: str) -> str | None:
    """Why ``level`` cannot work on this machine, judged without starting anything, or None."""
    if level not in LEVELS:
        return f"unknown isolation level {level!r} (valid: {', '.join(LEVELS)})"
    if why := seccomp.unsupported():
        return f"code sandbox: {why}; the sandbox refuses to run untrusted code without its seccomp filter"
    if level == "bwrap" and not shutil.which("bwrap"):
        return f"code sandbox: isolation 'bwrap' needs bubblewrap, which is not installed: {INSTALL_HINT}"
    if level != "bwrap" and os.geteuid() != 0:
        return (f"code sandbox: isolation {level!r} needs root (each run drops to its own uid); "
                "as another user only 'bwrap' (user namespaces) isolates the code")
    if level == "unshare" and not shutil.which("unshare"):
        return "code sandbox: isolation 'unshare' needs util-linux unshare, which is not installed"
    return None


def _python_binds() -> list[str]:
    cmd: list[str] = []
    made: set[str] = set()
    for p in sorted({sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(python()))}):
        if p.startswith("/usr"):
            continue
        parts = p.strip("/").split("/")
        for k in range(1, len(parts)):  # parents bwrap would otherwise create as 0700
            parent = "/" + "/".join(parts[:k])
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", p, p]
    return cmd


def _bwrap(control_fd: int, seccomp_fd: int) -> list[str]:
    cmd = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv", "--hostname", "sandbox"]
    for k, v in MIN_ENV.items():
        cmd += ["--setenv", k, v]
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL"] + [a for cap in _WORKER_CAPS for a in ("--cap-add", cap)]
    else:
        cmd += ["--unshare-user", "--disable-userns"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for d in ("bin", "lib", "lib64", "sbin", "lib32", "libx32"):
        p = f"/{d}"
        if os.path.islink(p):
            cmd += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            cmd += ["--ro-bind", p, p]
    cmd += _python_binds()
    for p in ("/etc/ld.so.cache", "/etc/localtime"):
        cmd += ["--ro-bind-try", p, p]
    for name in SANDBOX_FILES:
        cmd += ["--ro-bind", os.path.join(HERE, name), f"/opt/rlvr/{name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
            "--seccomp", str(seccomp_fd), "--chdir", "/", python(), "-I", "/opt/rlvr/worker.py", str(control_fd)]
    return cmd


def worker_command(level: str, control_fd: int, seccomp_fd: int) -> list[str]:
    """The argv that starts a worker under ``level`` (``seccomp_fd`` is read by bwrap only)."""
    worker = os.path.join(HERE, "worker.py")
    if level == "bwrap":
        return _bwrap(control_fd, seccomp_fd)
    if level == "unshare":
        return [shutil.which("unshare") or "unshare", "--net", "--pid", "--ipc", "--uts", "--mount", "--mount-proc", "--fork", "--kill-child",
                python(), "-I", worker, str(control_fd)]
    return [python(), "-I", worker, str(control_fd)]
