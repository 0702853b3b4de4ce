"""The one reference the DCT batch's two implementations (the fused C kernel on the CPU, torch ops on an
accelerator) are tested against: each plane taken to pixels (float64 block IDCT of the dequantized
coefficients, keeping the k lowest frequencies the resize reads), resized with a dense antialiased weight
matrix per axis (the support of `jpegnet.dct.resample_support`, i.e. PyTorch's antialiased bilinear or bicubic
with its clipping to the window; the filter written out here in float64), then block DCT and normalization.
No bands, no batching, no float32."""
from __future__ import annotations

import numpy as np

from jpegnet.dct import CUBIC_A, frequencies_kept, resample_support
from jpegnet.dct.pixels import BLOCK, blocks_to_plane, dct_basis


def filter_weight(t: np.ndarray, interpolation: str) -> np.ndarray:
    """The filter at distance t (stretched units): the triangle, or Keys' cubic with a = CUBIC_A (-0.5)."""
    t = np.abs(t)
    if interpolation == "bilinear":
        return np.maximum(0.0, 1.0 - t)
    a = CUBIC_A
    assert a == -0.5  # Pillow's and PyTorch's antialiased bicubic
    return np.where(t < 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                    np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))


def dense_weights(start: float, length: float, out_size: int, valid_stop: int, size: int, flip: bool,
                  interpolation: str = "bilinear") -> np.ndarray:
    """(out_size, size) float64: row i weighs input sample x by filter((x + ½ − centre)·inv), x in [lo, hi),
    normalized."""
    lo, hi, centre, inv = resample_support(np.array([start]), np.array([length]), out_size,
                                           np.array([valid_stop]), None if not flip else np.array([True]),
                                           interpolation)
    x = np.arange(size, dtype=np.float64)[None, :]
    w = filter_weight((x + 0.5 - centre[0][:, None]) * inv[0], interpolation)
    w *= (x >= lo[0][:, None]) & (x < hi[0][:, None])
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)


def touched_blocks(weights: np.ndarray) -> tuple[int, int]:
    """[first, stop) of the 8-sample blocks whose samples some row of the (out, size) weights reads."""
    used = np.flatnonzero(weights.any(axis=0))
    return int(used[0]) // BLOCK, int(used[-1]) // BLOCK + 1


def reference_plane(plane, window, flip: bool, out_blocks: tuple[int, int], k_margin,
                    interpolation: str = "bilinear") -> np.ndarray:
    """(Ov, Oh, 64) raw coefficients of one plane (coefs, quant, fx, fy, width, height) resampled."""
    ov, oh = out_blocks
    x0, y0 = window[0] * plane.fx, window[1] * plane.fy
    ww, wh = window[2] * plane.fx, window[3] * plane.fy
    k = BLOCK if k_margin is None else frequencies_kept(max(ov * BLOCK / wh, oh * BLOCK / ww), k_margin)
    bh, bw = plane.coefs.shape[:2]
    wv = dense_weights(y0, wh, ov * BLOCK, plane.height, bh * BLOCK, False, interpolation)
    wh_ = dense_weights(x0, ww, oh * BLOCK, plane.width, bw * BLOCK, flip, interpolation)
    # Only the blocks under some weight are taken to pixels: the others' weights are exactly 0, so leaving
    # them out changes no value, and it saves the IDCT of a whole large image for a small window.
    (r0, r1), (c0, c1) = (touched_blocks(wv), touched_blocks(wh_))
    deq = plane.coefs[r0:r1, c0:c1].astype(np.float64) * plane.quant.astype(np.float64)
    deq = deq.reshape(*deq.shape[:2], BLOCK, BLOCK)
    deq[:, :, k:, :] = 0.0
    deq[:, :, :, k:] = 0.0
    pixels = blocks_to_plane(deq.reshape(*deq.shape[:2], 64)) - 128.0
    out = wv[:, r0 * BLOCK:r1 * BLOCK] @ pixels @ wh_[:, c0 * BLOCK:c1 * BLOCK].T
    d = dct_basis()
    blocks = out.reshape(ov, BLOCK, oh, BLOCK)
    return np.einsum("uy,hywx,vx->hwuv", d, blocks, d).reshape(ov, oh, 64)


def reference_batch(images, windows, flips, out_size, *, mean=None, std=None, k_margin=1.0,
                    interpolation="bilinear"):
    """(y, cbcr) float64 numpy arrays shaped as `build_dct_batch`'s (N, 64, H/8, W/8), (N, 128, H/16, W/16),
    for images given as plane lists (`image_planes`). mean / std: 192 values (default 0 and 128)."""
    mean = np.zeros(192) if mean is None else np.asarray(mean, dtype=np.float64)
    std = np.full(192, 128.0) if std is None else np.asarray(std, dtype=np.float64)
    hb, wb = out_size[0] // BLOCK, out_size[1] // BLOCK
    n = len(images)
    raw = np.zeros((n, hb // 2, wb // 2, 192))
    raw_y = np.zeros((n, hb, wb, 64))
    for i, planes in enumerate(images):
        raw_y[i] = reference_plane(planes[0], windows[i], bool(flips[i]), (hb, wb), k_margin, interpolation)
        for c, p in enumerate(planes[1:]):
            raw[i, :, :, 64 + 64 * c:128 + 64 * c] = reference_plane(p, windows[i], bool(flips[i]),
                                                                     (hb // 2, wb // 2), k_margin, interpolation)
    y = (raw_y - mean[:64]) / std[:64]
    cbcr = (raw[..., 64:] - mean[64:]) / std[64:]
    return y.transpose(0, 3, 1, 2), cbcr.transpose(0, 3, 1, 2)


def assert_matches_reference(got, ref, tol=1e-4):
    """Each of (y, cbcr) within tol of the reference's largest magnitude."""
    for a, b in zip(got, ref):
        assert tuple(a.shape) == b.shape
        scale = float(np.abs(b).max())
        err = float(np.abs(a.double().numpy() - b).max())
        assert err <= tol * scale, f"max error {err} vs scale {scale}"
