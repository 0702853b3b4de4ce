"""Issue 15, items 1 and 8 for the fused resample kernel: every argument that would reach an undefined float to
integer conversion, an overflowing size or unbounded work is refused with ValueError / TypeError."""
from __future__ import annotations

import math

import numpy as np
import pytest

_resample = pytest.importorskip("jpegnet.dct._resample")


def call(window=(0.0, 0.0, 32.0, 32.0), fx=1.0, fy=1.0, width=32, height=32, margin=1.0, blocks=(4, 4),
         out=(4, 4)):
    y = np.zeros((1, out[0], out[1], 64), np.float32)
    cbcr = np.zeros((1, out[0] // 2, out[1] // 2, 128), np.float32)
    coefs = np.ones((*blocks, 64), np.int16)
    plane = (coefs, np.ones(64, np.float32), 0, 0, fx, fy, width, height)
    _resample.resample_planes([plane], np.array([window], np.float64), np.zeros(1, np.uint8), y, cbcr,
                              np.ones(192, np.float32), np.zeros(192, np.float32), margin)
    return y


def test_valid_call_fills_the_batch():
    y = call()
    assert np.isfinite(y).all() and y[0, 0, 0, 0] != 0


@pytest.mark.parametrize("window", [(math.nan, 0, 32, 32), (0, math.inf, 32, 32), (0, 0, math.inf, 32),
                                    (0, 0, 32, math.nan), (-1e300, 0, 32, 32), (0, 0, 1e300, 32),
                                    (0, 0, 2.0**20, 32), (2.0**40, 0, 32, 32), (-200.0, 0, 32, 32)])
def test_non_finite_or_off_plane_windows_are_refused(window):
    with pytest.raises(ValueError, match="window"):
        call(window=window)


@pytest.mark.parametrize("fx", [math.nan, math.inf, -1.0, 0.0, 1e9])
def test_bad_plane_scales_are_refused(fx):
    with pytest.raises(ValueError, match="bad geometry"):
        call(fx=fx)


@pytest.mark.parametrize("width", [0, -5, 2**16 + 1, 2**31 - 1])
def test_bad_plane_sizes_are_refused(width):
    with pytest.raises(ValueError, match="bad geometry"):
        call(width=width)


def test_nan_k_margin_is_refused_and_inf_keeps_all_frequencies():
    with pytest.raises(ValueError, match="k_margin"):
        call(margin=math.nan)
    np.testing.assert_array_equal(call(margin=math.inf), call(margin=-1.0))


def test_too_many_blocks_are_refused():
    with pytest.raises(ValueError, match="block limit"):
        call(blocks=(1, 2**13 + 1))
    with pytest.raises(ValueError, match="block limit"):
        call(out=(2**16 + 2, 2))
