"""The uids sandboxed runs get (root pools): a dedicated range, one fresh uid per run.

Default range: ``0x70000000`` to ``0x70FFFFFF`` (1,879,048,192 + 16,777,216 uids), above
systemd's container range (up to ``0x6FFFFFFF``) and the ``/etc/subuid`` blocks of ordinary
hosts, below 2^31 (no sign problems in tools). It is configurable (``code_reward`` params
``uid_base`` / ``uid_count``); ``range_problem`` refuses a range that holds any account or
group of this machine or overlaps an ``/etc/subuid`` / ``/etc/subgid`` allocation.

The range is cut into blocks of ``BLOCK`` uids. A worker holds one block, taken with an
exclusive ``flock`` on ``<lock dir>/<base>-<block>`` (a root-owned 0700 directory; the lock
goes when the holder dies), so no two workers of any process on this machine share a block,
and its runs take the block's uids in order: no uid repeats within a worker's lifetime (a
worker whose block runs out is replaced by one with a fresh block).
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import random
import stat
import tempfile
from dataclasses import dataclass

__all__ = ["BLOCK", "DEFAULT_UIDS", "UidBlock", "UidRange", "range_problem"]

BLOCK = 1 << 16
_LOCK_DIRS = ("/run/rlvr-sandbox-uids", os.path.join(tempfile.gettempdir(), f"rlvr-sandbox-uids-{os.geteuid()}"))


@dataclass(frozen=True)
class UidRange:
    base: int = 0x70000000
    count: int = 1 << 24


DEFAULT_UIDS = UidRange()


def _overlaps(lo: int, n: int, path: str) -> str | None:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            start, size = int(parts[1]), int(parts[2])
            if start < lo + n and lo < start + size:
                return f"overlaps {parts[0]}'s range {start}-{start + size - 1} in {path}"
    return None


def range_problem(r: UidRange) -> str | None:
    """Why the sandbox cannot use uids ``[base, base + count)`` on this machine, or None."""
    if r.base < 65536 or r.base + r.count > 2**31 - 1:
        return f"sandbox uid range {r.base}+{r.count} must lie within [65536, 2^31 - 1)"
    if r.count < BLOCK:
        return f"sandbox uid range must hold at least {BLOCK} uids, got {r.count}"
    users = [e for e in pwd.getpwall() if r.base <= e.pw_uid < r.base + r.count]
    groups = [e for e in grp.getgrall() if r.base <= e.gr_gid < r.base + r.count]
    if users or groups:
        name = users[0].pw_name if users else groups[0].gr_name
        return f"sandbox uid range {r.base}+{r.count} holds the account or group {name!r} of this machine"
    for path in ("/etc/subuid", "/etc/subgid"):
        if why := _overlaps(r.base, r.count, path):
            return f"sandbox uid range {r.base}+{r.count} {why}"
    return None


def _lock_dir() -> str:
    """A 0700 directory owned by us for the block locks; refuses symlinks and foreign owners."""
    for path in _LOCK_DIRS:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
            return path
    raise OSError(f"no safe directory for the sandbox uid locks (tried {', '.join(_LOCK_DIRS)})")


class UidBlock:
    """One block of the range, locked for this holder's lifetime; ``next()`` gives a fresh uid."""

    def __init__(self, r: UidRange):
        blocks = r.count // BLOCK
        lock_dir = _lock_dir()
        start = random.randrange(blocks)
        for k in range(blocks):
            b = (start + k) % blocks
            fd = os.open(os.path.join(lock_dir, f"{r.base}-{b}"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.fd, self.first, self.used = fd, r.base + b * BLOCK, 0
            return
        raise OSError(f"all {blocks} sandbox uid blocks of range {r.base}+{r.count} are in use")

    @property
    def exhausted(self) -> bool:
        return self.used >= BLOCK

    def next(self) -> int:
        if self.exhausted:
            raise OSError("sandbox uid block used up")
        self.used += 1
        return self.first + self.used - 1

    def release(self) -> None:
        """Give the block back (only once no process of its uids can be alive)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
