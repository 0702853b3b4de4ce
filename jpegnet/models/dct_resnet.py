"""The seven DCT ResNet-50 variants of Gueguen et al., "Faster Neural Networks Straight from JPEG" (NeurIPS 2018).

Every model takes `model(y, cbcr)`: y the luma DCT coefficients (N, 64, H/8, W/8), cbcr the two 4:2:0
chroma planes stacked (N, 128, H/16, W/16; Cb's 64 frequencies, then Cr's). They keep ResNet-50's bottleneck
blocks (shared with `resnet.py`) and differ in how the two differently strided inputs are brought together
(paper Fig. 3; reference notes in papers.md §1.2):

- UpSampling: BN on both inputs, chroma 2× nearest-upsampled, concat (192 ch, stride 8), then ResNet-50 from
  its third stage ("CB3") with stride 1.
- UpSampling-RFA: the same, with a "receptive-field-aware" stage before CB3: CB4-width blocks with middle
  kernels 1, 2, 3 (CB(k=1, s=1), IB(k=2), IB).
- Deconvolution-RFA: UpSampling-RFA with a learned 2×2 stride-2 deconvolution per chroma plane instead of
  the upsampling.
- DownSampling: luma brought to stride 16 by C(256, 2, 2), concat with chroma (stride 16), then CB3 and CB4
  with stride 1.
- Late-Concat, Late-Concat-RFA, Late-Concat-RFA-Thinner: separate luma and chroma paths that meet at
  stride 16 in the middle of ResNet-50's fourth stage; the luma path is the deeper one.

Names: modules that equal ResNet-50's keep its state-dict names (`layer2` … `layer4`, `fc`; a stage that
starts part-way through a ResNet-50 stage keeps that stage's block indices), so
`load_shared_from_resnet50` can take them from an RGB ResNet-50. Variant-specific modules have their own
names (`stem`, `rfa_stage`, `y_stage1`, `cbcr_stage`, …).

Choices the paper's description leaves open (made here, and repeated in each builder's docstring):
- The BN the figure applies after a concat is applied per input before it (BN on y, BN on chroma). BN is
  per channel, so this is the same function with the same parameters; before a nearest upsampling it runs
  on 4× fewer values.
- Convolutions have no bias (a BN follows each), including the chroma deconvolutions.
- In the Late-Concat models the luma stride-2 block and the chroma block end with 512 channels each (the
  reference reimplementation's channel table), so their concat has ResNet-50's 1024.

CB / IB: every block the figure marks CB is a ConvBlock with its projection shortcut (the figure's CB/IB
naming is Keras' ResNet-50 `conv_block` / `identity_block`; a conv_block projects even at stride 1 with
unchanged channels), every IB an IdentityBlock: `make_stage` builds a stage as one CB then IBs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..input_config import DCT_CBCR_CHANNELS as CBCR_CHANNELS, DCT_Y_CHANNELS as Y_CHANNELS
from ..layers.channels import check_multiplier, scale_depth
from ..layers.conv import ConvNormAct
from .registry import InputConfig, register_model
from .resnet import (EXPANSION, RESNET50_BLOCKS, STAGE_WIDTHS, ResNetBase, init_resnet_weights, make_stage,
                     scale_channels)


class DctResNetBase(ResNetBase):
    """Shared by the seven variants: DCT input config, `forward_features(y, cbcr)` = merge then stages."""

    def _setup(self, num_classes: int, width_multiplier: float, depth_multiplier: float) -> None:
        self.width_multiplier = check_multiplier("width_multiplier", width_multiplier)
        self.depth_multiplier = check_multiplier("depth_multiplier", depth_multiplier)
        self.input_config = InputConfig(representation="dct")

    def check_inputs(self, y: torch.Tensor, cbcr: torch.Tensor) -> None:
        """Raise ValueError unless y is (N, 64, h, w) and cbcr (N, 128, h/2, w/2) with h, w even."""
        if y.dim() != 4 or cbcr.dim() != 4 or y.shape[1] != Y_CHANNELS or cbcr.shape[1] != CBCR_CHANNELS:
            raise ValueError(f"expected y (N, {Y_CHANNELS}, H/8, W/8) and cbcr (N, {CBCR_CHANNELS}, H/16, W/16), "
                             f"got {tuple(y.shape)} and {tuple(cbcr.shape)}")
        h, w = y.shape[-2:]
        if h % 2 or w % 2 or cbcr.shape[-2] * 2 != h or cbcr.shape[-1] * 2 != w or cbcr.shape[0] != y.shape[0]:
            raise ValueError(f"y {tuple(y.shape)} and cbcr {tuple(cbcr.shape)} do not come from one image of a size "
                             f"that is a multiple of 16 (cbcr must be half of y's height and width)")

    def _c(self, channels: int) -> int:
        return scale_channels(channels, self.width_multiplier)

    def _n(self, num_blocks: int) -> int:
        return scale_depth(num_blocks, self.depth_multiplier)

    def _rfa_stage(self, in_channels: int, width: int, out_channels: int) -> nn.Sequential:
        """The receptive-field-aware group: CB (k=1, s=1), IB (k=2), IB (k=3), at stride 8.

        Depth scaling keeps the k=1, k=2 lead and adds or removes k=3 IdentityBlocks at the end.
        """
        n = self._n(3)
        return make_stage(in_channels, width, out_channels, n, stride=1, kernel_sizes=((1, 2) + (3,) * n)[:n])

    def _resnet_stage(self, stage: int, in_channels: int, stride: int = 2, first_index: int = 0) -> nn.Sequential:
        """ResNet-50's stage `stage` (2..5 in the paper's CB numbering: CB3 is torchvision's layer2), depth-scaled.

        A stage that starts part-way (first_index > 0: the Late-Concat `layer3`, IdentityBlocks 1..5 of
        ResNet-50's stage 4) has no ConvBlock: its blocks are IdentityBlocks, at least one.
        """
        width = self._c(STAGE_WIDTHS[stage - 2])
        n = max(1, self._n(RESNET50_BLOCKS[stage - 2]) - first_index)
        return make_stage(in_channels, width, width * EXPANSION, n, stride, first_index=first_index,
                          conv_block_first=first_index == 0)


class ChromaUpsample(nn.Module):
    """Chroma (N, 128, H/16, W/16) → (N, 128, H/8, W/8): BN, then 2× nearest upsampling (the paper's "U")."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(CBCR_CHANNELS)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, cbcr: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.bn(cbcr))


class ChromaDeconv(nn.Module):
    """Chroma → stride 8 by the paper's "Deconv": a 2×2 stride-2 transposed conv with 64 outputs for Cb and a
    separate one for Cr, then BN.

    The two separate deconvolutions are one grouped transposed conv (groups=2): the same parameters and the
    same function, in one kernel launch and without splitting the input.
    """

    def __init__(self):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(CBCR_CHANNELS, CBCR_CHANNELS, kernel_size=2, stride=2, groups=2, bias=False)
        self.bn = nn.BatchNorm2d(CBCR_CHANNELS)

    def forward(self, cbcr: torch.Tensor) -> torch.Tensor:
        return self.bn(self.deconv(cbcr))


class EarlyMergeStem(nn.Module):
    """BN on luma, chroma brought to stride 8 (upsampling or deconvolution), concat: (N, 192, H/8, W/8)."""

    def __init__(self, chroma: str):
        super().__init__()
        self.bn_y = nn.BatchNorm2d(Y_CHANNELS)
        if chroma == "upsample":
            self.chroma = ChromaUpsample()
        elif chroma == "deconv":
            self.chroma = ChromaDeconv()
        else:
            raise ValueError(f"chroma must be 'upsample' or 'deconv', got {chroma!r}")
        self.out_channels = Y_CHANNELS + CBCR_CHANNELS

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.bn_y(y), self.chroma(cbcr)], dim=1)


