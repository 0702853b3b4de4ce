"""Issue 15, items 1 and 8 for the fused resample kernel: every argument that would reach an undefined float to
integer conversion, an overflowing size or unbounded work is refused with ValueError / TypeError; with either
filter (issue 19: the bicubic reaches 2 px per side, twice the triangle), extreme scales and tiny planes stay
inside the bounds the kernel sized its memory for."""
from __future__ import annotations

import math

import numpy as np
import pytest

_resample = pytest.importorskip("jpegnet.dct._resample")


def call(window=(0.0, 0.0, 32.0, 32.0), fx=1.0, fy=1.0, width=32, height=32, margin=1.0, blocks=(4, 4),
         out=(4, 4), interpolation="bilinear", dc_only=False):
    y = np.zeros((1, out[0], out[1], 64), np.float32)
    cbcr = np.zeros((1, out[0] // 2, out[1] // 2, 128), np.float32)
    coefs = np.ones((*blocks, 64), np.int16)
    if dc_only:  # a constant plane
        coefs[..., 1:] = 0
    plane = (coefs, np.ones(64, np.float32), 0, 0, fx, fy, width, height)
    _resample.resample_planes([plane], np.array([window], np.float64), np.zeros(1, np.uint8), y, cbcr,
                              np.ones(192, np.float32), np.zeros(192, np.float32), margin, 1, interpolation)
    return y


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_valid_call_fills_the_batch(interpolation):
    y = call(interpolation=interpolation)
    assert np.isfinite(y).all() and y[0, 0, 0, 0] != 0


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_the_widest_band_stays_inside_the_memory_sized_for_it(interpolation):
    """The largest window a plane allows (its size plus a block either side, twice over), shrunk into one
    block: the widest band there is (the bicubic reaches twice as far as the triangle) must not pass the bound
    band_bound sized the operators for (the kernel would raise an internal error)."""
    side = 2.0**16 + 8
    y = call(window=(-side, -side, 2 * side, 2 * side), width=2**16, height=2**16, blocks=(2, 2), out=(2, 2),
             interpolation=interpolation)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("case", [
    dict(window=(0.0, 0.0, 2048.0, 2048.0), width=2048, height=2048, blocks=(256, 256), out=(2, 2)),  # 1/128
    dict(window=(0.0, 0.0, 1.0, 1.0), width=1, height=1, blocks=(1, 1), out=(64, 64)),  # 1 px to 512 px
    dict(window=(3.25, 0.5, 0.01, 31.0), out=(2, 8)),  # sub-pixel wide, tall, fractional
    dict(window=(31.5, 31.5, 0.5, 0.5), out=(2, 2)),   # the last half pixel of the plane
])
def test_extreme_scales_and_tiny_planes_stay_finite_and_flat(interpolation, case):
    """A constant plane (every block DC only) resamples to the same constant whatever the scale: the weights
    of each output sample sum to 1 (the cubic's negative lobes included) and no tap reads past the band."""
    y = call(interpolation=interpolation, margin=-1.0, dc_only=True, **case)
    assert np.isfinite(y).all()
    assert np.allclose(y[..., 0], 1.0, atol=1e-4) and np.allclose(y[..., 1:], 0.0, atol=1e-4)


def test_unknown_interpolation_is_refused():
    with pytest.raises(ValueError, match="interpolation"):
        call(interpolation="bicubicc")
    with pytest.raises(TypeError):
        call(interpolation=3)


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
