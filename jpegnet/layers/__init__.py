"""Building blocks shared by model families."""
from .channels import check_multiplier, make_divisible, scale_depth  # noqa: F401
from .classifier import ClassifierHead, check_drop_rate, check_num_classes, linear_classifier  # noqa: F401
from .conv import (Conv2dSame, Conv2dTfSame, ConvNormAct, fuse_bn, fuse_conv_bn, make_conv2d,  # noqa: F401
                   tf_same_conv2d, tf_same_pads)
from .fixed_kernels import FixedDepthwiseConv2d, edge_detection, edge_gaussian, gaussian_blur  # noqa: F401
from .hetconv import HetConv2d  # noqa: F401
from .octconv import OctBatchNorm2d, OctConv2d, OctReLU  # noqa: F401
from .squeeze_excite import SqueezeExcite  # noqa: F401