class EarlyMergeDctResNet(DctResNetBase):
    """UpSampling, UpSampling-RFA and Deconvolution-RFA: merge at stride 8, then ResNet-50 from CB3 (s=1).

    rfa=True inserts `rfa_stage` between the merge and CB3: a ConvBlock with stage-4 channels
    (256, 256, 1024) and middle kernel 1, then IdentityBlocks with kernels 2 and 3 (paper: "CB4 (k=1, s=1),
    IB(k=2), IB"). CB3 then takes 1024 channels in.
    """

    def __init__(self, num_classes: int = 1000, chroma: str = "upsample", rfa: bool = False,
                 width_multiplier: float = 1.0, depth_multiplier: float = 1.0):
        super().__init__()
        self._setup(num_classes, width_multiplier, depth_multiplier)
        self.stem = EarlyMergeStem(chroma)
        # the deconvolution reads the raw chroma before its BatchNorm: only the upsampling stem's can be folded
        self.input_batchnorms = (("y", "stem.bn_y"),) + ((("cbcr", "stem.chroma.bn"),) if chroma == "upsample"
                                                          else ())
        in_ch = self.stem.out_channels
        self.feature_info = []
        if rfa:
            self.rfa_stage = self._rfa_stage(in_ch, self._c(256), self._c(256) * EXPANSION)
            in_ch = self.rfa_stage[0].conv3.out_channels
            self.feature_info.append(dict(module="rfa_stage", num_chs=in_ch, reduction=8))
        else:
            self.rfa_stage = nn.Identity()
        self.layer2 = self._resnet_stage(3, in_ch, stride=1)
        self.layer3 = self._resnet_stage(4, self.layer2[0].conv3.out_channels)
        self.layer4 = self._resnet_stage(5, self.layer3[0].conv3.out_channels)
        for name, reduction in (("layer2", 8), ("layer3", 16), ("layer4", 32)):
            self.feature_info.append(dict(module=name, num_chs=getattr(self, name)[0].conv3.out_channels,
                                          reduction=reduction))
        self.init_head(self.layer4[0].conv3.out_channels, num_classes)
        init_resnet_weights(self)

    def forward_features(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        self.check_inputs(y, cbcr)
        x = self.rfa_stage(self.stem(y, cbcr))
        return self.layer4(self.layer3(self.layer2(x)))


class DownSamplingStem(nn.Module):
    """Luma to stride 16 by C(256, 2, 2) + BN + ReLU; chroma BN; concat: (N, 256 + 128, H/16, W/16)."""

    def __init__(self, y_channels: int):
        super().__init__()
        self.y_conv = ConvNormAct(Y_CHANNELS, y_channels, kernel_size=2, stride=2, padding=0)
        self.bn_cbcr = nn.BatchNorm2d(CBCR_CHANNELS)
        self.out_channels = y_channels + CBCR_CHANNELS

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.y_conv(y), self.bn_cbcr(cbcr)], dim=1)


