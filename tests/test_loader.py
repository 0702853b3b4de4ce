"""jpegnet.data.loader: batches, determinism from (seed, epoch, index), resume positions and the
DistributedSampler."""
from __future__ import annotations

import pytest
import torch

from jpegnet.data import JpegFolder, create_loader

from .data_helpers import folder  # noqa: F401  (folder: a fixture)


def test_loader_batches(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=(32, 48))
    loader = create_loader(ds, 4, shuffle=True, num_threads=2)
    assert len(loader) == 2
    batches = list(loader)
    assert [b[1].shape[0] for b in batches] == [4, 2]
    (y, cbcr), target = batches[0]
    assert y.shape == (4, 64, 4, 6) and cbcr.shape == (4, 128, 2, 3)
    assert y.dtype == cbcr.dtype == torch.float32 and target.dtype == torch.int64
    assert y.is_contiguous(memory_format=torch.channels_last)
    seen = sorted(int(t) for b in batches for t in b[1])
    assert seen == sorted(t for _, t in ds.samples)
    assert len(create_loader(ds, 4, drop_last=True)) == 1


def test_determinism_epochs_and_resume(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    a = create_loader(ds, 2, shuffle=True, seed=5)
    b = create_loader(ds, 2, shuffle=True, seed=5, num_threads=1, prefetch=0)
    a.set_epoch(3)
    b.set_epoch(3)
    first = list(a)
    second = list(b)
    for (xa, ta), (xb, tb) in zip(first, second):
        assert torch.equal(ta, tb) and torch.equal(xa[0], xb[0]) and torch.equal(xa[1], xb[1])
    a.set_epoch(4)
    other = list(a)
    assert any(not torch.equal(x[0][0], y[0][0]) for x, y in zip(first, other))
    # resume mid-epoch: the tail of epoch 3, bit for bit
    b.set_epoch(3, start_batch=1)
    tail = list(b)
    assert len(tail) == len(first) - 1
    for (xa, ta), (xb, tb) in zip(first[1:], tail):
        assert torch.equal(ta, tb) and torch.equal(xa[0], xb[0])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_position_counts_a_left_out_all_bad_batch(folder, prefetch):
    """A batch whose files are all unreadable is left out; the loader's position still counts it, so resuming
    at a position (what the trainer stores) gives exactly the rest of the epoch."""
    bad_class = folder / "aaa_broken"  # sorts first: with no shuffle, batch 0 holds both broken files
    bad_class.mkdir()
    (bad_class / "a.jpg").write_bytes(b"not a jpeg")
    (bad_class / "b.jpg").write_bytes(b"")
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    loader = create_loader(ds, 2, seed=1, prefetch=prefetch, num_threads=1)
    loader.set_epoch(0)
    positions, batches = [], []
    for batch in loader:
        positions.append(loader.position)
        batches.append(batch)
    assert positions == [2, 3, 4]  # batch 0 (both broken) left out, counted
    assert len(loader.skipped) == 2
    loader.set_epoch(0, start_batch=positions[0])  # resume after the first delivered batch
    tail = list(loader)
    assert len(tail) == 2
    for (xa, ta), (xb, tb) in zip(batches[1:], tail):
        assert torch.equal(ta, tb) and torch.equal(xa[0], xb[0]) and torch.equal(xa[1], xb[1])


def test_distributed_sampler_splits_the_epoch(folder):
    ds = JpegFolder(folder, "dct", train=False, input_size=32)
    seen = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = create_loader(ds, 2, sampler=sampler)
        loader.set_epoch(1)
        assert sampler.epoch == 1 and len(loader) == 2
        seen.append([int(t) for _, t in loader for t in t])
        # each batch is the sampler's indices, in its order
        order = list(sampler)
        assert [ds.samples[i][1] for i in order] == seen[-1]
    assert sorted(seen[0] + seen[1]) == sorted(t for _, t in ds.samples)
    with pytest.raises(ValueError, match="exclusive"):
        create_loader(ds, 2, sampler=sampler, shuffle=True)
