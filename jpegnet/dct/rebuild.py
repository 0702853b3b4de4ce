"""Pixels rebuilt from a batch of model-input coefficients, in torch: what a pixel network (a teacher) sees
when it is shown exactly the coefficients a DCT network reads.

Batch layout (the data pipeline's): y (N, 64, h, w), channel 8·u + v the frequency; cbcr (N, 128, h/2, w/2),
Cb's 64 then Cr's; both normalized per channel as (raw − mean) / std. Rebuilding undoes the normalization,
runs the 8×8 block IDCT (+128 level shift), box-upsamples the 4:2:0 chroma and applies JFIF's YCbCr → RGB,
as the numpy reference `jpegnet.dct.pixels.reconstruct` does for one image; every step is linear but the
final clip to [0, 255], so a crop, flip or resize done on coefficients is the same crop, flip or resize of
these pixels.

All the linear steps, and an affine normalization of the result (a teacher's (rgb − mean) / std), fold into
three 1×1 convolutions: one per block grid that undoes the normalization and runs the IDCT (64 coefficients →
the block's 64 samples), each followed by a depth-to-space (`pixel_shuffle`) that lays the samples out as a
plane; the chroma planes are upsampled 2× (nearest: 4:2:0's box); then one 3 → 3 convolution per pixel does
YCbCr → RGB, the scale to [0, 1] and the normalization. `rebuild_weights` folds them once (in float64, from the
statistics); `rebuild` runs them. In ONNX that is Conv, DepthToSpace, Resize, Concat, Conv, Max and Min, which
runtimes run fast, at ~7 multiply-adds per pixel (an einsum over blocks exported as transposes and batched
matmuls, and a dense 16×16-sample chroma IDCT, cost several times more).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .transforms import BLOCK, block_idct

Y_CHANNELS = 64
# JFIF YCbCr → RGB: each output channel's (Y, Cb, Cr) weights, Cb and Cr centred on 0
_YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136286, -0.714136286), (1.0, 1.772, 0.0))


class RebuildWeights(NamedTuple):
    """What `rebuild` runs: the luma (64, 64, 1, 1) and chroma (128, 64, 1, 1, two groups) IDCT convolutions
    with their biases, the per-pixel colour convolution (3, 3, 1, 1) with its bias, and the per-channel bounds
    (1, 3, 1, 1) the clip to [0, 255] becomes after normalization."""
    luma_weight: torch.Tensor
    luma_bias: torch.Tensor
    chroma_weight: torch.Tensor
    chroma_bias: torch.Tensor
    color_weight: torch.Tensor
    color_bias: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor


def _idct_rows() -> torch.Tensor:
    """The 8×8 block IDCT (`block_idct`, the project's) as a (64, 64) float64 matrix: row 8·y + x holds the
    weights of the 64 coefficients (8·u + v) for sample (y, x) of the block."""
    basis = torch.eye(64, dtype=torch.float64).reshape(64, 1, 1, 64)  # one block per coefficient
    return block_idct(basis).reshape(64, BLOCK * BLOCK).T


def _vector(values, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).detach().cpu().reshape(-1)
    if t.numel() != n:
        raise ValueError(f"{name} needs {n} values, got {t.numel()}")
    return t


def rebuild_weights(dct_mean, dct_std, rgb_mean=(0.0, 0.0, 0.0), rgb_std=(1.0, 1.0, 1.0),
                    dtype=torch.float32, device=None) -> RebuildWeights:
    """Fold undoing the coefficients' normalization (`dct_mean`, `dct_std`: 192 values, 64 Y then 128 CbCr),
    the IDCT, the chroma upsampling, YCbCr → RGB, the scale to [0, 1] and (rgb − `rgb_mean`) / `rgb_std` into
    the weights `rebuild` runs. The defaults leave RGB in [0, 1]."""
    dct_mean, dct_std = _vector(dct_mean, 192, "dct_mean"), _vector(dct_std, 192, "dct_std")
    rgb_mean, rgb_std = _vector(rgb_mean, 3, "rgb_mean"), _vector(rgb_std, 3, "rgb_std")
    if bool((rgb_std <= 0).any()):
        raise ValueError(f"rgb_std must be positive, got {rgb_std.tolist()}")
    rows = _idct_rows()
    luma_weight = rows * dct_std[:Y_CHANNELS]
    luma_bias = rows @ dct_mean[:Y_CHANNELS] + 128.0  # the level shift
    # chroma samples stay centred on 0 (their +128 and YCbCr's −128 cancel)
    chroma_weight = torch.cat([rows * dct_std[Y_CHANNELS:2 * Y_CHANNELS], rows * dct_std[2 * Y_CHANNELS:]])
    chroma_bias = torch.cat([rows @ dct_mean[Y_CHANNELS:2 * Y_CHANNELS], rows @ dct_mean[2 * Y_CHANNELS:]])
    scale = 1.0 / (255.0 * rgb_std)  # per output channel: samples (0..255) → normalized
    color_weight = torch.tensor(_YCBCR_TO_RGB, dtype=torch.float64) * scale[:, None]
    color_bias = -rgb_mean / rgb_std
    low, high = -rgb_mean / rgb_std, (1.0 - rgb_mean) / rgb_std
    as_out = dict(dtype=dtype, device=device)
    return RebuildWeights(luma_weight[:, :, None, None].to(**as_out), luma_bias.to(**as_out),
                          chroma_weight[:, :, None, None].to(**as_out), chroma_bias.to(**as_out),
                          color_weight[:, :, None, None].to(**as_out), color_bias.to(**as_out),
                          low.reshape(1, 3, 1, 1).to(**as_out), high.reshape(1, 3, 1, 1).to(**as_out))


def _check(y: torch.Tensor, cbcr: torch.Tensor) -> None:
    if y.ndim != 4 or cbcr.ndim != 4 or y.shape[1] != Y_CHANNELS or cbcr.shape[1] != 2 * Y_CHANNELS:
        raise ValueError(f"expected y (N, 64, h, w) and cbcr (N, 128, h/2, w/2), got {tuple(y.shape)} and "
                         f"{tuple(cbcr.shape)}")
    if 2 * cbcr.shape[2] != y.shape[2] or 2 * cbcr.shape[3] != y.shape[3]:
        raise ValueError(f"cbcr {tuple(cbcr.shape)} is not the 4:2:0 half of y {tuple(y.shape)}")


def rebuild(y: torch.Tensor, cbcr: torch.Tensor, weights: RebuildWeights) -> torch.Tensor:
    """(N, 3, 8h, 8w) pixels, normalized as `weights` were folded, from normalized coefficients."""
    _check(y, cbcr)
    w = weights
    luma = F.pixel_shuffle(F.conv2d(y.to(w.luma_weight.dtype), w.luma_weight, w.luma_bias), BLOCK)
    chroma = F.pixel_shuffle(F.conv2d(cbcr.to(w.chroma_weight.dtype), w.chroma_weight, w.chroma_bias, groups=2),
                             BLOCK)
    chroma = F.interpolate(chroma, scale_factor=2, mode="nearest")  # 4:2:0: each sample covers 2×2 pixels
    rgb = F.conv2d(torch.cat([luma, chroma], dim=1), w.color_weight, w.color_bias)
    # the clip to [0, 255], moved through the normalization (rgb_std > 0 keeps the order)
    return torch.minimum(torch.maximum(rgb, w.low), w.high)


def coefficients_to_rgb(y: torch.Tensor, cbcr: torch.Tensor, mean, std) -> torch.Tensor:
    """(N, 3, 8h, 8w) RGB in [0, 1] from normalized coefficients; mean / std: the 192 per-channel values the
    batch was normalized with (64 Y then 128 CbCr)."""
    return rebuild(y, cbcr, rebuild_weights(mean, std, device=y.device))


# each folded tensor's shape (a module built on the meta device has no statistics to fold, only these)
REBUILD_SHAPES = RebuildWeights(*(tuple(t.shape) for t in rebuild_weights(torch.zeros(192), torch.ones(192))))

__all__ = ["REBUILD_SHAPES", "RebuildWeights", "coefficients_to_rgb", "rebuild", "rebuild_weights"]
