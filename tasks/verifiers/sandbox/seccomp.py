"""Seccomp filters for the sandbox, compiled to classic BPF here in pure Python (no libseccomp).

Two deny-list programs (``struct sock_filter`` arrays, the format the kernel and bubblewrap's
``--seccomp FD`` take):

* ``baseline_filter()`` - for the whole sandbox (bubblewrap installs it before it starts the
  worker): no sockets, ptrace or cross-process memory access, no SysV/POSIX IPC, no new
  namespaces, mounts, keyrings, BPF, perf, io_uring, userfaultfd, module or kexec calls.
* ``run_filter()`` - added by every run's child on top, just before the untrusted code starts:
  no new processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``; ``clone3`` answers
  ``ENOSYS`` so that glibc falls back to ``clone`` for threads, whose flags a filter can read),
  no ``execve``, no signals to any process, no ``TIOCSTI``, plus everything in the baseline.

A denied call fails with ``EPERM`` (the process lives on and sees an ordinary error); a call
made under a foreign ABI (x32 on x86_64, or any other architecture) kills the process. Only
x86_64 and aarch64 are known: elsewhere ``unsupported()`` says why and the ``bwrap`` level is
refused (fail closed). The syscall numbers are checked against the kernel headers in the tests.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["baseline_filter", "run_filter", "unsupported"]

# name: (x86_64, aarch64); None where the architecture has no such call
_NR: dict[str, tuple[int | None, int | None]] = {
    "socket": (41, 198), "socketpair": (53, 199), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "kcmp": (312, 272), "process_madvise": (440, 440),
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "semget": (64, 190), "semop": (65, 193),
    "semctl": (66, 191), "semtimedop": (220, 192), "msgget": (68, 186), "msgsnd": (69, 189),
    "msgrcv": (70, 188), "msgctl": (71, 187), "mq_open": (240, 180), "mq_unlink": (241, 181),
    "mq_timedsend": (242, 182), "mq_timedreceive": (243, 183), "mq_notify": (244, 184),
    "mq_getsetattr": (245, 185), "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40),
    "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51), "mount_setattr": (442, 442),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "bpf": (321, 280), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "acct": (163, 89), "quotactl": (179, 60), "quotactl_fd": (443, 443),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264), "iopl": (172, None),
    "ioperm": (173, None), "lookup_dcookie": (212, 18), "syslog": (103, 116), "vhangup": (153, 58),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266),
    "adjtimex": (159, 171), "sethostname": (170, 161), "setdomainname": (171, 162), "uselib": (134, None),
    "memfd_secret": (447, 447), "pidfd_getfd": (438, 438),
    # run filter only (the worker itself forks, waits on pidfds and kills its runs)
    "fork": (57, None), "vfork": (58, None), "execve": (59, 221), "execveat": (322, 281),
    "clone": (56, 220), "clone3": (435, 435), "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240), "pidfd_send_signal": (424, 424),
    "pidfd_open": (434, 434), "ioctl": (16, 29),
}
_RUN_ONLY = {"fork", "vfork", "execve", "execveat", "clone", "clone3", "kill", "tkill", "tgkill",
             "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal", "pidfd_open", "ioctl"}
_BASELINE = sorted(set(_NR) - _RUN_ONLY)
_ARCHES = {"x86_64": (0, 0xC000003E), "amd64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7), "arm64": (1, 0xC00000B7)}

# classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h)
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_KILL_PROCESS, _ALLOW = 0x80000000, 0x7FFF0000
_CLONE_THREAD, _TIOCSTI, _X32_BIT = 0x00010000, 0x5412, 0x40000000
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1 = 0, 4, 16, 24


def _errno(code: int) -> int:
    return 0x00050000 | code


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def unsupported() -> str | None:
    """Why no filter can be built for this machine (unknown architecture), or None."""
    machine = platform.machine().lower()
    return None if machine in _ARCHES else f"no seccomp syscall table for architecture {machine!r}"


def _program(names: list[str], *, run: bool) -> bytes:
    why = unsupported()
    if why:
        raise OSError(why)
    col, audit_arch = _ARCHES[platform.machine().lower()]
    nr = {name: _NR[name][col] for name in names if _NR[name][col] is not None}
    out = [_ins(_LD_ABS, 0, 0, _OFF_ARCH), _ins(_JEQ, 1, 0, audit_arch), _ins(_RET, 0, 0, _KILL_PROCESS),
           _ins(_LD_ABS, 0, 0, _OFF_NR)]
    if col == 0:  # x32 syscalls share the x86_64 audit arch: refuse the whole ABI
        out += [_ins(_JGE, 0, 1, _X32_BIT), _ins(_RET, 0, 0, _KILL_PROCESS)]
    special = {}
    if run:
        special = {nr.pop("clone"): (_OFF_ARG0, _CLONE_THREAD, False), nr.pop("ioctl"): (_OFF_ARG1, _TIOCSTI, True)}
        clone3 = nr.pop("clone3")
        out += [_ins(_JEQ, 0, 1, clone3), _ins(_RET, 0, 0, _errno(errno.ENOSYS))]
    for number in sorted(set(nr.values())):
        out += [_ins(_JEQ, 0, 1, number), _ins(_RET, 0, 0, _errno(errno.EPERM))]
    for number, (offset, value, deny_equal) in special.items():
        # if nr == number: load the argument; clone: allow iff CLONE_THREAD set; ioctl: deny iff == TIOCSTI
        test = _JEQ if deny_equal else _JSET
        out += [_ins(_JEQ, 0, 4, number), _ins(_LD_ABS, 0, 0, offset),
                _ins(test, 1, 0, value) if deny_equal else _ins(test, 0, 1, value),
                _ins(_RET, 0, 0, _ALLOW), _ins(_RET, 0, 0, _errno(errno.EPERM))]
    out.append(_ins(_RET, 0, 0, _ALLOW))
    return b"".join(out)


def baseline_filter() -> bytes:
    """The BPF program for the whole sandbox (see the module docstring)."""
    return _program(_BASELINE, run=False)


def run_filter() -> bytes:
    """The BPF program each run adds before the untrusted code starts."""
    return _program(sorted(_NR), run=True)
