"""The Exact Fusion Model (EFM) of CSPNet (Wang et al., CVPRW 2020, §3.2) as a neck over multi-scale features.

For each output scale s, EFM fuses the feature maps of scales s−1, s and s+1 (the finer one max-pooled and the
coarser one upsampled to scale s's size), so that each scale sees the fields of view around its own anchor
size, and compresses the concatenation with a Maxout unit: a 1×1 convolution to `pieces` candidate maps per
output channel, BatchNorm, and the element-wise maximum over the pieces. Maxout both reduces the width of
the fused pyramid (the paper uses it to cut memory traffic) and is the non-linearity. The first and last
scales have only one neighbour and fuse two maps.

Input: the list a `features_only` backbone returns (finest first); output: one map per input scale with
`out_channels` channels at that scale's resolution.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Maxout(nn.Module):
    """1×1 conv to out_channels × pieces, BatchNorm, then the maximum over each channel's `pieces` candidates."""

    def __init__(self, in_channels: int, out_channels: int, pieces: int = 2):
        super().__init__()
        if pieces < 2:
            raise ValueError(f"Maxout needs at least 2 pieces, got {pieces}")
        self.out_channels, self.pieces = out_channels, pieces
        self.conv = nn.Conv2d(in_channels, out_channels * pieces, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        n, _, h, w = x.shape
        return x.view(n, self.out_channels, self.pieces, h, w).amax(dim=2)


def _resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_max_pool2d(x, size)  # finer scale: keep the strongest response per cell
    return F.interpolate(x, size=size, mode="nearest")


class EFM(nn.Module):
    """Exact Fusion Model over `len(in_channels)` (usually three) scales, finest first."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, pieces: int = 2):
        super().__init__()
        in_channels = list(in_channels)
        if len(in_channels) < 2:
            raise ValueError(f"EFM needs at least two scales to fuse, got {len(in_channels)}")
        if any(not isinstance(c, int) or c < 1 for c in in_channels) or out_channels < 1:
            raise ValueError(f"channel counts must be positive ints, got {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.fuse = nn.ModuleList(Maxout(sum(in_channels[j] for j in self._neighbours(s)), out_channels, pieces)
                                  for s in range(len(in_channels)))

    @classmethod
    def from_backbone(cls, backbone: nn.Module, out_channels: int = 256, pieces: int = 2) -> "EFM":
        """An EFM sized for a `features_only` model's feature_info."""
        return cls([info["num_chs"] for info in backbone.feature_info], out_channels, pieces)

    def _neighbours(self, s: int) -> list[int]:
        return [j for j in (s - 1, s, s + 1) if 0 <= j < len(self.in_channels)]

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.in_channels):
            raise ValueError(f"EFM was built for {len(self.in_channels)} scales, got {len(features)} maps")
        for s, (f, c) in enumerate(zip(features, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != c:
                raise ValueError(f"scale {s}: expected (N, {c}, H, W), got {tuple(f.shape)}")
        out = []
        for s, fuse in enumerate(self.fuse):
            size = tuple(features[s].shape[-2:])
            out.append(fuse(torch.cat([_resize_to(features[j], size) for j in self._neighbours(s)], dim=1)))
        return out
