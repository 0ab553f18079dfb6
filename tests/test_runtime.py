"""Runtime plumbing: giving the heap's free pages back (the verifier's peak memory), atomic cache writes."""

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


def test_write_atomic_leaves_the_old_file_or_the_whole_new_one(tmp_path, monkeypatch):
    """Caches of long runs are written through ``write_atomic``: a failure (a kill, a full disk) at any point
    before the rename leaves the old file as it was and no temporary file beside it."""
    from genrobust import runtime

    path = tmp_path / "sub" / "cache.json"
    runtime.write_atomic(path, "old")  # the folder is created
    runtime.write_atomic(path, "new")
    assert path.read_text() == "new"

    def fail(name: str):
        def raise_(*args):
            raise OSError(f"{name} failed")

        return raise_

    for broken in ("fsync", "replace"):
        with monkeypatch.context() as m:
            m.setattr(os, broken, fail(broken))
            with pytest.raises(OSError, match=broken):
                runtime.write_atomic(path, "torn")
        assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["cache.json"]
