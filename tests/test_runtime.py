"""Runtime plumbing: giving the heap's free pages back (the verifier's peak memory)."""

import os

import pytest

from genrobust.runtime import _glibc, release_heap


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_release_heap_returns_holes_to_the_system():
    # 64 KB blocks come from the heap (below the mmap threshold); freeing every other one leaves holes that
    # the heap cannot shrink away from its top, the pattern the bound engine's temporaries leave behind.
    blocks = [bytearray(os.urandom(16)) * 4096 for _ in range(4096)]  # 256 MB, every page touched
    del blocks[::2]
    libc = _glibc()
    free_before = libc.mallinfo2().fordblks
    assert free_before > 100 << 20
    assert not release_heap(threshold_bytes=free_before + (1 << 30))  # under the threshold: nothing done
    resident = _resident_bytes()
    assert release_heap(threshold_bytes=64 << 20)
    assert _resident_bytes() < resident - (64 << 20)  # the holes' pages left the process
    assert len(blocks) == 2048 and all(len(b) == 65536 for b in blocks)  # the live blocks are untouched
