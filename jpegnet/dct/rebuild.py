"""Pixels rebuilt from a batch of model-input coefficients, in torch: what a pixel network (a teacher) sees
when it is shown exactly the coefficients a DCT network reads.

Batch layout (the data pipeline's): y (N, 64, h, w), channel 8·u + v the frequency; cbcr (N, 128, h/2, w/2),
Cb's 64 then Cr's; both normalized per channel as (raw − mean) / std. Rebuilding undoes the normalization,
runs the 8×8 block IDCT (+128 level shift), box-upsamples the 4:2:0 chroma and applies JFIF's YCbCr → RGB,
as the numpy reference `jpegnet.dct.pixels.reconstruct` does for one image; every step is linear but the
final clip to [0, 255], so a crop, flip or resize done on coefficients is the same crop, flip or resize of
these pixels.
"""
from __future__ import annotations

import torch

from .transforms import block_idct

Y_CHANNELS = 64


def _plane(coefs: torch.Tensor) -> torch.Tensor:
    """(N, 64, h, w) raw coefficients → (N, 8h, 8w) samples (+128)."""
    return block_idct(coefs.permute(0, 2, 3, 1)) + 128.0


def coefficients_to_rgb(y: torch.Tensor, cbcr: torch.Tensor, mean, std) -> torch.Tensor:
    """(N, 3, 8h, 8w) RGB in [0, 1] from normalized coefficients; mean / std: the 192 per-channel values the
    batch was normalized with (64 Y then 128 CbCr)."""
    if y.ndim != 4 or cbcr.ndim != 4 or y.shape[1] != Y_CHANNELS or cbcr.shape[1] != 2 * Y_CHANNELS:
        raise ValueError(f"expected y (N, 64, h, w) and cbcr (N, 128, h/2, w/2), got {tuple(y.shape)} and "
                         f"{tuple(cbcr.shape)}")
    if 2 * cbcr.shape[2] != y.shape[2] or 2 * cbcr.shape[3] != y.shape[3]:
        raise ValueError(f"cbcr {tuple(cbcr.shape)} is not the 4:2:0 half of y {tuple(y.shape)}")
    dtype = torch.float32
    mean = torch.as_tensor(mean, dtype=dtype, device=y.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=dtype, device=y.device).reshape(1, -1, 1, 1)
    y_raw = y.to(dtype) * std[:, :Y_CHANNELS] + mean[:, :Y_CHANNELS]
    c_raw = cbcr.to(dtype) * std[:, Y_CHANNELS:] + mean[:, Y_CHANNELS:]
    luma = _plane(y_raw.contiguous())
    cb = _plane(c_raw[:, :Y_CHANNELS].contiguous()) - 128.0
    cr = _plane(c_raw[:, Y_CHANNELS:].contiguous()) - 128.0
    cb = cb.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    cr = cr.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    rgb = torch.stack([luma + 1.402 * cr, luma - 0.344136286 * cb - 0.714136286 * cr, luma + 1.772 * cb], dim=1)
    return (rgb / 255.0).clamp_(0.0, 1.0)


__all__ = ["coefficients_to_rgb"]
