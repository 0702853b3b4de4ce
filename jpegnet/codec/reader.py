"""The Python face of the coefficient reader: argument checking, typed results, typed errors.

All decoding happens in `_reader` (C, GIL released). This module only turns its plain tuples into
`JpegCoefficients` whose planes are numpy views on the C-allocated memory (no copy).
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Sequence, Union

import numpy as np

from . import _reader
from .errors import JpegError, JpegWarning

_reader.set_error_classes(JpegError, JpegWarning)

#: Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): images above it are refused from the header.
DEFAULT_MAX_PIXELS = 89_478_485

Source = Union[bytes, bytearray, memoryview, str, os.PathLike]

_SUBSAMPLING_NAMES = {
    ((1, 1), (1, 1), (1, 1)): "4:4:4",
    ((2, 1), (1, 1), (1, 1)): "4:2:2",
    ((2, 2), (1, 1), (1, 1)): "4:2:0",
    ((1, 2), (1, 1), (1, 1)): "4:4:0",
    ((4, 1), (1, 1), (1, 1)): "4:1:1",
}


class _Geometry:
    """What a header says about the layout: shared by JpegHeader and JpegCoefficients."""

    __slots__ = ()

    @property
    def subsampling(self) -> str:
        """'4:2:0', '4:4:4', ... for three-component images, 'gray' for one, 'other' otherwise."""
        if len(self.sampling) == 1:
            return "gray"
        return _SUBSAMPLING_NAMES.get(tuple(self.sampling[:3]), "other")

    @property
    def mcu_size(self) -> tuple[int, int]:
        """(width, height) in pixels of one MCU: the grid crops must be aligned to."""
        return (8 * max(h for h, _ in self.sampling), 8 * max(v for _, v in self.sampling))


class JpegHeader(_Geometry):
    """A JPEG's geometry from its header alone (no entropy decoding): width, height, colorspace, sampling,
    progressive, arithmetic, plus subsampling and mcu_size. Lets a caller pick a crop before decoding."""

    __slots__ = ("width", "height", "colorspace", "sampling", "progressive", "arithmetic")

    def __init__(self, width, height, colorspace, sampling, progressive, arithmetic):
        self.width = width
        self.height = height
        self.colorspace = colorspace
        self.sampling = sampling
        self.progressive = bool(progressive)
        self.arithmetic = bool(arithmetic)

    def __repr__(self) -> str:
        return (f"JpegHeader({self.width}x{self.height}, {self.colorspace}, {self.subsampling}, "
                f"progressive={self.progressive})")


class JpegCoefficients(_Geometry):
    """The quantized DCT coefficients of one JPEG, as stored in the file.

    width, height: pixels of the returned area (the whole image, or the crop).
    colorspace: 'gray', 'ycbcr', 'rgb', 'cmyk' or 'ycck' (the JPEG's own colour space; nothing converted).
    sampling: (h, v) sampling factors per component, e.g. ((2, 2), (1, 1), (1, 1)) for 4:2:0.
    planes: one int16 array per component, shape (blocks_h, blocks_w, 64); entry 8·row + col of a block is
        the coefficient of vertical frequency `row` and horizontal frequency `col` (natural order).
    quant_tables: one uint16 array of 64 per component (natural order): quant_tables[i] belongs to planes[i].
    progressive, arithmetic: how the file was entropy coded.
    image_size: (width, height) of the whole file, whatever the crop.
    """

    __slots__ = ("width", "height", "colorspace", "sampling", "planes", "quant_tables", "progressive",
                 "arithmetic", "image_size")

    def __init__(self, width, height, colorspace, sampling, planes, quant_tables, progressive, arithmetic,
                 image_size):
        self.width = width
        self.height = height
        self.colorspace = colorspace
        self.sampling = sampling
        self.planes = planes
        self.quant_tables = quant_tables
        self.progressive = progressive
        self.arithmetic = arithmetic
        self.image_size = image_size

    def dequantized(self, component: int) -> np.ndarray:
        """float32 (blocks_h, blocks_w, 64): coefficient × quantization step, the DCT of the pixels."""
        return self.planes[component].astype(np.float32) * self.quant_tables[component].astype(np.float32)

    def __repr__(self) -> str:
        shapes = ", ".join(str(p.shape) for p in self.planes)
        return (f"JpegCoefficients({self.width}x{self.height}, {self.colorspace}, {self.subsampling}, "
                f"planes=[{shapes}], progressive={self.progressive})")


def _to_coefficients(raw: tuple) -> JpegCoefficients:
    (width, height, colorspace, sampling, planes, quants, progressive, arithmetic, image_w, image_h,
     warning) = raw
    # planes: int16 (blocks_h, blocks_w, 64) arrays over the C-allocated memory; quants: uint16 (64,).
    return JpegCoefficients(width, height, colorspace, sampling, planes, quants, bool(progressive),
                            bool(arithmetic), (image_w, image_h)), warning


def _check_crop(crop) -> tuple[int, int, int, int] | None:
    if crop is None:
        return None
    try:
        x, y, w, h = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise TypeError(f"crop must be (x, y, width, height) in pixels, got {crop!r}") from None
    return (x, y, w, h)


def _check_max_pixels(max_pixels) -> int:
    if max_pixels is None:
        return 0
    if int(max_pixels) <= 0:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels!r}")
    return int(max_pixels)


def _warn(warning: str | None, where) -> None:
    if warning is not None:
        warnings.warn(f"{where}: {warning}", JpegWarning, stacklevel=3)


def read_coefficients(src: Source, *, strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      crop: tuple[int, int, int, int] | None = None, hflip: bool = False) -> JpegCoefficients:
    """Read a JPEG's quantized DCT coefficients (entropy decoding only).

    src: the file's bytes (bytes, bytearray, memoryview) or its path (str, os.PathLike).
    strict: libjpeg's corrupt-data warnings (premature end of data, extraneous bytes...) raise JpegError;
        with strict=False they are issued as JpegWarning and the recovered coefficients returned.
    max_pixels: images with more pixels are refused from the header, before coefficient memory is
        allocated (None: no limit).
    crop: (x, y, width, height) in pixels, aligned to the MCU grid (`mcu_size`: 8 or 16 px); width and height
        whole MCUs unless the crop reaches the right / bottom edge. Applied while the blocks are copied out;
        in a single-scan (sequential) file, entropy decoding stops after the crop's last MCU row, so the rows
        below it cost nothing (a truncated or corrupt tail below the crop is never even read).
    hflip: mirror horizontally in the DCT domain (block columns reversed, odd horizontal frequencies
        negated). A partial MCU column on the right is trimmed first (as `jpegtran -flip horizontal -trim`),
        so the result is exactly the mirror of the (trimmed) image.
    Raises JpegError for anything that cannot be read.
    """
    crop = _check_crop(crop)
    limit = _check_max_pixels(max_pixels)
    data, where = _load(src)
    coefs, warning = _to_coefficients(_reader.decode(data, strict, limit, crop, hflip, where))
    _warn(warning, where)
    return coefs


def read_coefficients_batch(srcs: Iterable[Source], *, threads: int | None = None, on_error: str = "raise",
                            strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                            crop=None, hflip: bool = False) -> list:
    """Read many JPEGs on a pool of C threads (the GIL is released for the whole batch).

    Results come in input order. Paths are read inside the worker threads. threads=None uses every core
    available to this process. on_error='raise' raises the first JpegError (in input order);
    on_error='return' puts the JpegError instance in that item's place and returns the rest.
    crop: one (x, y, width, height) for every item, or a sequence with one crop (or None) per item, e.g.
    windows chosen from `read_headers_batch`. Other keyword arguments as `read_coefficients`.
    """
    items, flags, wheres = _batch_items(srcs)
    shared, per_item = None, None
    if crop is not None:
        crop_list = list(crop)
        if crop_list and all(c is None or not isinstance(c, (int, np.integer)) for c in crop_list):
            if len(crop_list) != len(items):
                raise ValueError(f"got {len(crop_list)} crops for {len(items)} items")
            per_item = [_check_crop(c) for c in crop_list]
        else:
            shared = _check_crop(crop)
    raw = _reader.decode_batch(items, flags, _check_threads(threads), strict, _check_max_pixels(max_pixels),
                               shared, per_item, hflip, False, wheres)
    return _batch_results(raw, wheres, on_error, _to_coefficients)


def read_header(src: Source) -> JpegHeader:
    """The geometry of a JPEG from its header alone (no entropy decoding); JpegError if it has none."""
    data, where = _load(src)
    header, _ = _to_header(_reader.decode(data, True, 0, None, False, where, True))
    return header


def read_headers_batch(srcs: Iterable[Source], *, threads: int | None = None, on_error: str = "raise") -> list:
    """`read_header` for many inputs on C threads; a path is read only as far as its header (64 KiB first)."""
    items, flags, wheres = _batch_items(srcs)
    raw = _reader.decode_batch(items, flags, _check_threads(threads), True, 0, None, None, False, True, wheres)
    return _batch_results(raw, wheres, on_error, _to_header)


def _to_header(raw: tuple):
    return JpegHeader(*raw), None


def _load(src: Source):
    if isinstance(src, (bytes, bytearray, memoryview)):
        return src, "<bytes>"
    if isinstance(src, (str, os.PathLike)):
        where = os.fspath(src)
        try:
            with open(src, "rb") as f:
                return f.read(), where
        except OSError as e:
            raise JpegError(f"cannot read file: {e.strerror or e}", where, "io") from e
    raise TypeError(f"src must be bytes-like or a path, got {type(src).__name__}")


def _batch_items(srcs):
    """bytes-likes as they are, paths as filesystem bytes (read by the C threads), and a name for each."""
    items: list = []
    flags = bytearray()
    wheres: list = []
    for i, src in enumerate(srcs):
        if isinstance(src, (bytes, bytearray, memoryview)):
            items.append(src)
            flags.append(0)
            wheres.append(f"item {i}")
        elif isinstance(src, (str, os.PathLike)):
            items.append(os.fsencode(src))
            flags.append(1)
            wheres.append(os.fspath(src))
        else:
            raise TypeError(f"item {i}: src must be bytes-like or a path, got {type(src).__name__}")
    return items, bytes(flags), wheres


def _check_threads(threads) -> int:
    if threads is None:
        return default_threads()
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    return int(threads)


def _batch_results(raw, wheres, on_error, convert) -> list:
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
    out = []
    for where, r in zip(wheres, raw):
        if isinstance(r, JpegError):
            if on_error == "raise":
                raise r
            out.append(r)
            continue
        value, warning = convert(r)
        _warn(warning, where)
        out.append(value)
    return out


def default_threads() -> int:
    """Cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def decode_pixels(src: bytes, fancy_upsampling: bool = False) -> np.ndarray:
    """libjpeg-turbo's own full decode to pixels (ISLOW IDCT; YCbCr/RGB files to RGB, others as stored).

    The reference the DCT path is checked against in tests and benchmarks; never used on the DCT path.
    Returns uint8 (height, width, channels).
    """
    w, h, c, data = _reader.decode_pixels(bytes(src), fancy_upsampling)
    return np.frombuffer(data, dtype=np.uint8).reshape(h, w, c)
