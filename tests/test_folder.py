"""jpegnet.data.folder: JpegFolder's layout, arguments, for_model, item access through a plain DataLoader, and
the scan made once per run."""
from __future__ import annotations

import pytest
import torch

from jpegnet.data import JpegFolder, create_loader

from .data_helpers import folder  # noqa: F401  (folder: a fixture)


def test_folder_layout_and_arguments(folder):
    ds = JpegFolder(folder, "dct", train=True)
    assert ds.classes == sorted(p.name for p in folder.iterdir())
    assert ds.class_to_idx == {c: i for i, c in enumerate(ds.classes)}
    assert len(ds) == 6 and all(t == ds.class_to_idx[p.split("/")[-2]] for p, t in ds.samples)
    with pytest.raises(ValueError, match="representation"):
        JpegFolder(folder, "yuv", train=True)
    with pytest.raises(ValueError, match="on_error"):
        JpegFolder(folder, "dct", train=True, on_error="ignore")
    with pytest.raises(FileNotFoundError):
        JpegFolder(folder / "missing", "dct", train=True)
    with pytest.raises(ValueError, match="scale"):
        JpegFolder(folder, "dct", train=True, scale=(0.5, 0.1))
    with pytest.raises(TypeError, match="input_size"):
        JpegFolder(folder, "dct", train=True, input_size="big")
    with pytest.raises(ValueError, match="batch_size"):
        create_loader(ds, 0)
    with pytest.raises(TypeError):
        create_loader([1, 2, 3], 2)


def test_works_with_torch_dataloader(folder):
    ds = JpegFolder(folder, "dct", train=True, input_size=32)
    ds.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=JpegFolder.collate)
    (y, cbcr), target = next(iter(loader))
    assert y.shape == (3, 64, 4, 4) and cbcr.shape == (3, 128, 2, 2)
    # item access draws the same augmentation as the batch loader for the same (seed, epoch, index)
    batch = create_loader(ds, 3, seed=ds.seed)
    batch.set_epoch(2)
    (yb, cb), tb = next(iter(batch))
    assert torch.equal(target, tb)
    assert torch.allclose(y, yb, atol=1e-5) and torch.allclose(cbcr, cb, atol=1e-5)
    # worker processes draw the same augmentation as the main process
    workers = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=JpegFolder.collate, num_workers=2)
    (yw, cw), tw = next(iter(workers))
    assert torch.equal(tw, target) and torch.equal(yw, y) and torch.equal(cw, cbcr)
