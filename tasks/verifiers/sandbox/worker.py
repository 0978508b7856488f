"""Sandbox worker: a small, stdlib-only, pre-started process that runs untrusted code.

Started by ``tasks.verifiers.sandbox`` as ``python -I worker.py`` (inside bubblewrap or
``unshare`` when available). It reads length-prefixed JSON jobs on stdin and answers on stdout.
For every job it forks a child that: starts its own session/process group, dies with the
worker, gets a fresh throwaway working directory, runs under rlimits (CPU, address space, file
size, open files, processes, no core dumps), drops to an unprivileged per-worker uid when the
worker is root, clears the environment, installs an audit hook (no sockets, subprocesses,
forks, signals, ctypes, or writes/reads outside the allowed places) and then runs the code.
After the child ends (or its wall-clock deadline passes) every process it may have left is
killed and reaped, and the directory is deleted. Expected outputs never reach this process.
"""

import importlib.util
import json
import os
import select
import shutil
import signal
import struct
import sys
import tempfile
import time

_HDR = struct.Struct(">I")
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_rlvr_sandbox_child", os.path.join(_here, "child.py"))
_childmod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_childmod)
_child, _prctl, _PRELOAD = _childmod._child, _childmod._prctl, _childmod._PRELOAD


def _traversable(path):
    return os.stat(path).st_mode & 0o005 == 0o005


def _expose(prefixes):
    """In a private mount namespace (``unshare`` mode): hide each non-world-readable ancestor of
    the Python prefixes (e.g. /root) under a tmpfs and bind the prefixes back read-only, so the
    unprivileged run uid can import the whole standard library."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ms_rdonly, ms_remount, ms_bind, ms_rec = 1, 32, 4096, 16384
    groups = {}
    for p in prefixes:
        parts = p.strip("/").split("/")
        for k in range(1, len(parts)):
            anc = "/" + "/".join(parts[:k])
            if not _traversable(anc):
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


def _read_msg(stream):
    hdr = stream.read(_HDR.size)
    if len(hdr) < _HDR.size:
        return None
    return json.loads(stream.read(_HDR.unpack(hdr)[0]))


def _write_msg(stream, obj):
    data = json.dumps(obj).encode()
    stream.write(_HDR.pack(len(data)) + data)
    stream.flush()


# ----------------------------------------------------------------- worker side
def _kill_children():
    """SIGKILL every direct child of this worker (leftovers reparented to us, the subreaper)."""
    me = str(os.getpid()).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[1] == me:
                        os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def _procs():
    """``(pid, state, session, pgrp)`` of every process visible in /proc."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            yield int(entry), fields[0], int(fields[3]), int(fields[2])


def _kill_until_gone(select_pids):
    for _ in range(200):
        live = select_pids()
        if not live:
            return
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.0005)