class DownSamplingDctResNet(DctResNetBase):
    """DownSampling: merge at stride 16, then CB3 (s=1) + 3 IB, CB4 (s=1) + 5 IB, CB5 (s=2) + 2 IB."""

    def __init__(self, num_classes: int = 1000, width_multiplier: float = 1.0, depth_multiplier: float = 1.0):
        super().__init__()
        self._setup(num_classes, width_multiplier, depth_multiplier)
        self.stem = DownSamplingStem(self._c(256))
        self.input_batchnorms = (("cbcr", "stem.bn_cbcr"),)  # the luma goes straight into a convolution
        self.layer2 = self._resnet_stage(3, self.stem.out_channels, stride=1)
        self.layer3 = self._resnet_stage(4, self.layer2[0].conv3.out_channels, stride=1)
        self.layer4 = self._resnet_stage(5, self.layer3[0].conv3.out_channels)
        self.feature_info = [dict(module=name, num_chs=getattr(self, name)[0].conv3.out_channels, reduction=r)
                             for name, r in (("layer2", 16), ("layer3", 16), ("layer4", 32))]
        self.init_head(self.layer4[0].conv3.out_channels, num_classes)
        init_resnet_weights(self)

    def forward_features(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        self.check_inputs(y, cbcr)
        return self.layer4(self.layer3(self.layer2(self.stem(y, cbcr))))


class LateConcatDctResNet(DctResNetBase):
    """Late-Concat family: a deep luma path and a one-block chroma path, concatenated at stride 16.

    Luma (stride 8): BN → `y_stage1` (optional RFA stage: CB(k=1, s=1), IB(k=2), IB; width 256) →
    `y_stage2` (CB(s=1) + 3 IB) → `y_stage3` (one CB, k=3, s=2, width 128) → stride 16.
    Chroma (stride 16): BN → `cbcr_stage` (one CB, k=1, s=1, width 128).
    Concat (ResNet-50's 1024 channels) → `layer3` = ResNet-50's stage-4 IdentityBlocks 1..5 (keys layer3.1 …
    layer3.5) → `layer4` = ResNet-50's stage 5 → pool → fc.
    Every CB has its projection shortcut, also `y_stage2`'s first block where it keeps the shape (the
    Thinner's 384 → 384).

    Channel arguments are the unscaled outputs of each block group; `y_stage3`'s output is whatever the
    concat needs beyond the chroma channels (so width multipliers keep the concat at ResNet-50's width).
    depth_multiplier scales the block groups (`y_stage1` as an RFA group, `y_stage2` from 4 blocks, stage 4
    from 6 = `y_stage3`'s CB + `layer3`'s IBs, `layer4` from 3); the one-CB `y_stage3` and `cbcr_stage` stay
    single blocks.
    """

    def __init__(self, num_classes: int = 1000, *, y_stage1_out: int | None, y_stage2_width: int,
                 y_stage2_out: int, cbcr_out: int, width_multiplier: float = 1.0, depth_multiplier: float = 1.0):
        super().__init__()
        self._setup(num_classes, width_multiplier, depth_multiplier)
        c = self._c
        concat_ch = c(STAGE_WIDTHS[2]) * EXPANSION
        self.bn_y = nn.BatchNorm2d(Y_CHANNELS)
        self.input_batchnorms = (("y", "bn_y"), ("cbcr", "bn_cbcr"))
        in_ch = Y_CHANNELS
        self.feature_info = []
        if y_stage1_out is not None:
            self.y_stage1 = self._rfa_stage(in_ch, c(256), c(y_stage1_out))
            in_ch = c(y_stage1_out)
            self.feature_info.append(dict(module="y_stage1", num_chs=in_ch, reduction=8))
        else:
            self.y_stage1 = nn.Identity()
        self.y_stage2 = make_stage(in_ch, c(y_stage2_width), c(y_stage2_out), self._n(4), stride=1)
        self.feature_info.append(dict(module="y_stage2", num_chs=c(y_stage2_out), reduction=8))
        cbcr_ch = c(cbcr_out)
        if not 0 < cbcr_ch < concat_ch:
            raise ValueError(f"chroma channels ({cbcr_ch}) must be fewer than the concat's ({concat_ch})")
        self.y_stage3 = make_stage(c(y_stage2_out), c(128), concat_ch - cbcr_ch, 1, stride=2)
        self.bn_cbcr = nn.BatchNorm2d(CBCR_CHANNELS)
        self.cbcr_stage = make_stage(CBCR_CHANNELS, c(128), cbcr_ch, 1, stride=1, kernel_sizes=(1,))
        self.layer3 = self._resnet_stage(4, concat_ch, stride=1, first_index=1)
        self.layer4 = self._resnet_stage(5, concat_ch)
        self.feature_info += [dict(module="layer3", num_chs=concat_ch, reduction=16),
                              dict(module="layer4", num_chs=self.layer4[0].conv3.out_channels, reduction=32)]
        self.init_head(self.layer4[0].conv3.out_channels, num_classes)
        init_resnet_weights(self)

    def forward_features(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        self.check_inputs(y, cbcr)
        y = self.y_stage3(self.y_stage2(self.y_stage1(self.bn_y(y))))
        cbcr = self.cbcr_stage(self.bn_cbcr(cbcr))
        return self.layer4(self.layer3(torch.cat([y, cbcr], dim=1)))


# -- registered variants --------------------------------------------------------------------------------

@register_model
def dct_upsampling(num_classes: int = 1000, **kwargs) -> EarlyMergeDctResNet:
    """UpSampling (Gueguen et al. 2018): BN(y) ‖ up2×(BN(cbcr)) → 192 ch at stride 8 → ResNet-50 from CB3 (s=1).

    Choices: BN per input before the concat (same function as one BN after it); ResNet-50's stage 3 (layer2)
    runs at stride 1 on the 192-channel merge, then layer3 / layer4 as in ResNet-50.
    kwargs: width_multiplier, depth_multiplier.
    """
    return EarlyMergeDctResNet(num_classes, chroma="upsample", rfa=False, **kwargs)


@register_model
def dct_upsampling_rfa(num_classes: int = 1000, **kwargs) -> EarlyMergeDctResNet:
    """UpSampling-RFA: UpSampling with a receptive-field-aware stage before CB3.

    `rfa_stage` = CB(k=1, s=1) + IB(k=2) + IB(k=3), stage-4 channels (256, 256, 1024), at stride 8; then
    CB3 (s=1, 1024 → 512) + 3 IB, then ResNet-50's stages 4 and 5.
    Choices: the figure shows "CB4 (k=1, s=1), IB(k=2), IB" in place of the start of UpSampling; we insert
    those three blocks before an unchanged CB3 (the RFA pattern of Late-Concat-RFA's luma path); the k=2
    conv is padded at the bottom/right.
    kwargs: width_multiplier, depth_multiplier.
    """
    return EarlyMergeDctResNet(num_classes, chroma="upsample", rfa=True, **kwargs)


@register_model
def dct_deconvolution_rfa(num_classes: int = 1000, **kwargs) -> EarlyMergeDctResNet:
    """Deconvolution-RFA: UpSampling-RFA with a learned 2×2 stride-2 deconvolution (64 outputs) per chroma plane.

    Choices: the two deconvolutions are one grouped ConvTranspose2d without bias (the following BN has its
    own shift); BN on y and on the deconvolved chroma, then concat (the figure's BN after the concat).
    kwargs: width_multiplier, depth_multiplier.
    """
    return EarlyMergeDctResNet(num_classes, chroma="deconv", rfa=True, **kwargs)


@register_model
def dct_downsampling(num_classes: int = 1000, **kwargs) -> DownSamplingDctResNet:
    """DownSampling: y → C(256, 2, 2) → stride 16, concat with chroma (384 ch) → CB3 (s=1), CB4 (s=1), CB5.

    Choices: the 2×2 stride-2 luma conv is followed by BN + ReLU (as every conv of ResNet-50); chroma gets a
    BN before the concat; the concat has 256 + 128 = 384 channels (the figure's "(14, 14, 192)" does not add
    up with C(256, …)); layer2 and layer3 run at stride 1, layer4 at stride 2 (output stride 32 as ResNet-50).
    kwargs: width_multiplier, depth_multiplier.
    """
    return DownSamplingDctResNet(num_classes, **kwargs)


@register_model
def dct_late_concat(num_classes: int = 1000, **kwargs) -> LateConcatDctResNet:
    """Late-Concat: luma BN → CB4 (s=1) + 3 IB (256, 256, 1024) at stride 8 → CB (s=2) → 512 ch at stride 16;
    chroma BN → CB4 (k=1, s=1) → 512 ch; concat 1024 → ResNet-50 stage 4's 5 IB → stage 5.

    Choices: the figure lists "CB4 (s=1), IB, IB, IB" and a final "CB4" on the luma path and "CB4 (k=1, s=1)"
    on the chroma path; we read the first group with stage-4 channels as labelled and, as in the
    Late-Concat-RFA channel table, give the two blocks that meet at the concat width 128 and 512 outputs each.
    kwargs: width_multiplier, depth_multiplier.
    """
    return LateConcatDctResNet(num_classes, y_stage1_out=None, y_stage2_width=256, y_stage2_out=1024,
                               cbcr_out=512, **kwargs)


@register_model
def dct_late_concat_rfa(num_classes: int = 1000, **kwargs) -> LateConcatDctResNet:
    """Late-Concat-RFA: luma BN → CB(k=1, s=1) + IB(k=2) + IB (256, 256, 1024) → CB3 (s=1) + 3 IB (128, 128, 512)
    → CB (s=2, 128, 128, 512); chroma BN → CB(k=1, s=1) (128, 128, 512); concat 1024 → stage 4's 5 IB → stage 5.

    Channel counts from the reference channel table (papers.md §1.2); the k=2 conv pads bottom/right.
    kwargs: width_multiplier, depth_multiplier.
    """
    return LateConcatDctResNet(num_classes, y_stage1_out=1024, y_stage2_width=128, y_stage2_out=512,
                               cbcr_out=512, **kwargs)


@register_model
def dct_late_concat_rfa_thinner(num_classes: int = 1000, **kwargs) -> LateConcatDctResNet:
    """Late-Concat-RFA-Thinner: Late-Concat-RFA with luma outputs {1024, 512, 512} → {384, 384, 768} and the
    chroma block's 512 → 256 (concat still 1024). Block widths (the 1×1-reduced channels) unchanged.

    The luma CB3 (s=1) keeps 384 channels and is still a ConvBlock with its 1×1 projection, as the figure's
    CB (until issue 13 it was built as an IdentityBlock: 25,737,576 params, 3.97 GMACs; now 25,885,800 and
    4.09 GMACs at 224, which tests/test_dct_resnet.py counts by hand).
    kwargs: width_multiplier, depth_multiplier.
    """
    return LateConcatDctResNet(num_classes, y_stage1_out=384, y_stage2_width=128, y_stage2_out=384,
                               cbcr_out=256, **kwargs)


DCT_RESNET_VARIANTS = ("dct_upsampling", "dct_upsampling_rfa", "dct_deconvolution_rfa", "dct_downsampling",
                       "dct_late_concat", "dct_late_concat_rfa", "dct_late_concat_rfa_thinner")


# -- taking the blocks shared with ResNet-50 from an RGB ResNet-50 ------------------------------------------

# Modules of the DCT ResNets whose state-dict names are ResNet-50's (layer2 blocks that follow a changed
# ConvBlock, layer3, layer4, fc) are loaded by name; `y_stage2` of Late-Concat-RFA has CB3's shape, so its
# IdentityBlocks can come from ResNet-50's layer2 too.
_RENAMED_SHARED = {"y_stage2.": "layer2."}


def _resnet50_name(key: str) -> str:
    for own_prefix, rgb_prefix in _RENAMED_SHARED.items():
        if key.startswith(own_prefix):
            return rgb_prefix + key[len(own_prefix):]
    return key


def _block_prefix(key: str) -> str:
    """The unit loaded or skipped as a whole: 'layer3.2.' for block keys, 'fc.' for the classifier."""
    parts = key.split(".")
    if len(parts) > 2 and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}."
    return f"{parts[0]}."


def load_shared_from_resnet50(dct_model: nn.Module, rgb_state_dict: dict, include_fc: bool = True) -> list[str]:
    """Copy into `dct_model` every block it shares with ResNet-50, taken from an RGB ResNet-50 state dict.

    A block (e.g. `layer3.2`, the classifier `fc`) is shared when every tensor of it exists in the RGB state
    dict under the same name (or, for `y_stage2.*`, under `layer2.*`) with the same shape; a block with any
    differing tensor (e.g. a ConvBlock whose input channels changed) is left as initialised, never loaded in
    part. `rgb_state_dict` uses torchvision / timm / jpegnet ResNet-50 names (all the same).
    Returns the sorted list of the DCT model's state-dict keys that were loaded.
    """
    own = dct_model.state_dict()
    groups: dict[str, list[str]] = {}
    for key in own:
        groups.setdefault(_block_prefix(key), []).append(key)
    loaded: dict[str, torch.Tensor] = {}
    for prefix, keys in groups.items():
        if prefix == "fc." and not include_fc:
            continue
        sources = [_resnet50_name(k) for k in keys]
        if all(s in rgb_state_dict and rgb_state_dict[s].shape == own[k].shape for k, s in zip(keys, sources)):
            loaded.update({k: rgb_state_dict[s] for k, s in zip(keys, sources)})
    dct_model.load_state_dict(loaded, strict=False)
    return sorted(loaded)


__all__ = ["DCT_RESNET_VARIANTS", "DownSamplingDctResNet", "EarlyMergeDctResNet", "LateConcatDctResNet",
           "load_shared_from_resnet50"] + list(DCT_RESNET_VARIANTS)
