"""Runs of one recipe into one runs dir may start together (a schedule and a UI click): what one
of them is producing, the others wait for and then reuse.

    with file_lock(out_dir.with_suffix(".lock"), waiting="another run is producing sft"):
        ...

An OS advisory lock (`flock`) on a file beside the protected path: the kernel releases it when
its holder exits, SIGKILL included, so a killed run never leaves a stale lock behind, and the
next run finds the directory as the killed one left it (and resumes from its checkpoints).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: str | Path, waiting: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if absent); blocks while another process holds
    it, logging `waiting` once when it has to wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info("%s: waiting for it to finish", waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def try_lock(path: str | Path) -> Iterator[bool]:
    """Hold the lock on `path` if no live process holds it (this one included): yields whether
    it got it. A missing file means its holder is gone: True."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
