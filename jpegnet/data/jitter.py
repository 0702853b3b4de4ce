"""Brightness, contrast and saturation jitter, on DCT coefficients and on pixels, with the same meaning.

All three are linear in the pixels, so on coefficients they are exact (no decode, no rounding), up to the
clipping to [0, 255] that pixels get and coefficients cannot:

- brightness b: every RGB channel + 255·b. Constant over the image and the same on R, G and B, so only
  luma moves (the chroma rows of RGB→YCbCr sum to 0): Y + 255·b, and the Y DC coefficient (8 × the block's
  level-shifted mean with the orthonormal 8×8 DCT) + 8·255·b.
- contrast c: torchvision's blend with the image's mean grey, x' = c·x + (1 − c)·m, m the mean of the
  image's luma (the grey of `rgb_to_grayscale`, the ITU-R 601 weights that are JPEG's Y). Per channel that
  is a scaling plus a constant, so luma: Y' = c·Y + (1 − c)·m, i.e. every Y coefficient × c and the DC
  + 8·(1 − c)·(m − 128), where m − 128 = mean over blocks of DC / 8: DC' = c·DC + (1 − c)·mean(DC).
  Chroma (level-shifted) is scaled by c, DC included: the constant cancels in Cb and Cr.
- saturation s: blend with the per-pixel grey, x' = s·x + (1 − s)·Y, which keeps Y and scales the
  level-shifted chroma: every Cb / Cr coefficient × s.

Factors: brightness b (an offset, in [−1, 1] of full range), contrast c and saturation s (multipliers, 1 =
unchanged), one per image. `jitter_dct` works on raw dequantized coefficients (y (N, 64, h, w) with channel
8·u + v the frequency (u vertical, v horizontal); cbcr (N, 128, h/2, w/2), Cb's 64 then Cr's);
`jitter_dct_normalized` undoes and redoes a per-channel normalization around it; `jitter_rgb` is the same on
pixels in [0, 1] (for the RGB twin and as the reference of the tests).
"""
from __future__ import annotations

import torch

from .augment import uniforms

#: The DC coefficient is 8 × the level-shifted block mean (orthonormal 8×8 DCT: 1/8 · sum).
DC_GAIN = 8.0


def _per_image(v: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(-1).expand(n).reshape(n, 1, 1, 1)


def jitter_dct(y: torch.Tensor, cbcr: torch.Tensor, brightness, contrast, saturation):
    """(y', cbcr') of raw dequantized coefficients; brightness / contrast / saturation: scalars or (N,)."""
    n = y.shape[0]
    b = _per_image(brightness, n, y)
    c = _per_image(contrast, n, y)
    s = _per_image(saturation, n, y)
    mean_dc = y[:, :1].mean(dim=(2, 3), keepdim=True)  # 8 × the image's level-shifted mean luma
    y = y * c
    y = torch.cat([y[:, :1] + (1.0 - c) * mean_dc + DC_GAIN * 255.0 * b, y[:, 1:]], dim=1)
    cbcr = cbcr * (c * s)
    return y, cbcr


def jitter_dct_normalized(y, cbcr, mean, std, brightness, contrast, saturation):
    """`jitter_dct` on inputs normalized as (raw − mean) / std per channel (mean / std: 192 values)."""
    mean = torch.as_tensor(mean, dtype=y.dtype, device=y.device).view(1, 192, 1, 1)
    std = torch.as_tensor(std, dtype=y.dtype, device=y.device).view(1, 192, 1, 1)
    raw_y, raw_c = y * std[:, :64] + mean[:, :64], cbcr * std[:, 64:] + mean[:, 64:]
    raw_y, raw_c = jitter_dct(raw_y, raw_c, brightness, contrast, saturation)
    return (raw_y - mean[:, :64]) / std[:, :64], (raw_c - mean[:, 64:]) / std[:, 64:]


_LUMA = (0.299, 0.587, 0.114)


def jitter_rgb(x: torch.Tensor, brightness, contrast, saturation, clip: bool = False) -> torch.Tensor:
    """The same jitter on RGB pixels x (N, 3, H, W) in [0, 1] (unclipped unless clip)."""
    n = x.shape[0]
    b, c, s = (_per_image(v, n, x) for v in (brightness, contrast, saturation))
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    luma = lambda t: (t * w).sum(1, keepdim=True)  # noqa: E731
    x = x + b
    x = c * x + (1.0 - c) * luma(x).mean(dim=(2, 3), keepdim=True)
    x = s * x + (1.0 - s) * luma(x)
    return x.clamp(0.0, 1.0) if clip else x


def jitter_rgb_normalized(x, mean, std, brightness, contrast, saturation):
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (jitter_rgb(x * std + mean, brightness, contrast, saturation, clip=True) - mean) / std


def draw_jitter(seed: int, step: int, n: int, brightness: float, contrast: float, saturation: float):
    """Per-image factors as torchvision's ColorJitter draws them: offset b ∈ [−brightness, brightness],
    c ∈ [1 − contrast, 1 + contrast], s ∈ [1 − saturation, 1 + saturation]; a pure function of (seed, step)."""
    u = torch.from_numpy(uniforms(seed, step, range(n), 3)).float() * 2.0 - 1.0
    return brightness * u[:, 0], 1.0 + contrast * u[:, 1], 1.0 + saturation * u[:, 2]


__all__ = ["DC_GAIN", "draw_jitter", "jitter_dct", "jitter_dct_normalized", "jitter_rgb", "jitter_rgb_normalized"]
