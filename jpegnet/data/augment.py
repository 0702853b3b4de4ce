"""Augmentation parameters as pure functions of (seed, epoch, sample index).

Both pipelines (DCT and RGB) draw their crop windows and flips here, vectorized over a batch, from a
counter-based hash (SplitMix64) instead of a stateful generator: the same (seed, epoch, index) gives the same
window in any process, in any batch, in any order, which makes a resumed epoch identical bit for bit and
lets DataLoader workers and DistributedSampler ranks agree without sharing state.

Windows are (x, y, w, h) in pixels of the full image (floats: the evaluation window of a resized-and-centre-
cropped image need not fall on whole pixels); `flip` mirrors the output left-right.
"""
from __future__ import annotations

import math

import numpy as np

_MASK64 = (1 << 64) - 1
#: RandomResizedCrop's attempts before it falls back to a centre crop (torchvision: 10).
ATTEMPTS = 10


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, epoch: int, indices, draws: int) -> np.ndarray:
    """(len(indices), draws) float64 uniforms in [0, 1), a pure function of (seed, epoch, index, draw)."""
    idx = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))
        key = _splitmix64(key ^ np.uint64(int(epoch) & _MASK64))
        per_sample = _splitmix64(key ^ idx)
        z = _splitmix64(per_sample[:, None] ^ (np.arange(draws, dtype=np.uint64)[None, :] * np.uint64(0xD1B54A32D192ED03)))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def random_resized_crop_windows(seed: int, epoch: int, indices, widths, heights,
                                scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_prob: float = 0.5):
    """torchvision RandomResizedCrop.get_params semantics, vectorized: up to 10 attempts of an area fraction
    uniform in `scale` and a log-uniform aspect ratio in `ratio`, rounded to whole pixels and placed uniformly;
    else the whole image clamped to the ratio range, centred. Returns (windows float64 (N, 4), flips bool (N,))."""
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale!r}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio!r}")
    width = np.asarray(widths, dtype=np.int64)
    height = np.asarray(heights, dtype=np.int64)
    n = width.shape[0]
    u = uniforms(seed, epoch, indices, 4 * ATTEMPTS + 1)
    area = (width * height).astype(np.float64)[:, None]
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[:, 0:ATTEMPTS])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:, ATTEMPTS:2 * ATTEMPTS])
    # Python's round() (half to even) as torchvision uses; np.rint is the same rule.
    w = np.rint(np.sqrt(target_area * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(target_area / aspect)).astype(np.int64)
    ok = (w > 0) & (h > 0) & (w <= width[:, None]) & (h <= height[:, None])
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), -1)
    rows = np.arange(n)
    pick = np.maximum(first, 0)
    w_sel, h_sel = w[rows, pick], h[rows, pick]
    # torch.randint(0, size - crop + 1): uniform integer offset
    top = np.floor(u[rows, 2 * ATTEMPTS + pick] * (height - h_sel + 1)).astype(np.int64)
    left = np.floor(u[rows, 3 * ATTEMPTS + pick] * (width - w_sel + 1)).astype(np.int64)
    # fallback: centre crop of the whole image with its ratio clamped into range
    in_ratio = width / height
    fw = np.where(in_ratio < ratio[0], width, np.where(in_ratio > ratio[1], np.rint(height * ratio[1]), width))
    fh = np.where(in_ratio < ratio[0], np.rint(width / ratio[0]), height)
    fw, fh = fw.astype(np.int64), fh.astype(np.int64)
    fail = first < 0
    w_sel = np.where(fail, fw, w_sel)
    h_sel = np.where(fail, fh, h_sel)
    top = np.where(fail, (height - h_sel) // 2, top)
    left = np.where(fail, (width - w_sel) // 2, left)
    windows = np.stack([left, top, w_sel, h_sel], axis=1).astype(np.float64)
    flips = u[:, 4 * ATTEMPTS] < flip_prob
    return windows, flips


def center_crop_windows(widths, heights, out_size: tuple[int, int], crop_pct: float = 0.875) -> np.ndarray:
    """The evaluation window: torchvision Resize(shorter side = floor(max(out)/crop_pct)) then
    CenterCrop(out), expressed as a window of the original image (float pixels). Returns (N, 4)."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    out_h, out_w = out_size
    width = np.asarray(widths, dtype=np.float64)
    height = np.asarray(heights, dtype=np.float64)
    short = math.floor(max(out_h, out_w) / crop_pct)
    # torchvision: the shorter side becomes `short`, the longer int(short · long / short_side)
    landscape = width >= height
    new_w = np.where(landscape, np.floor(short * width / height), short)
    new_h = np.where(landscape, short, np.floor(short * height / width))
    new_w = np.maximum(new_w, out_w)
    new_h = np.maximum(new_h, out_h)
    sx, sy = width / new_w, height / new_h
    left = np.round((new_w - out_w) / 2.0)
    top = np.round((new_h - out_h) / 2.0)
    return np.stack([left * sx, top * sy, out_w * sx, out_h * sy], axis=1)
