"""The RGB twin: the torchvision pipeline people run today (Pillow decode, RandomResizedCrop or Resize +
CenterCrop, horizontal flip, ToTensor, Normalize), with its crop and flip drawn from the same
(seed, epoch, index) function as the DCT path, so both representations see the same windows. The resize filter
is the model's (`InputConfig.interpolation`: Pillow's antialiased bilinear or bicubic), so a model ported from
timm sees timm's evaluation transform.

Two decodes of the same windows (`rgb_decode` of a dataset):

    plain  torchvision on Pillow: every pixel decoded at full size, the whole image resized, then cropped.
    fast   what a careful engineer serves with: libjpeg-turbo's scaled IDCT (1/2, 1/4, 1/8 through Pillow's
           `draft`) where the window still has at least the output's pixels at that scale, then one Pillow
           resample of the window alone (`resize(box=...)`: the output pixels of the plain path's resize +
           crop, without resizing what the crop throws away). Chosen by benchmarks/rgb_decode.py.

torchvision is imported here only (the DCT path does not need it).
"""
from __future__ import annotations

import functools
import io
import math

import numpy as np

from ..codec.exif import read_orientation

# EXIF orientation → Pillow transpose method (the displayed image; Pillow's ROTATE_* turn counter-clockwise)
_PIL_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                  7: "TRANSVERSE", 8: "ROTATE_90"}

# the orientations whose upright x (y) axis runs against the stored image's
_FLIPS_X = {2, 3, 6, 7}
_FLIPS_Y = {3, 4, 7, 8}


def upright(img, orientation: int):
    """The image as displayed under its EXIF orientation (a transpose after decoding)."""
    if orientation == 1:
        return img
    from PIL import Image
    return img.transpose(getattr(Image.Transpose, _PIL_TRANSPOSE[orientation]))


_FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def _filter_name(source) -> str:
    return _FILTERS[getattr(source, "interpolation", "bilinear")]


def resize_filter(source):
    """torchvision's InterpolationMode for the `interpolation` of a source (a dataset: the one for_model took
    from the model's InputConfig, as the DCT path resamples with) or of an InputConfig; bilinear without one."""
    from torchvision.transforms import InterpolationMode
    return getattr(InterpolationMode, _filter_name(source))


RGB_DECODES = ("plain", "fast")


def check_rgb_decode(value: str) -> str:
    if value not in RGB_DECODES:
        raise ValueError(f"rgb_decode must be one of {', '.join(RGB_DECODES)}, got {value!r}")
    return value


def load_rgb(job):
    """One sample (a path, or the file's bytes) → float32 (3, H, W) tensor, or the exception that made it
    unusable."""
    if getattr(job[0], "rgb_decode", "plain") == "fast":
        return load_rgb_fast(job)
    return load_rgb_plain(job)


def _open(path):
    return io.BytesIO(path) if isinstance(path, (bytes, bytearray, memoryview)) else open(path, "rb")


def _check_pixels(ds, img) -> None:
    if ds.max_pixels is not None and img.size[0] * img.size[1] > ds.max_pixels:
        raise ValueError(f"image of {img.size[0]}x{img.size[1]} pixels is above max_pixels={ds.max_pixels}")


def dct_scale(window_w: float, window_h: float, out_w: int, out_h: int) -> int:
    """The largest libjpeg scaled-IDCT reduction (8, 4, 2, or 1: none) after which the window still spans at
    least the output's pixels in both directions, so the resample that follows only ever shrinks (by less
    than 2x): never decode below the size the resize needs."""
    for s in (8, 4, 2):
        if window_w / s >= out_w and window_h / s >= out_h:
            return s
    return 1


