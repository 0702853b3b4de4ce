"""HetConv networks (Singh et al., "HetConv: Heterogeneous Kernel-Based Convolutions for Deep CNNs", CVPR 2019).

Standard networks whose 3×3 convolutions become `jpegnet.layers.HetConv2d` with part P (P = 1 is the plain
network): every filter keeps M/P 3×3 kernels and the rest become 1×1.

- `hetconv_vgg16_cifar`: the CIFAR VGG-16 the paper evaluates (13 conv-BN-ReLU layers on 32×32 input, two FC
  layers, as in Li et al.'s "Pruning Filters for Efficient ConvNets"); FLOPs at P = 1..64 match the paper's
  table (313.74M … 41.05M) within 0.3%.
- `hetconv_vgg16`: ImageNet VGG-16 with BN, torchvision's layout (`features.N`, `classifier.N`).
- `hetconv_resnet50`: ResNet-50 (torchvision key names) with the 3×3 conv of every bottleneck as HetConv.

The first layer (3 input channels) stays a standard convolution: P must divide the input channels.
`part` is a keyword argument of every builder: create_model('hetconv_vgg16_cifar', part=4).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.classifier import ClassifierHead
from ..layers.hetconv import HetConv2d
from .registry import InputConfig, JpegNetModel, register_model
from .resnet import ResNet

__all__ = ["HetVGG", "VALID_PARTS"]

VALID_PARTS = (1, 2, 4, 8, 16, 32, 64)
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _check_part(part) -> int:
    if isinstance(part, bool) or not isinstance(part, int) or part not in VALID_PARTS:
        raise ValueError(f"part must be one of {VALID_PARTS}, got {part!r}")
    return part


def _conv3x3(in_ch: int, out_ch: int, part: int, stride: int = 1) -> nn.Module:
    # A layer whose input cannot be split into P groups (the RGB input) stays standard, as in the paper.
    if part > 1 and in_ch % part == 0:
        return HetConv2d(in_ch, out_ch, 3, part=part, stride=stride)
    return nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)


def _init_hetconv(m: HetConv2d) -> None:
    # fan_out of a het filter bank: the same per-tap scale as the dense layer it replaces.
    std = (2.0 / (m.out_channels * m.kernel_size ** 2)) ** 0.5
    nn.init.normal_(m.weight_kxk, 0.0, std)
    if m.weight_1x1 is not None:
        nn.init.normal_(m.weight_1x1, 0.0, std)


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, HetConv2d):
            _init_hetconv(m)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class HetVGG(ClassifierHead, JpegNetModel):
    """VGG-16 with BN and HetConv layers. `cifar=True`: 32×32 input, FC 512-512-classes; else ImageNet's
    7×7 pooling and FC 4096-4096-classes with dropout (`drop_rate`, between the hidden FC layers).

    The hidden FC layers are the head's `pre_logits` (their output is the feature `forward_head(x,
    pre_logits=True)` returns); the last FC is `classifier`."""

    classifier_attr = "classifier"

    def __init__(self, part: int = 1, num_classes: int = 1000, cifar: bool = False, drop_rate: float = 0.5):
        super().__init__()
        self.part = _check_part(part)
        self.cifar = cifar
        layers: list[nn.Module] = []
        self.feature_info = []
        in_ch, reduction = 3, 1
        for v in VGG16_CONFIG:
            if v == "M":
                reduction *= 2
                layers.append(nn.MaxPool2d(2, 2))
                # The ReLU just before each pooling is the last full-resolution activation of a stage.
                self.feature_info.append(dict(module=f"features.{len(layers) - 2}", num_chs=in_ch,
                                              reduction=reduction // 2))
                continue
            layers += [_conv3x3(in_ch, v, part), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            in_ch = v
        self.features = nn.Sequential(*layers)
        if cifar:
            self.input_config = InputConfig(input_size=(32, 32), mean=CIFAR_MEAN, std=CIFAR_STD, crop_pct=1.0)
            # 32 px is 1×1 after five poolings; larger inputs are averaged down to it.
            pool = nn.AdaptiveAvgPool2d((1, 1))
            # (the leading Flatten is a no-op after the head's flatten; it keeps the state-dict indices)
            hidden = nn.Sequential(nn.Flatten(1), nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        else:
            pool = nn.AdaptiveAvgPool2d((7, 7))
            hidden = nn.Sequential(nn.Flatten(1), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True),
                                   nn.Dropout(drop_rate), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                                   nn.Dropout(drop_rate))
        self.init_head(512 if cifar else 4096, num_classes, pool=pool, hidden=hidden)
        _init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model
def hetconv_vgg16_cifar(num_classes: int = 1000, part: int = 1, **kwargs) -> HetVGG:
    """HetConv VGG-16 for 32×32 input (CIFAR), the paper's main benchmark. Pass num_classes=10 for CIFAR-10."""
    return HetVGG(part=part, num_classes=num_classes, cifar=True, **kwargs)


@register_model
def hetconv_vgg16(num_classes: int = 1000, part: int = 1, **kwargs) -> HetVGG:
    """HetConv VGG-16 with BN for ImageNet (224×224)."""
    return HetVGG(part=part, num_classes=num_classes, cifar=False, **kwargs)


@register_model
def hetconv_resnet50(num_classes: int = 1000, part: int = 1, **kwargs) -> ResNet:
    """ResNet-50 (torchvision's layout and keys, stride-8 entry) with every bottleneck's 3×3 conv as HetConv."""
    part = _check_part(part)

    def middle_conv(in_ch: int, out_ch: int, kernel_size: int, stride: int) -> nn.Module:
        if kernel_size != 3:
            raise ValueError(f"HetConv ResNet-50 replaces 3×3 convs only, got a {kernel_size}×{kernel_size}")
        return _conv3x3(in_ch, out_ch, part, stride)

    model = ResNet(num_classes=num_classes, conv_layer=middle_conv, **kwargs)
    model.part = part
    for m in model.modules():  # ResNet's init covers every other layer
        if isinstance(m, HetConv2d):
            _init_hetconv(m)
    return model
