"""Shared by the jpegnet.data tests: a small class folder of the built-in samples and pixel references."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jpegnet.dct import block_idct
from jpegnet.dct.pixels import ycc_to_rgb
from jpegnet.samples import sample_files

RAW = dict(mean=torch.zeros(192), std=torch.ones(192))


def rgb_of(y: torch.Tensor, cbcr: torch.Tensor) -> np.ndarray:
    """Pixels (H, W, 3) float of one un-normalized (y, cbcr) sample: IDCT, box-upsampled chroma, JFIF."""
    lum = block_idct(y.permute(1, 2, 0).double()).numpy() + 128
    chroma = [block_idct(cbcr[i * 64:(i + 1) * 64].permute(1, 2, 0).double()).numpy() + 128 for i in range(2)]
    chroma = [np.repeat(np.repeat(c, 2, 0), 2, 1) for c in chroma]
    return ycc_to_rgb(lum, *chroma)


def torch_resized_crop(img: np.ndarray, window, out_hw, flip=False) -> np.ndarray:
    """The reference transform on pixels: crop the window, antialiased bilinear resize (what torchvision's
    resized_crop does on tensors), mirror."""
    x, y, w, h = window
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64)).permute(2, 0, 1)[None]
    t = F.interpolate(t[..., y:y + h, x:x + w], size=out_hw, mode="bilinear", antialias=True)[0]
    if flip:
        t = t.flip(-1)
    return t.permute(1, 2, 0).numpy()


@pytest.fixture
def folder(tmp_path):
    """Three classes of the built-in samples (4:2:0, 400 px), two files each."""
    files = sample_files() if callable(sample_files) else list(sample_files)
    by_class: dict = {}
    for f in sorted(map(str, files)):
        by_class.setdefault(f.split("/")[-2], []).append(f)
    for cls in sorted(by_class)[:3]:
        (tmp_path / cls).mkdir()
        for f in by_class[cls][:2]:
            shutil.copy(f, tmp_path / cls)
    return tmp_path
