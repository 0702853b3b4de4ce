"""jpegnet.data.augment: crop windows and flips as pure functions of (seed, epoch, index), following
torchvision's RandomResizedCrop and Resize + CenterCrop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jpegnet.data import center_crop_windows, random_resized_crop_windows, uniforms


def test_uniforms_are_a_pure_function_of_seed_epoch_index():
    a = uniforms(0, 3, [5, 9, 11], 4)
    assert a.shape == (3, 4) and (a >= 0).all() and (a < 1).all()
    assert np.array_equal(a[1], uniforms(0, 3, [9], 4)[0])          # independent of batch composition
    assert not np.array_equal(a, uniforms(0, 4, [5, 9, 11], 4))      # epoch changes the draws
    assert not np.array_equal(a, uniforms(1, 3, [5, 9, 11], 4))      # seed too
    big = uniforms(7, 0, np.arange(20000), 1)
    assert abs(big.mean() - 0.5) < 0.01


def test_random_resized_crop_windows_follow_torchvision_ranges():
    n = 4000
    widths, heights = np.full(n, 500), np.full(n, 375)
    win, flips = random_resized_crop_windows(0, 0, np.arange(n), widths, heights)
    x, y, w, h = win.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 500).all() and (y + h <= 375).all()
    assert np.array_equal(win, np.round(win))  # whole pixels, as torchvision
    area = w * h / (500 * 375)
    assert area.min() >= 0.08 * 0.95 and area.max() <= 1.0
    aspect = w / h
    assert aspect.min() >= 0.75 * 0.97 and aspect.max() <= 4 / 3 * 1.03
    assert 0.45 < flips.mean() < 0.55
    # the same distribution as torchvision's own sampler (its RNG, as many draws): mean area and aspect
    import torchvision.transforms as T
    torch.manual_seed(0)
    img = torch.empty(1, 375, 500)
    tv = np.array([T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)])
    tv_area = tv[:, 2] * tv[:, 3] / (500 * 375)
    assert abs(area.mean() - tv_area.mean()) < 0.025
    assert abs(np.log(aspect).mean() - np.log(tv[:, 3] / tv[:, 2]).mean()) < 0.025
    # an extreme panorama falls back to the ratio-clamped centre crop
    win, _ = random_resized_crop_windows(0, 0, [0], [4000], [10], scale=(0.9, 1.0))
    assert tuple(win[0]) == (1993.0, 0.0, 13.0, 10.0)  # h = 10, w = round(10 · 4/3), centred


def test_center_crop_window_is_resize_then_centre_crop():
    win = center_crop_windows([500], [375], (224, 224), 0.875)[0]
    # Resize(256): 375 -> 256, 500 -> 341; CenterCrop(224): left round(58.5)=58, top 16
    sx, sy = 500 / 341, 375 / 256
    assert np.allclose(win, [58 * sx, 16 * sy, 224 * sx, 224 * sy])
    with pytest.raises(ValueError, match="crop_pct"):
        center_crop_windows([1], [1], (16, 16), 0)