def load_rgb_fast(job):
    """`load_rgb` with scaled decoding and a window-only resample (the module docstring's `fast`)."""
    ds, index, path, seed, epoch, mean, std = job
    from PIL import Image
    import torch

    out_h, out_w = ds.input_size
    orientation = read_orientation(path) if getattr(ds, "exif_orientation", True) else 1
    try:
        with _open(path) as f:
            img = Image.open(f)
            _check_pixels(ds, img)
            stored_w, stored_h = img.size
            # the window is drawn on the upright image, as the plain path does
            width, height = (stored_h, stored_w) if orientation >= 5 else (stored_w, stored_h)
            windows, flips = ds.windows([index], np.array([width]), np.array([height]), seed, epoch)
            left, top, win_w, win_h = (float(v) for v in windows[0])
            scale = dct_scale(win_w, win_h, out_w, out_h)
            if scale > 1:
                # Pillow picks the largest reduction s with min(w // req_w, h // req_h) >= s: asking for
                # (w // scale, h // scale) gets exactly `scale` (w // (w // s) lies in [s, 2s)). Formats
                # without scaled decoding (and JPEGs of several tiles) answer None: no reduction.
                drafted = img.draft(img.mode, (stored_w // scale, stored_h // scale))
                scale = round(stored_w / drafted[1][2]) if drafted else 1  # the reduction the decoder will use
            img = img.convert("RGB")  # decodes (scaled); CMYK, YCCK and grayscale convert as on the plain path
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return e
    img = upright(img, orientation)
    # libjpeg's 1/s IDCT makes decoded pixel j cover stored pixels [j·s, (j+1)·s): coordinates divide by s.
    # An axis the orientation reverses is counted from the other end, where the decoded image has
    # ceil(n / s) pixels for n / s: shift by the difference.
    shift_x = img.size[0] - width / scale if orientation in _FLIPS_X else 0.0
    shift_y = img.size[1] - height / scale if orientation in _FLIPS_Y else 0.0
    box = (left / scale + shift_x, top / scale + shift_y, (left + win_w) / scale + shift_x,
           (top + win_h) / scale + shift_y)
    img = img.resize((out_w, out_h), getattr(Image.Resampling, _filter_name(ds)), box=box)
    if flips[0]:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # One strided pass from Pillow's interleaved bytes into planar float32, then the normalization in place on
    # contiguous planes (the same operations as ToTensor + Normalize, so the same floats): on the transposed
    # view itself each in-place op is a strided pass, ~4x slower in all.
    x = torch.empty((3, out_h, out_w), dtype=torch.float32)
    x.copy_(torch.from_numpy(np.array(img)).permute(2, 0, 1))
    mean_t, std_t = _normalization_tensors(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return x.div_(255).sub_(mean_t).div_(std_t)


@functools.lru_cache(maxsize=16)
def _normalization_tensors(mean: tuple, std: tuple):
    """mean / std as (3, 1, 1) float32 tensors, built once per normalization (~30 µs per image otherwise);
    shared: read only."""
    import torch

    return (torch.tensor(mean, dtype=torch.float32).view(3, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(3, 1, 1))


def load_rgb_plain(job):
    """`load_rgb` as torchvision does it (the module docstring's `plain`)."""
    ds, index, path, seed, epoch, mean, std = job
    from PIL import Image
    import torchvision.transforms.functional as TF

    out_h, out_w = ds.input_size
    try:
        with _open(path) as f:
            img = Image.open(f)
            _check_pixels(ds, img)
            img = img.convert("RGB")
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return e
    if getattr(ds, "exif_orientation", True):
        img = upright(img, read_orientation(path))
    width, height = img.size
    windows, flips = ds.windows([index], np.array([width]), np.array([height]), seed, epoch)
    if ds.train:
        left, top, w, h = (int(v) for v in windows[0])
        img = TF.resized_crop(img, top, left, h, w, [out_h, out_w], resize_filter(ds), antialias=True)
    else:
        img = TF.resize(img, math.floor(max(out_h, out_w) / ds.crop_pct), resize_filter(ds),
                        antialias=True)
        img = TF.center_crop(img, [out_h, out_w])
    if flips[0]:
        img = TF.hflip(img)
    return TF.normalize(TF.to_tensor(img), mean, std)
