"""Octave convolution (Chen et al., "Drop an Octave", ICCV 2019).

A feature map is split along channels into a high-frequency part X^H at full resolution and a low-frequency
part X^L at half resolution (a fraction α of the channels). An octave convolution has four paths:

    Y^H = conv(X^H; W^{H→H}) + upsample(conv(X^L; W^{L→H}), 2)      (nearest upsampling)
    Y^L = conv(X^L; W^{L→L}) + conv(avgpool(X^H, 2); W^{H→L})       (2×2 average pooling)

With stride 2 (as in the official code), H→H and L→L average-pool by 2 before their convolution, H→L pools
by 4, and L→H needs no upsampling (its output is already at the new high resolution). Strided convolutions
are avoided on purpose: they misalign the two frequencies (paper, Table 3).

The four weights together hold exactly as many numbers as one ordinary convolution, for any α; the cost of
a layer with α_in = α_out = α is 1 − ¾·α·(2 − α) of the ordinary one, because three paths run at quarter
resolution.

Activations travel as `(high, low)` tuples; `low` is None where α is 0 (first and last layers of a network).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OctConv2d", "OctBatchNorm2d", "OctReLU", "OctTensor", "split_channels"]

OctTensor = Tuple[torch.Tensor, Optional[torch.Tensor]]


def split_channels(channels: int, alpha: float) -> tuple[int, int]:
    """(high, low) channel counts for a ratio α: low = int(α·channels), as the official code rounds."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"octave ratio alpha must be in [0, 1], got {alpha!r}")
    low = int(alpha * channels)
    return channels - low, low


def _as_pair(x) -> OctTensor:
    if isinstance(x, torch.Tensor):
        return x, None
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    raise TypeError(f"octave layers take a tensor or a (high, low) pair, got {type(x).__name__}")


class OctConv2d(nn.Module):
    """`OctConv2d(in_ch, out_ch, kernel_size, alpha_in, alpha_out, stride=1)`: the four-path octave convolution.

    Input: a `(high, low)` pair (a plain tensor is read as `(high, None)`, for alpha_in = 0); output: a
    `(high, low)` pair with low None when alpha_out = 0. Submodules `h2h`, `h2l`, `l2h`, `l2l` are plain
    `nn.Conv2d`s (absent when a path has no channels). Stride must be 1 or 2.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, alpha_in: float = 0.5,
                 alpha_out: float = 0.5, stride: int = 1):
        super().__init__()
        for name, value in (("in_ch", in_ch), ("out_ch", out_ch), ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OctConv2d: {name} must be a positive int, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"OctConv2d: kernel_size must be odd, got {kernel_size}")
        if stride not in (1, 2):
            raise ValueError(f"OctConv2d: stride must be 1 or 2, got {stride!r}")
        self.in_high, self.in_low = split_channels(in_ch, alpha_in)
        self.out_high, self.out_low = split_channels(out_ch, alpha_out)
        if self.in_high == 0 or self.out_high == 0:
            raise ValueError("OctConv2d: alpha = 1 leaves no high-frequency channels; use alpha < 1")
        self.in_channels, self.out_channels = in_ch, out_ch
        self.alpha_in, self.alpha_out = alpha_in, alpha_out
        self.kernel_size, self.stride = kernel_size, stride
        pad = kernel_size // 2

        def conv(cin: int, cout: int) -> Optional[nn.Conv2d]:
            # No bias: octave layers are always followed by (per-frequency) BatchNorm.
            return nn.Conv2d(cin, cout, kernel_size, 1, pad, bias=False) if cin and cout else None

        self.h2h = conv(self.in_high, self.out_high)
        self.h2l = conv(self.in_high, self.out_low)
        self.l2h = conv(self.in_low, self.out_high)
        self.l2l = conv(self.in_low, self.out_low)

    def forward(self, x) -> OctTensor:
        high, low = _as_pair(x)
        if high.shape[1] != self.in_high or (low.shape[1] if low is not None else 0) != self.in_low:
            got = (high.shape[1], None if low is None else low.shape[1])
            raise ValueError(f"OctConv2d expects (high, low) channels ({self.in_high}, {self.in_low or None}), "
                             f"got {got}")
        s = self.stride
        out_high = out_low = None
        if self.h2h is not None:
            out_high = self.h2h(F.avg_pool2d(high, s) if s > 1 else high)
        if self.h2l is not None:
            out_low = self.h2l(F.avg_pool2d(high, 2 * s))
        if self.l2h is not None:
            from_low = self.l2h(low)
            if s == 1:
                from_low = F.interpolate(from_low, scale_factor=2.0, mode="nearest")
            out_high = from_low if out_high is None else out_high + from_low
        if self.l2l is not None:
            same = self.l2l(F.avg_pool2d(low, s) if s > 1 else low)
            out_low = same if out_low is None else out_low + same
        return out_high, out_low

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"alpha_in={self.alpha_in}, alpha_out={self.alpha_out}, stride={self.stride}")


class OctBatchNorm2d(nn.Module):
    """BatchNorm on each frequency: `bn_h` over the high channels, `bn_l` over the low ones (if any)."""

    def __init__(self, channels: int, alpha: float):
        super().__init__()
        high, low = split_channels(channels, alpha)
        self.bn_h = nn.BatchNorm2d(high)
        self.bn_l = nn.BatchNorm2d(low) if low else None

    def forward(self, x) -> OctTensor:
        high, low = _as_pair(x)
        return self.bn_h(high), (self.bn_l(low) if self.bn_l is not None else low)


class OctReLU(nn.Module):
    """ReLU on both frequencies."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x) -> OctTensor:
        high, low = _as_pair(x)
        return F.relu(high, self.inplace), (F.relu(low, self.inplace) if low is not None else None)
