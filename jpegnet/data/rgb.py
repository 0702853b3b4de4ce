"""The RGB twin: the torchvision pipeline people run today (Pillow decode, RandomResizedCrop or Resize +
CenterCrop, horizontal flip, ToTensor, Normalize), with its crop and flip drawn from the same
(seed, epoch, index) function as the DCT path, so both representations see the same windows. The resize filter
is the model's (`InputConfig.interpolation`: Pillow's antialiased bilinear or bicubic), so a model ported from
timm sees timm's evaluation transform.

torchvision is imported here only (the DCT path does not need it).
"""
from __future__ import annotations

import io
import math

import numpy as np

from ..codec.exif import read_orientation

# EXIF orientation → Pillow transpose method (the displayed image; Pillow's ROTATE_* turn counter-clockwise)
_PIL_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                  7: "TRANSVERSE", 8: "ROTATE_90"}


def upright(img, orientation: int):
    """The image as displayed under its EXIF orientation (a transpose after decoding)."""
    if orientation == 1:
        return img
    from PIL import Image
    return img.transpose(getattr(Image.Transpose, _PIL_TRANSPOSE[orientation]))


_FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def resize_filter(input_config):
    """torchvision's InterpolationMode for the config's `interpolation` (bilinear without a config)."""
    from torchvision.transforms import InterpolationMode
    return getattr(InterpolationMode, _FILTERS[getattr(input_config, "interpolation", "bilinear")])


def load_rgb(job):
    """One sample (a path, or the file's bytes) → float32 (3, H, W) tensor, or the exception that made it
    unusable."""
    ds, index, path, seed, epoch, mean, std = job
    from PIL import Image
    import torchvision.transforms.functional as TF

    out_h, out_w = ds.input_size
    try:
        with (io.BytesIO(path) if isinstance(path, (bytes, bytearray, memoryview)) else open(path, "rb")) as f:
            img = Image.open(f)
            if ds.max_pixels is not None and img.size[0] * img.size[1] > ds.max_pixels:
                raise ValueError(f"image of {img.size[0]}x{img.size[1]} pixels is above max_pixels={ds.max_pixels}")
            img = img.convert("RGB")
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return e
    if getattr(ds, "exif_orientation", True):
        img = upright(img, read_orientation(path))
    width, height = img.size
    windows, flips = ds.windows([index], np.array([width]), np.array([height]), seed, epoch)
    if ds.train:
        left, top, w, h = (int(v) for v in windows[0])
        img = TF.resized_crop(img, top, left, h, w, [out_h, out_w], resize_filter(ds.input_config), antialias=True)
    else:
        img = TF.resize(img, math.floor(max(out_h, out_w) / ds.crop_pct), resize_filter(ds.input_config),
                        antialias=True)
        img = TF.center_crop(img, [out_h, out_w])
    if flips[0]:
        img = TF.hflip(img)
    return TF.normalize(TF.to_tensor(img), mean, std)
