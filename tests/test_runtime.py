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


def test_working_copy_is_a_frozen_eval_copy_and_leaves_the_model_as_it_was():
    import torch
    from torch import nn

    from genrobust.errors import GenrobustError
    from genrobust.models import ConvClassifier, ConvClassifierConfig
    from genrobust.models.layers import ChannelsLast
    from genrobust.runtime import working_copy

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    copy = working_copy(net, "cpu")
    assert copy is not net and not copy.training and not any(m.training for m in copy.modules())
    assert not any(p.requires_grad for p in copy.parameters())
    assert net.training and all(p.requires_grad for p in net.parameters())  # the caller's model is untouched
    x = torch.randn(5, 4)
    assert torch.equal(copy(x), copy(x))  # eval mode: dropout is off
    with torch.no_grad():
        copy[0].weight.zero_()
    assert net[0].weight.abs().sum() > 0  # its own weights
    # ``fast``: the inference layout for genrobust's convolutional classifiers, one copy, frozen as well
    clf = ConvClassifier(ConvClassifierConfig(a=4, b=4, c=8)).train()
    fast = working_copy(clf, fast=True)
    assert isinstance(fast, ChannelsLast) and not fast.training and not any(p.requires_grad for p in fast.parameters())
    assert clf.training
    img = torch.rand(3, 1, 28, 28)
    assert torch.allclose(fast(img), working_copy(clf)(img), atol=1e-5)
    # NaN weights are refused, naming the model, only when asked (``finite``)
    with torch.no_grad():
        net[2].bias[0] = float("nan")
    working_copy(net)
    with pytest.raises(GenrobustError, match="the classifier has NaN or infinite weights"):
        working_copy(net, finite="classifier")
