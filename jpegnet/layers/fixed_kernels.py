"""Fixed (non-learned) depthwise kernels: Gaussian blurs and edge detectors, as VGNet uses them.

VGNet ("Efficient CNN Architecture Design Guided by Visualization") observed, by drawing the learned depthwise
kernels of small networks, that many of them converge to blurs and edge detectors. Its G/E/F variants replace
learned depthwise kernels by such fixed ones:

- VGNetG downsamples with a fixed 3×3 Gaussian (σ = 1) at stride 2;
- VGNetE replaces the 3×3 depthwise kernels of its blocks by four edge detectors (Sobel-y, Sobel-x, 8- and
  4-neighbour Laplacians) tiled over the channels;
- VGNetF uses those four, two diagonal Sobel-like kernels and two Gaussians (σ ≈ 1.1 and σ ≈ 0.6): eight kernels.

The kernels are registered buffers, never parameters: optimizers (and weight decay) cannot reach them, they
move with `.to(device)` and they are saved in the state dict so a checkpoint records exactly what was used.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EDGE_KERNELS", "EDGE_GAUSSIAN_KERNELS", "FixedDepthwiseConv2d", "edge_detection",
           "edge_gaussian", "gaussian_blur", "gaussian_kernel2d"]


def gaussian_kernel2d(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """A normalized (sum 1) isotropic 2-D Gaussian of `size`×`size` taps centred on the middle tap."""
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd int, got {size!r}")
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma!r}")
    half = (size - 1) / 2
    coords = torch.linspace(-half, half, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    pdf = torch.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
    return (pdf / pdf.sum()).to(torch.float32)


def _k(rows: Sequence[Sequence[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


_T = 1.0 / 3.0
# The four edge detectors of VGNetE, as the reference implementation defines them.
SOBEL_Y = _k([[-0.5, -1.0, -0.5], [0.0, 0.0, 0.0], [0.5, 1.0, 0.5]])
SOBEL_X = _k([[-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5]])
LAPLACIAN_8 = _k([[-1 / 12, -2 / 12, -1 / 12], [-2 / 12, 1.0, -2 / 12], [-1 / 12, -2 / 12, -1 / 12]])
LAPLACIAN_4 = _k([[0.0, -0.25, 0.0], [-0.25, 1.0, -0.25], [0.0, -0.25, 0.0]])
# The two diagonal gradient kernels VGNetF adds.
DIAGONAL_1 = _k([[-1.0, -2 * _T, -_T], [-2 * _T, 0.0, 2 * _T], [_T, 2 * _T, 1.0]])
DIAGONAL_2 = _k([[-_T, -2 * _T, -1.0], [2 * _T, 0.0, -2 * _T], [1.0, 2 * _T, _T]])

EDGE_KERNELS = torch.stack([SOBEL_Y, SOBEL_X, LAPLACIAN_8, LAPLACIAN_4])
# σ = 1.1 and σ = 0.6 reproduce the reference's tabulated Gaussians to the 4 decimals it prints.
EDGE_GAUSSIAN_KERNELS = torch.stack([SOBEL_Y, SOBEL_X, LAPLACIAN_8, LAPLACIAN_4, DIAGONAL_1, DIAGONAL_2,
                                     gaussian_kernel2d(3, 1.1), gaussian_kernel2d(3, 0.6)])


class FixedDepthwiseConv2d(nn.Module):
    """A depthwise convolution whose kernels are fixed: a `weight` buffer of shape (C, 1, k, k).

    `kernels` is a (K, k, k) bank; channel c gets kernel c mod K (the bank is tiled over the channels, so
    any channel count works). Padding keeps the spatial size at stride 1 ("same" for odd k).
    """

    def __init__(self, channels: int, kernels: torch.Tensor, stride: int = 1):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        kernels = torch.as_tensor(kernels, dtype=torch.float32)
        if kernels.dim() == 2:
            kernels = kernels[None]
        if kernels.dim() != 3 or kernels.shape[1] != kernels.shape[2] or kernels.shape[1] % 2 == 0:
            raise ValueError(f"kernels must be a (K, k, k) bank with odd k, got shape {tuple(kernels.shape)}")
        self.channels = channels
        self.stride = stride
        self.kernel_size = kernels.shape[-1]
        self.padding = self.kernel_size // 2
        index = torch.arange(channels) % kernels.shape[0]
        self.register_buffer("weight", kernels[index].unsqueeze(1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The buffer stays fp32 (exact kernels); a bf16/fp16 model casts it on the fly.
        return F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding, 1, self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, fixed"


def gaussian_blur(channels: int, stride: int = 1, sigma: float = 1.0, size: int = 3) -> FixedDepthwiseConv2d:
    """The same normalized Gaussian on every channel (VGNetG's downsampling at stride 2)."""
    return FixedDepthwiseConv2d(channels, gaussian_kernel2d(size, sigma), stride)


def edge_detection(channels: int, stride: int = 1) -> FixedDepthwiseConv2d:
    """VGNetE's four edge detectors tiled over the channels."""
    return FixedDepthwiseConv2d(channels, EDGE_KERNELS, stride)


def edge_gaussian(channels: int, stride: int = 1) -> FixedDepthwiseConv2d:
    """VGNetF's eight kernels (edges, diagonals, two Gaussians) tiled over the channels."""
    return FixedDepthwiseConv2d(channels, EDGE_GAUSSIAN_KERNELS, stride)

