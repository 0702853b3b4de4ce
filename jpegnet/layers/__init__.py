"""Building blocks shared by model families."""
from .conv import Conv2dSame, ConvNormAct, fuse_bn, fuse_conv_bn, make_conv2d  # noqa: F401
