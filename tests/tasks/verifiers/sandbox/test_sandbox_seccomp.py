"""The seccomp programs: syscall numbers match the kernel headers, and the kernel enforces them."""

import re
import struct
from pathlib import Path

import pytest

from tasks.verifiers.sandbox import RunLimits, get_pool
from tasks.verifiers.sandbox.seccomp import (
    _NR,
    baseline_filter,
    run_filter,
    unsupported,
)

HEADERS = {"x86_64": (0, Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")),
           "aarch64": (1, Path("/usr/include/asm-generic/unistd.h"))}  # arm64 uses the generic table
LIMITS = RunLimits(timeout=5.0, audit=False)


def _header_numbers(path: Path) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR(?:3264)?_(\w+)\s+(\d+)", path.read_text())}


@pytest.mark.parametrize("arch", sorted(HEADERS))
def test_syscall_table_matches_the_kernel_headers(arch):
    col, header = HEADERS[arch]
    numbers = _header_numbers(header)
    wrong = {name: (nrs[col], numbers.get(name)) for name, nrs in _NR.items()
             if nrs[col] is not None and numbers.get(name) != nrs[col]}
    assert not wrong


def test_programs_check_the_architecture_first_and_end_in_allow():
    assert unsupported() is None
    for prog in (baseline_filter(), run_filter()):
        ins = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
        assert ins[0] == (0x20, 0, 0, 4)  # load seccomp_data.arch
        assert ins[2] == (0x06, 0, 0, 0x80000000)  # foreign architecture: kill the process
        assert ins[-1] == (0x06, 0, 0, 0x7FFF0000)
    assert len(run_filter()) > len(baseline_filter())


def _run(code: str) -> dict:
    return get_pool(2, "bwrap").run({"mode": "io", "code": code}, LIMITS)


def test_the_kernel_refuses_new_processes_exec_signals_and_sockets_but_allows_threads():
    code = (
        "import ctypes, os, socket, threading\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def err(fn):\n    ctypes.set_errno(0)\n    r = fn()\n    return r, ctypes.get_errno()\n"
        "print(err(lambda: libc.syscall(57)))\n"  # fork
        "print(err(lambda: libc.syscall(56, 17, 0, 0, 0, 0)))\n"  # clone(SIGCHLD): a new process
        "print(err(lambda: libc.syscall(435, 0, 0)))\n"  # clone3: ENOSYS, so glibc uses clone for threads
        "print(err(lambda: libc.syscall(59, b'/bin/true', 0, 0)))\n"  # execve
        "print(err(lambda: libc.syscall(62, os.getppid(), 9)))\n"  # kill the worker
        "print(err(lambda: libc.syscall(41, 2, 1, 0)))\n"  # socket
        "print(err(lambda: libc.syscall(29, 1, 4096, 0o1666)))\n"  # shmget
        "print(err(lambda: libc.syscall(272, 0x10000000)))\n"  # unshare(CLONE_NEWUSER)
        "t = threading.Thread(target=print, args=('thread ran',))\nt.start()\nt.join()\n")
    reply = _run(code)
    assert reply["status"] == "ok", reply["stderr_tail"]
    lines = reply["stdout"].splitlines()
    assert lines[:8] == ["(-1, 1)", "(-1, 1)", "(-1, 38)", "(-1, 1)", "(-1, 1)", "(-1, 1)", "(-1, 1)", "(-1, 1)"]
    assert lines[8] == "thread ran"


def test_a_foreign_syscall_abi_kills_the_run():
    reply = _run("import ctypes\nctypes.CDLL(None).syscall(0x40000000 | 39)\nprint('survived')")  # x32 getpid
    assert reply["status"] == "signal" and "survived" not in reply["stdout"]


@pytest.mark.parametrize("ioctl_cmd, allowed", [(0x5412, False), (0x100005412, False), (0x5401, True)])
def test_tiocsti_is_refused_whatever_the_high_bits(ioctl_cmd, allowed):
    reply = _run(f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall(16, 0, ctypes.c_ulong({ioctl_cmd}), 0)\n"
                 "print(ctypes.get_errno())")
    assert reply["status"] == "ok"
    assert (reply["stdout"].strip() != "1") == allowed  # EPERM only from the filter (else ENOTTY)
