"""HetConv: heterogeneous-kernel convolution (Singh et al., CVPR 2019).

In a HetConv layer with part P, every filter sees its M input channels through M/P kernels of size K×K and
M − M/P kernels of size 1×1. The filters are arranged in a *shifted* manner: filter n has its K×K kernels on
the input channels i with i ≡ n (mod P), so consecutive filters put them one channel further along, and every
input channel is seen spatially by N/P of the N filters. P = 1 is an ordinary K×K convolution.

Cost per output pixel and filter: M/P·K² + (M − M/P) multiply-adds, against M·K² for a standard layer.

How it is computed. Masking a dense K×K convolution would spend the full M·K² multiply-adds; instead the
layer is the sum of two kinds of exactly sized convolutions over the input reordered into P contiguous
channel groups (group g = the channels i ≡ g mod P):

- K×K part: one grouped convolution with P groups (group g → the N/P filters with n ≡ g mod P);
- 1×1 part: for each filter group g, 1×1 convolutions over the channels of every *other* group (the two
  contiguous slices before and after group g), so no multiply-add is spent on a zero weight.

Only the parameters that exist are stored: `weight_kxk` (N, M/P, K, K) and `weight_1x1` (N, M − M/P), which
together hold exactly N·(M/P·K² + M − M/P) numbers. `dense_weight()` assembles the equivalent (N, M, K, K)
weight (for tests, visualization and export).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HetConv2d"]


class HetConv2d(nn.Module):
    """Heterogeneous-kernel convolution: `HetConv2d(in_ch, out_ch, kernel_size=3, part=P, stride=1)`.

    in_ch and out_ch must be divisible by `part`; kernel_size must be odd (padding keeps "same" size at
    stride 1, like the 3×3 layers of VGG and ResNet it replaces).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, part: int = 1, stride: int = 1,
                 bias: bool = False):
        super().__init__()
        for name, value in (("in_ch", in_ch), ("out_ch", out_ch), ("kernel_size", kernel_size),
                            ("part", part), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HetConv2d: {name} must be a positive int, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"HetConv2d: kernel_size must be odd, got {kernel_size}")
        if in_ch % part or out_ch % part:
            raise ValueError(f"HetConv2d: in_ch ({in_ch}) and out_ch ({out_ch}) must both be divisible by "
                             f"part ({part})")
        self.in_channels = in_ch
        self.out_channels = out_ch
        self.kernel_size = kernel_size
        self.part = part
        self.stride = stride
        self.padding = kernel_size // 2
        group_in = in_ch // part
        self.weight_kxk = nn.Parameter(torch.empty(out_ch, group_in, kernel_size, kernel_size))
        # Row n holds filter n's 1×1 weights over the input channels outside its own group, in the order of
        # the grouped input (groups 0..P-1 without group n mod P).
        self.weight_1x1 = nn.Parameter(torch.empty(out_ch, in_ch - group_in)) if part > 1 else None
        self.bias = nn.Parameter(torch.empty(out_ch)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same scale as PyTorch's default conv init, computed from the real fan-in of one filter.
        fan_in = self.in_channels // self.part * self.kernel_size ** 2 + (self.in_channels - self.in_channels // self.part)
        bound = 1.0 / math.sqrt(fan_in)
        for p in (self.weight_kxk, self.weight_1x1, self.bias):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    # Channel orders. "Shifted" order is the layer's public channel order (channel i in group i mod P);
    # "grouped" order puts each group's channels next to each other (group g = block g).
    def _to_grouped(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        n, _, h, w = x.shape
        return x.reshape(n, channels // self.part, self.part, h, w).transpose(1, 2).reshape(n, channels, h, w)

    def _to_shifted(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        n, _, h, w = x.shape
        return x.reshape(n, self.part, channels // self.part, h, w).transpose(1, 2).reshape(n, channels, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"HetConv2d expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        part = self.part
        if part == 1:
            return F.conv2d(x, self.weight_kxk, self.bias, self.stride, self.padding)
        xg = self._to_grouped(x, self.in_channels)
        out = F.conv2d(xg, self.weight_kxk[self._shifted_to_grouped_filters()], None, self.stride,
                       self.padding, 1, part)
        group_in = self.in_channels // part
        group_out = self.out_channels // part
        weight_1x1 = self.weight_1x1[self._shifted_to_grouped_filters()]
        pieces = []
        for g in range(part):
            w = weight_1x1[g * group_out:(g + 1) * group_out]
            start, stop = g * group_in, (g + 1) * group_in
            y = None
            if start > 0:  # groups before g
                y = F.conv2d(xg[:, :start], w[:, :start, None, None], None, self.stride)
            if stop < self.in_channels:  # groups after g
                after = F.conv2d(xg[:, stop:], w[:, start:, None, None], None, self.stride)
                y = after if y is None else y + after
            pieces.append(y)
        out = out + torch.cat(pieces, dim=1)
        out = self._to_shifted(out, self.out_channels)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        if channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _shifted_to_grouped_filters(self) -> torch.Tensor:
        """Filter indices in grouped order: filters n ≡ 0 (mod P) first, then n ≡ 1, ..."""
        return torch.arange(self.out_channels, device=self.weight_kxk.device).view(-1, self.part).t().reshape(-1)

    @torch.no_grad()
    def dense_weight(self) -> torch.Tensor:
        """The equivalent dense (N, M, K, K) weight: K×K kernels where i ≡ n (mod P), 1×1 (centre tap) elsewhere."""
        n_out, n_in, k, part = self.out_channels, self.in_channels, self.kernel_size, self.part
        dense = self.weight_kxk.new_zeros(n_out, n_in, k, k)
        channel = torch.arange(n_in, device=dense.device)
        for n in range(n_out):
            own = channel[channel % part == n % part]
            dense[n, own] = self.weight_kxk[n]
            if part > 1:
                # weight_1x1 columns follow the grouped input order without the filter's own group.
                grouped = channel.view(-1, part).t().reshape(-1)
                others = grouped[grouped % part != n % part]
                dense[n, others, k // 2, k // 2] = self.weight_1x1[n]
        return dense

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, part={self.part}, "
                f"stride={self.stride}, bias={self.bias is not None}")
