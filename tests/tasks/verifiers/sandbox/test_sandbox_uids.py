"""The run uid range: refused where it could collide, blocks exclusive, uids never repeat."""

import os
import stat

import pytest

from tasks.verifiers.sandbox import uids
from tasks.verifiers.sandbox.uids import BLOCK, UidBlock, UidRange, range_problem


def test_the_default_range_is_free_here():
    assert range_problem(UidRange()) is None


@pytest.mark.parametrize("r, why", [
    (UidRange(base=1000, count=1 << 20), "within"),
    (UidRange(base=2**31 - 100, count=1 << 20), "within"),
    (UidRange(base=1 << 24, count=100), "at least"),
])
def test_bad_ranges_are_refused(r, why):
    assert why in range_problem(r)


def test_a_subuid_allocation_in_the_range_is_a_collision(tmp_path):
    subuid = tmp_path / "subuid"
    subuid.write_text(f"alice:{UidRange.base + 5 * BLOCK}:65536\n")
    assert "alice" in uids._overlaps(UidRange.base, UidRange.count, str(subuid))
    assert uids._overlaps(UidRange.base + UidRange.count, 1 << 20, str(subuid)) is None


def test_blocks_are_exclusive_and_uids_fresh():
    r = UidRange(base=UidRange.base + UidRange.count, count=2 * BLOCK)  # no pool of this session uses it
    a, b = UidBlock(r), UidBlock(r)
    try:
        assert {a.first, b.first} == {r.base, r.base + BLOCK}
        with pytest.raises(OSError, match="in use"):
            UidBlock(r)
        seen = [a.next() for _ in range(1000)]
        assert len(set(seen)) == 1000 and all(a.first <= u < a.first + BLOCK for u in seen)
    finally:
        a.release()
    c = UidBlock(r)  # a released block can be taken again, from its first uid
    try:
        assert c.first == a.first and c.next() == a.first
    finally:
        b.release()
        c.release()


def test_the_lock_directory_is_private():
    st = os.lstat(uids._lock_dir())
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0
