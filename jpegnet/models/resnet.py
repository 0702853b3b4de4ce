"""ResNet-50 (He et al. 2016, the torchvision "v1.5" layout) and its shorter / thinner RGB variants.

Module and state-dict key names are torchvision's (`conv1`, `bn1`, `layer1`..`layer4`, `fc`; blocks with
`conv1..3`, `bn1..3`, `downsample.0/.1`), so torchvision and timm ResNet-50 weights load as they are.

The bottleneck block and the stage builder here are shared with the DCT ResNets of `dct_resnet`, which need
two generalisations torchvision's block lacks: any (in, width, out) channel triple, and a middle kernel of
size 1 or 2 (the "receptive-field-aware" blocks of Gueguen et al. 2018).

Shorter / thinner variants (the RGB speed/accuracy curve of Gueguen et al., Fig. 5) come from two keyword
arguments of every builder here: `width_multiplier` scales every channel count (stem and all stages) and
`depth_multiplier` scales the number of blocks of each stage (rounded up, EfficientNet's rule). A named
variant's own multipliers are multiplied by the ones passed, so `jpegnet.models.scaling.scale_model` can scale
any of them. `resnet50_compound_phi2` is EfficientNet's Table 3 case: ResNet-50 compound-scaled with φ = 2.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..layers.channels import check_multiplier, make_divisible, scale_depth  # noqa: F401  (scale_depth re-exported)
from ..layers.classifier import ClassifierHead
from ..layers.conv import make_conv2d
from .dct_adapter import Stride8Entry, register_dct_variant
from .registry import InputConfig, JpegNetModel, register_model
from .scaling import scale_model
from .weights import register_converter

RESNET50_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)  # width of the 3×3 conv in each stage of ResNet-50
EXPANSION = 4  # a bottleneck's output has 4× its width


def scale_channels(channels: int, multiplier: float, divisor: int = 8) -> int:
    """`channels * multiplier` by `jpegnet.layers.make_divisible` (a multiple of `divisor`, at least `divisor`,
    never more than 10 % below); at multiplier 1 the count stays as it is, even when not a multiple."""
    if multiplier == 1.0:
        return channels
    return make_divisible(channels * multiplier, divisor)


class Bottleneck(nn.Module):
    """1×1 reduce → k×k (stride here, as torchvision) → 1×1 expand, plus the shortcut, then ReLU.

    conv_shortcut=True builds a ConvBlock (CB, the `conv_block` of Keras' ResNet-50 that Gueguen et al.'s
    CB/IB naming comes from): its shortcut is a projection (`downsample`: 1×1 conv + BN), also at stride 1
    with unchanged channels. conv_shortcut=False builds an IdentityBlock (IB): the input is added as it is,
    so the shape must not change. None (the default) takes a projection exactly when the shape changes
    (torchvision's rule), which gives the same blocks wherever a stage's first block changes the shape.
    kernel_size is that of the middle conv: 3 as in ResNet-50, or 1 / 2 in receptive-field-aware blocks
    (an even kernel only at stride 1, padded by one row/column at the bottom/right to keep the size).
    """

    fusable_conv_bn = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # for jpegnet.layers.fuse_bn

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 conv_layer=make_conv2d, conv_shortcut: bool | None = None):
        super().__init__()
        shape_changes = stride != 1 or in_channels != out_channels
        if conv_shortcut is None:
            conv_shortcut = shape_changes
        elif not conv_shortcut and shape_changes:
            raise ValueError(f"an IdentityBlock keeps its input's shape: got {in_channels} -> {out_channels} "
                             f"channels at stride {stride}; use conv_shortcut=True")
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # conv_layer(in, out, kernel_size, stride) builds the middle conv: other families swap it (HetConv).
        self.conv2 = conv_layer(width, width, kernel_size, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if conv_shortcut:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut  # in place: BN's backward needs its input, not its output
        return self.relu(out)


def make_stage(in_channels: int, width: int, out_channels: int, num_blocks: int, stride: int = 1,
               kernel_sizes: Sequence[int] | None = None, first_index: int = 0,
               conv_layer=make_conv2d, conv_block_first: bool = True) -> nn.Sequential:
    """A ResNet stage: one ConvBlock (carrying the stride) then `num_blocks - 1` IdentityBlocks.

    The ConvBlock always has its projection shortcut, even when it keeps the shape (as CB3 (s=1) of the
    Late-Concat-RFA-Thinner luma path, 384 → 384). conv_block_first=False makes every block an
    IdentityBlock: a stage continued part-way, as the Late-Concat models' `layer3` (ResNet-50's stage-4
    IdentityBlocks 1..5). kernel_sizes gives each block's middle kernel (default all 3). Blocks are named
    `first_index`, `first_index + 1`, …, so a stage that starts part-way through a ResNet-50 stage keeps
    ResNet-50's keys.
    """
    if num_blocks < 1:
        raise ValueError(f"a stage needs at least one block, got {num_blocks}")
    kernel_sizes = tuple(kernel_sizes) if kernel_sizes is not None else (3,) * num_blocks
    if len(kernel_sizes) != num_blocks:
        raise ValueError(f"{len(kernel_sizes)} kernel sizes given for {num_blocks} blocks")
    stage = nn.Sequential()
    for i, k in enumerate(kernel_sizes):
        stage.add_module(str(first_index + i), Bottleneck(in_channels if i == 0 else out_channels, width,
                                                          out_channels, stride if i == 0 else 1, k, conv_layer,
                                                          conv_shortcut=i == 0 and conv_block_first))
    return stage


def init_resnet_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: He-normal (fan_out) convs, BN at identity, default Linear."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetBase(ClassifierHead, JpegNetModel):
    """The part every ResNet-like model here shares: the classifier head (global average pool, `fc`).

    Subclasses call `init_head(num_features, num_classes)` after building their stages."""


class ResNet(Stride8Entry, ResNetBase):
    """Bottleneck ResNet in torchvision's layout (stride on the 3×3 conv), with width / depth multipliers.

    blocks: blocks per stage (ResNet-50: 3, 4, 6, 3). width_multiplier scales the stem and every stage's
    channels; depth_multiplier scales `blocks` (rounded up, at least one per stage).

    Stride-8 entry protocol (for `jpegnet.models.dct_adapter`): the entry is the input of `layer3`
    (`stride8_channels` = layer2's output channels, 512 at width 1); `drop_before_stride8()` removes the stem,
    `layer1` and `layer2`.
    """

    fusable_conv_bn = (("conv1", "bn1"),)  # the stem, for jpegnet.layers.fuse_bn
    stride8_prefix = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")

    def __init__(self, blocks: Sequence[int] = RESNET50_BLOCKS, num_classes: int = 1000,
                 width_multiplier: float = 1.0, depth_multiplier: float = 1.0, conv_layer=make_conv2d):
        super().__init__()
        width_multiplier = check_multiplier("width_multiplier", width_multiplier)
        depth_multiplier = check_multiplier("depth_multiplier", depth_multiplier)
        blocks = tuple(blocks)
        if len(blocks) != 4 or not all(isinstance(b, int) and b >= 1 for b in blocks):
            raise ValueError(f"blocks must be 4 positive ints (one per stage), got {blocks}")
        self.blocks = tuple(scale_depth(b, depth_multiplier) for b in blocks)
        self.width_multiplier, self.depth_multiplier = width_multiplier, depth_multiplier
        self.input_config = InputConfig(representation="rgb")

        stem = scale_channels(64, width_multiplier)
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = stem
        self.feature_info = [dict(module="relu", num_chs=stem, reduction=2)]
        for i, (base_width, n) in enumerate(zip(STAGE_WIDTHS, self.blocks)):
            width = scale_channels(base_width, width_multiplier)
            out_ch = width * EXPANSION
            setattr(self, f"layer{i + 1}", make_stage(in_ch, width, out_ch, n, stride=1 if i == 0 else 2,
                                                      conv_layer=conv_layer))
            self.feature_info.append(dict(module=f"layer{i + 1}", num_chs=out_ch, reduction=4 * 2 ** i))
            in_ch = out_ch
        self.init_head(in_ch, num_classes)
        init_resnet_weights(self)

    # -- stride-8 entry protocol (forward_features = forward_from_stride8(forward_to_stride8(x))) ----------
    @property
    def stride8_channels(self) -> int:
        return self.layer3[0].conv1.in_channels

    def forward_from_stride8(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(x))


def _same_keys(model: nn.Module, state_dict: dict) -> dict:
    # Our key names are torchvision's, and timm's ResNet uses the same ones (checked by the parity tests);
    # strict loading in import_weights reports anything that does not fit.
    return dict(state_dict)


register_converter(ResNet, "torchvision")(_same_keys)
register_converter(ResNet, "timm")(_same_keys)


def _resnet50_point(num_classes: int, width: float, depth: float, kwargs: dict) -> ResNet:
    """A named ResNet-50 point: its own multipliers times any the caller passes (so it can be scaled further)."""
    width *= check_multiplier("width_multiplier", kwargs.pop("width_multiplier", 1.0))
    depth *= check_multiplier("depth_multiplier", kwargs.pop("depth_multiplier", 1.0))
    return ResNet(RESNET50_BLOCKS, num_classes=num_classes, width_multiplier=width, depth_multiplier=depth, **kwargs)


@register_model
def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50, identical to torchvision's `resnet50` (25,557,032 parameters at 1000 classes).

    kwargs: width_multiplier, depth_multiplier (shorter / thinner variants).
    """
    return ResNet(RESNET50_BLOCKS, num_classes=num_classes, **kwargs)


@register_model
def resnet50_thin0_75(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 at 3/4 width (stem 48, stage widths 48/96/192/384, 1536 features); same depth."""
    return _resnet50_point(num_classes, 0.75, 1.0, kwargs)


@register_model
def resnet50_thin0_5(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 at half width (stem 32, stage widths 32/64/128/256, 1024 features); same depth."""
    return _resnet50_point(num_classes, 0.5, 1.0, kwargs)


@register_model
def resnet50_short(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 at 2/3 depth: blocks (2, 3, 4, 2) instead of (3, 4, 6, 3); full width."""
    return _resnet50_point(num_classes, 1.0, 2 / 3, kwargs)


@register_model
def resnet50_shorter(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 at half depth: blocks (2, 2, 3, 2) (3·½ and 1·½ round up); full width."""
    return _resnet50_point(num_classes, 1.0, 0.5, kwargs)


@register_model
def resnet50_compound_phi2(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 compound-scaled with φ = 2 (EfficientNet, Table 3, "ResNet-50 compound scale": 16.7B FLOPS).

    Table 3 gives only the FLOPS (4.1B → 16.7B, ≈ 2² as eq. 3 intends), hence φ = 2 with α, β, γ = 1.2, 1.1,
    1.15: depth × 1.44 → blocks (5, 6, 9, 5), width × 1.21 → stage widths 80/152/312/616, input
    224 × 1.3225 = 296.2 → 304 px (a multiple of 16, see `jpegnet.models.scaling`): 55,662,904 parameters,
    16.73 GMACs (tests/test_scaling.py checks it against the table).
    """
    return scale_model("resnet50", 2, num_classes=num_classes, **kwargs)


register_dct_variant("resnet50")

__all__ = ["Bottleneck", "ResNet", "ResNetBase", "init_resnet_weights", "make_stage", "scale_channels",
           "scale_depth", "resnet50", "resnet50_thin0_75", "resnet50_thin0_5", "resnet50_short",
           "resnet50_shorter", "resnet50_compound_phi2"]