def _only_zombies_left():
    """Reap finished children; True when this worker has no child left at all.

    We are a subreaper, so any process the run left behind is in our subtree and its topmost
    survivor is our direct child: no child at all means nothing was left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def _sweep(uid, sid, namespaced, subreaper=False):
    """Kill every process the run may have left and reap them all.

    In a PID namespace every process but ours (and pid 1) is a leftover, and listing /proc is
    cheap, so nothing is forked when nothing is left. Otherwise: by uid when dropped (kill(-1)
    from a helper running as that per-worker uid), else by session."""
    if subreaper and _only_zombies_left():
        return
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    me = os.getpid()
    if namespaced:
        _kill_until_gone(lambda: [p for p, st, _, _ in _procs() if p not in (1, me) and st != b"Z"])
    elif uid is not None:
        # kill(-1) as the run's uid reaches exactly this run's processes. Its return value cannot
        # tell whether anything was hit, so do a fixed two passes (the second catches forks in flight).
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgid(uid)
                    os.setuid(uid)
                    os.kill(-1, signal.SIGKILL)
                except BaseException:  # noqa: BLE001
                    pass
                os._exit(0)
            os.waitpid(pid, 0)
    else:
        _kill_until_gone(lambda: [p for p, st, ses, grp in _procs() if st != b"Z" and sid in (ses, grp)])
    # Reap the child and every orphan reparented to us (we are a subreaper) until none is left,
    # so that a run never leaves a process (not even a zombie) behind.
    deadline = time.monotonic() + 5.0
    waited = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                break
            waited += 1
            if waited % 20 == 0:
                _kill_children()
            time.sleep(0.0005)


def _run(job, cfg, wake_r):
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="run-", dir=cfg["root"])
    uid = cfg.get("uid")
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    stdin_file = tempfile.TemporaryFile(dir=cfg["root"])
    stdin_file.write(job.get("stdin", "").encode())
    stdin_file.seek(0)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(wake_r)
        _child(job, cfg, workdir, stdin_file.fileno(), out_w, err_w, res_w)
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    stdin_file.close()
    cap = job["max_output"]
    bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    open_fds = [out_r, err_r, res_r]
    deadline = t0 + job["timeout"]
    status, exit_code, sig = None, None, None
    while True:
        if exit_code is None and sig is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                exit_code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else None
                sig = os.WTERMSIG(st) if os.WIFSIGNALED(st) else None
        exited = exit_code is not None or sig is not None
        if exited and not open_fds:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        wait = min(remaining, 0.01) if exited else remaining
        ready, _, _ = select.select(open_fds + [wake_r], [], [], wait)
        if exited and not ready:
            break  # pipes held open by leftovers: stop listening
        for fd in ready:
            if fd == wake_r:
                os.read(wake_r, 4096)
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.remove(fd)
                continue
            bufs[fd] += chunk
            if fd == err_r:
                del bufs[fd][:-4000]
            elif len(bufs[fd]) > cap:
                status = "output_limit"
        if status:
            break
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _sweep(uid, pid, cfg.get("namespaced", False), cfg.get("subreaper", False))
    if exit_code is None and sig is None:
        sig = signal.SIGKILL
    for fd in (out_r, err_r, res_r):
        os.close(fd)
    shutil.rmtree(workdir, ignore_errors=True)
    if status is None:
        status = "ok" if exit_code == 0 else ("signal" if sig else "error")
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and time.monotonic() - t0 >= job["timeout"]):
            status = "timeout"
    return {
        "status": status,
        "exit_code": exit_code,
        "signal": sig,
        "stdout": bytes(bufs[out_r][:cap]).decode("utf-8", "replace"),
        "stderr_tail": bytes(bufs[err_r][-2000:]).decode("utf-8", "replace"),
        "results": bytes(bufs[res_r][:cap]).decode("utf-8", "replace"),
        "elapsed": time.monotonic() - t0,
    }


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    cfg = _read_msg(stdin)
    if cfg is None:
        return
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with whoever started us
    # PR_SET_CHILD_SUBREAPER: orphans of a run come back to us for the sweep
    cfg["subreaper"] = _prctl(36, 1) == 0
    import os.path as osp

    if cfg.get("expose_prefixes"):
        try:
            _expose(cfg["expose_prefixes"])
        except Exception:  # noqa: BLE001 - fall back to the preloaded modules
            pass
    for name in _PRELOAD:  # importable in the child even where the uid drop cannot read the prefix
        try:
            __import__(name)
        except Exception:  # noqa: BLE001
            pass
    cfg["read_roots"] = sorted({osp.realpath(p) for p in sys.path if p and osp.isdir(p)}) + [
        "/dev/null", "/dev/urandom", "/dev/zero", "/usr/share/zoneinfo", "/etc/localtime"]
    os.makedirs(cfg["root"], exist_ok=True)
    os.chmod(cfg["root"], 0o711)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _write_msg(stdout, {"ready": True, "pid": os.getpid(), "uid": cfg.get("uid")})
    while True:
        job = _read_msg(stdin)
        if job is None:
            break
        try:
            reply = _run(job, cfg, wake_r)
        except Exception as e:  # noqa: BLE001 - report, keep serving
            reply = {"status": "sandbox_error", "error": repr(e)}
        _write_msg(stdout, reply)
    shutil.rmtree(cfg["root"], ignore_errors=True)


if __name__ == "__main__":
    main()
