"""jpegnet.data.batch: files → batches through the DCT path (headers, windows, decode of the window only) and
the RGB twin (the torchvision pipeline); bad files skipped, logged once and counted."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from jpegnet import JpegError, read_coefficients, read_header
from jpegnet.data import JpegFolder, UnsupportedImage, create_loader, decode_crops

from .conftest import BAD, CORPUS, requires_shared
from .data_helpers import folder  # noqa: F401  (folder: a fixture)


@requires_shared
def test_bad_files_are_skipped_logged_once_and_counted(tmp_path, folder, caplog):
    bad_dir = folder / sorted(p.name for p in folder.iterdir())[0]
    for p in sorted(BAD.iterdir()):
        shutil.copy(p, bad_dir / p.name)
    bad = []  # the files of bad/ that really fail (one has a misleading name and decodes)
    for p in sorted(BAD.iterdir()):
        try:
            read_coefficients(p)
        except JpegError:
            bad.append(p)
    assert len(bad) >= 5
    readable = len(list(BAD.iterdir())) - len(bad)
    shutil.copy(CORPUS / "n02442845_mink_cmyk.jpg", bad_dir)
    # windows of whole images (a full-area crop is only possible at the image's own ratio; otherwise the
    # fallback takes the whole image too): every window reaches each file's damage (see
    # test_damage_below_the_window_is_never_read for windows that stop above it)
    ds = JpegFolder(folder, "dct", train=True, input_size=32, scale=(1.0, 1.0), ratio=(0.01, 100.0))
    loader = create_loader(ds, 4)
    with caplog.at_level(logging.WARNING, logger="jpegnet.data"):
        n = sum(t.shape[0] for _, t in loader)
    assert n == 6 + readable
    assert len(loader.skipped) == len(bad) + 1
    reasons = dict(loader.skipped)
    assert "CMYK" in reasons[str(bad_dir / "n02442845_mink_cmyk.jpg")]
    logged = [r for r in caplog.records if "skipping" in r.getMessage()]
    assert len(logged) == len(bad) + 1
    # next epoch: the count starts again, the log does not repeat
    caplog.clear()
    loader.set_epoch(1)
    assert loader.skipped == []
    with caplog.at_level(logging.WARNING, logger="jpegnet.data"):
        list(loader)
    assert len(loader.skipped) == len(bad) + 1
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]
    # on_error='raise': the first bad file stops the epoch
    strict = JpegFolder(folder, "dct", train=True, input_size=32, on_error="raise", scale=(1.0, 1.0),
                        ratio=(0.01, 100.0))
    with pytest.raises((JpegError, UnsupportedImage)):
        list(create_loader(strict, 4))
    # item access: None (skipped) or the error
    idx = next(i for i, (p, _) in enumerate(ds.samples) if p.endswith("truncated_half.jpg"))
    assert ds[idx] is None
    with pytest.raises(JpegError):
        strict[idx]
    # the RGB twin skips what Pillow cannot open (it takes CMYK, and the PNG named .jpg)
    from PIL import Image

    def pillow_opens(path):
        try:
            Image.open(path).convert("RGB")
            return True
        except Exception:
            return False
    rgb = create_loader(JpegFolder(folder, "rgb", train=True, input_size=32), 4)
    assert sum(t.shape[0] for _, t in rgb) == sum(pillow_opens(p) for p, _ in ds.samples)
    assert len(rgb.skipped) == sum(not pillow_opens(p) for p, _ in ds.samples) > 0


@requires_shared
def test_damage_below_the_window_is_never_read(tmp_path):
    """The loader decodes only the MCUs under each window and, in single-scan files, stops entropy decoding
    after the window's last MCU row: a file whose damage lies below the window is used (deterministically,
    since windows are a function of (seed, epoch, index)); one whose window reaches it is skipped."""
    (tmp_path / "a").mkdir()
    for r in range(24):
        shutil.copy(BAD / "truncated_half.jpg", tmp_path / "a" / f"{r:02d}.jpg")
    ds = JpegFolder(tmp_path, "dct", train=True, input_size=32, scale=(0.01, 0.04))  # the data ends at row 160
    header = read_header(BAD / "truncated_half.jpg")
    n = len(ds)
    windows, _ = ds.windows(range(n), [header.width] * n, [header.height] * n, 0, 0)
    crops = decode_crops(windows, [header.width] * n, [header.height] * n, [header.mcu_size] * n)
    reaches = {}
    for i in range(n):
        x, y, w, h = (int(v) for v in crops[i])
        try:
            read_coefficients(BAD / "truncated_half.jpg", crop=(x, y, w, h))
            reaches[ds.samples[i][0]] = False
        except JpegError:
            reaches[ds.samples[i][0]] = True
    assert 0 < sum(reaches.values()) < n  # both kinds occur among these windows
    loader = create_loader(ds, 8, seed=0)
    got = sum(t.shape[0] for _, t in loader)
    assert sorted(p for p, _ in loader.skipped) == sorted(p for p, r in reaches.items() if r)
    assert got == n - len(loader.skipped)
    loader.set_epoch(0)  # the same epoch skips the same files
    list(loader)
    assert sorted(p for p, _ in loader.skipped) == sorted(p for p, r in reaches.items() if r)


def test_rgb_twin_is_the_torchvision_pipeline(folder):
    from PIL import Image
    import torchvision.transforms.functional as TF

    ds = JpegFolder(folder, "rgb", train=True, input_size=(32, 48), seed=3)
    loader = create_loader(ds, 3, seed=3)
    (x,), target = next(iter(loader))
    assert x.shape == (3, 3, 32, 48) and x.dtype == torch.float32
    path = ds.samples[1][0]
    img = Image.open(path).convert("RGB")
    win, flips = ds.windows([1], np.array([img.width]), np.array([img.height]), 3, 0)
    left, top, w, h = (int(v) for v in win[0])
    ref = TF.resized_crop(img, top, left, h, w, [32, 48], antialias=True)
    if flips[0]:
        ref = TF.hflip(ref)
    ref = TF.normalize(TF.to_tensor(ref), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.allclose(x[1], ref)
