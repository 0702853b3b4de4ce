"""Convolution building blocks: conv-norm-act, and folding BatchNorm into the convolution before it.

`ConvNormAct` is the plain conv → BatchNorm → activation unit most families start from; `Conv2dSame` keeps
the size with an even kernel; `Conv2dTfSame` pads like TensorFlow's "SAME" (asymmetric at stride 2), which
weights trained in TensorFlow (EfficientNet-Lite) need. `fuse_bn(model)` folds each BatchNorm known to directly follow a convolution
(inside an nn.Sequential, or declared by its module in `fusable_conv_bn`) into that convolution's weights
and bias, which removes one full read and write of the activation per conv at inference (BN in eval mode
is an affine map per channel, so the folded model computes the same function up to float rounding).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """conv (no bias) → BatchNorm2d → activation, as one unit with keys `conv`, `bn`, `act`.

    padding defaults to kernel_size // 2 for odd kernels ("same" at stride 1); even kernels (stride 1 only)
    get `Conv2dSame`'s bottom/right padding. padding="same" is TensorFlow's SAME at every stride
    (`tf_same_conv2d`): PyTorch's own padding="same" at stride 1, extended to stride 2 as TensorFlow does it.
    `act_layer=None` leaves the activation out (an nn.Identity keeps the key layout fixed); any zero-argument
    factory works (e.g. functools.partial(nn.LeakyReLU, 0.01)).
    bn_eps / bn_momentum: BatchNorm settings, for families whose reference uses other ones (EfficientNet-B5+).
    The keys `conv`, `bn`, `act` are timm's layout, which keeps weight import a matter of renaming blocks.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | str | None = None, groups: int = 1, act_layer=nn.ReLU,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels ({in_channels} -> {out_channels}) must be divisible by groups={groups}")
        super().__init__()
        if padding is None:
            self.conv = make_conv2d(in_channels, out_channels, kernel_size, stride, groups=groups)
        elif padding == "same":
            self.conv = tf_same_conv2d(in_channels, out_channels, kernel_size, stride, groups=groups)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = _make_activation(act_layer)


_INPLACE_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.LeakyReLU)


def _make_activation(act_layer: type[nn.Module] | None) -> nn.Module:
    # In-place where the activation supports it: saves an allocation per layer in forward.
    if act_layer is None:
        return nn.Identity()
    if act_layer in _INPLACE_ACTIVATIONS:
        return act_layer(inplace=True)
    return act_layer()


class Conv2dSame(nn.Conv2d):
    """Stride-1 conv with an even kernel that keeps the spatial size: (k-1)//2 rows/columns of zeros at the
    top/left, the rest at the bottom/right (TensorFlow's and PyTorch's padding='same' split).

    The padding is explicit (one F.pad) rather than padding='same', which does the same copy but warns about
    it on every new process. The parameters are a plain Conv2d's, so weights and BN folding carry over.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=groups, bias=bias)
        total = kernel_size - 1
        before = total // 2
        self.pad = (before, total - before, before, total - before)  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


def tf_same_pads(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) zeros TensorFlow's "SAME" adds along one axis of `size` pixels: enough for
    ceil(size / stride) outputs, the odd one out at the end (bottom / right)."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dTfSame(nn.Conv2d):
    """A conv with TensorFlow's "SAME" padding, worked out per input size: at stride 2 an even-sized input gets
    one zero row / column less at the top / left than at the bottom / right (PyTorch's symmetric padding
    would shift every sampling point by a pixel, and TF-trained weights lose several points of accuracy).

    The pads are plain Python integers from the input's shape (one F.pad, then the conv), so the ONNX export
    (traced at a fixed spatial size) holds constant Pad nodes. The parameters are a plain Conv2d's, so
    weights and BN folding carry over.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups,
                         bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pads(int(x.shape[-2]), self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = tf_same_pads(int(x.shape[-1]), self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return self._conv_forward(x, self.weight, self.bias)


def tf_same_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                   bias: bool = False) -> nn.Conv2d:
    """A conv padded like TensorFlow's "SAME": a plain nn.Conv2d with symmetric padding where that is the same
    for every input size (stride 1, odd kernel), else `Conv2dTfSame`."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if stride == 1 and kernel_size % 2:
        return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups,
                         bias=bias)
    return Conv2dTfSame(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias)


def make_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                bias: bool = False) -> nn.Conv2d:
    """A conv that keeps the size at stride 1 (ceil(size / stride) otherwise): symmetric padding
    kernel_size // 2 for odd kernels, `Conv2dSame` for even kernels (stride 1 only)."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if kernel_size % 2:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                         groups=groups, bias=bias)
    if stride != 1:
        raise ValueError(f"an even kernel ({kernel_size}) needs asymmetric padding and is only supported at "
                         f"stride 1, got stride {stride}")
    return Conv2dSame(in_channels, out_channels, kernel_size, groups=groups, bias=bias)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to `bn(conv(x))` with `bn` in eval mode (its running statistics)."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"expected (Conv2d, BatchNorm2d), got ({type(conv).__name__}, {type(bn).__name__})")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm has {bn.num_features} channels but the conv has {conv.out_channels} outputs")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    fused = copy.deepcopy(conv)
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    fused.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    return fused


def _fold_pairs_in(module: nn.Module) -> int:
    """Fold the conv→BN pairs owned directly by `module`; returns how many were folded."""
    folded = 0
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        for first, second in zip(names, names[1:]):
            conv, bn = children[first], children[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
                setattr(module, first, fuse_conv_bn(conv, bn))
                setattr(module, second, nn.Identity())
                folded += 1
        return folded
    # Attribute pairs only where the module declares them: a name pattern alone cannot tell conv→BN from a
    # pre-activation BN→conv, and folding the latter would change the function.
    for conv_name, bn_name in getattr(module, "fusable_conv_bn", ()):
        conv, bn = children.get(conv_name), children.get(bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, conv_name, fuse_conv_bn(conv, bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


def fuse_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold BatchNorm layers into the convolutions before them, for inference.

    Folds (a) a Conv2d directly followed by a BatchNorm2d inside an nn.Sequential and (b) the pairs a module
    lists in its `fusable_conv_bn` attribute, e.g. `(("conv1", "bn1"), ("conv2", "bn2"))`, for modules whose
    forward applies that BN directly to that conv's output (and uses the conv's output nowhere else).
    The folded BNs become nn.Identity; other BNs (e.g. on raw inputs) stay. The result is in eval mode.
    Returns the fused model (a deep copy unless inplace=True).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for module in list(model.modules()):
        _fold_pairs_in(module)
    return model


__all__ = ["Conv2dSame", "Conv2dTfSame", "ConvNormAct", "fuse_bn", "fuse_conv_bn", "make_conv2d", "tf_same_conv2d",
           "tf_same_pads"]
