"""Lossless turns and mirrors of DCT coefficient maps, as jpegtran does them on JPEG blocks.

A map holds one 8×8 block per position: channel 8·u + v is the coefficient of vertical frequency u and
horizontal frequency v (y (N, 64, h, w); cbcr (N, 128, h, w) is two such maps). Mirroring the pixels of a
block left-right negates its odd horizontal frequencies (cos((7 − x + ½)·vπ/8) = (−1)^v cos((x + ½)·vπ/8)),
so mirroring a whole map reverses the block columns and negates the channels with odd v; top-bottom is the
same on rows and u; transposing the pixels transposes each block's coefficients (channel 8u + v ↔ 8v + u) and
the block grid. All three are exact: signs and a permutation, no arithmetic. They apply to raw coefficients
(a per-channel normalization with different statistics on u and v does not commute with the transpose).
"""
from __future__ import annotations

import torch

_U = torch.arange(64) // 8
_V = torch.arange(64) % 8
_TRANSPOSED = (_V * 8 + _U)  # channel c of the result is channel _TRANSPOSED[c] of the input


def _groups(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    if c % 64:
        raise ValueError(f"a DCT map has a multiple of 64 channels, got {c}")
    return x.reshape(n, c // 64, 64, h, w)


def hflip_blocks(x: torch.Tensor) -> torch.Tensor:
    g = _groups(x)
    sign = torch.where(_V % 2 == 1, -1.0, 1.0).to(x.dtype).to(x.device).view(1, 1, 64, 1, 1)
    return (g.flip(-1) * sign).reshape(x.shape)


def vflip_blocks(x: torch.Tensor) -> torch.Tensor:
    g = _groups(x)
    sign = torch.where(_U % 2 == 1, -1.0, 1.0).to(x.dtype).to(x.device).view(1, 1, 64, 1, 1)
    return (g.flip(-2) * sign).reshape(x.shape)


def transpose_blocks(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    g = _groups(x)[:, :, _TRANSPOSED.to(x.device)]
    return g.transpose(-1, -2).reshape(n, c, w, h)


def orient_blocks(x: torch.Tensor, transpose: bool, hflip: bool, vflip: bool) -> torch.Tensor:
    """Transpose, then mirror left-right, then top-bottom (jpegnet.codec.exif.ORIENTATION_OPS order)."""
    if transpose:
        x = transpose_blocks(x)
    if hflip:
        x = hflip_blocks(x)
    if vflip:
        x = vflip_blocks(x)
    return x


__all__ = ["hflip_blocks", "orient_blocks", "transpose_blocks", "vflip_blocks"]
