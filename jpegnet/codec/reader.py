"""The Python face of the coefficient reader: argument checking, typed results, typed errors.

All decoding happens in `_reader` (C, GIL released). This module only turns its plain tuples into
`JpegCoefficients` whose planes are numpy views on the C-allocated memory (no copy).
"""
from __future__ import annotations

import operator
import os
import warnings
from typing import Iterable, Union

import numpy as np

from . import _reader
from .errors import JpegError, JpegWarning

_reader.set_error_class(JpegError)

#: Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): images above it are refused from the header.
DEFAULT_MAX_PIXELS = 89_478_485

#: Files larger than this are refused before they are read (paths only; bytes are already in memory). The
#: largest ImageNet original is ~15 MB; a JPEG at the max_pixels limit is rarely above 100 MB.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

# Limits above what any JPEG can reach (65535 x 65535 pixels) mean "no limit": clamped so that C's 64-bit
# integers never overflow.
_NO_LIMIT = 2**62
_INT64 = 2**63

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


def _to_coefficients(raw: tuple) -> tuple[JpegCoefficients, str | None]:
    (width, height, colorspace, sampling, planes, quants, progressive, arithmetic, image_w, image_h,
     warning) = raw
    # planes: int16 (blocks_h, blocks_w, 64) arrays over the C-allocated memory; quants: uint16 (64,).
    return JpegCoefficients(width, height, colorspace, sampling, planes, quants, bool(progressive),
                            bool(arithmetic), (image_w, image_h)), warning


def _check_crop(crop, where) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) as Python ints. Floats and strings are refused, not rounded (0.9 is not 0)."""
    if crop is None:
        return None
    try:
        values = tuple(operator.index(v) for v in crop)
    except TypeError:
        raise TypeError(f"crop must be (x, y, width, height), four integers in pixels, got {crop!r}") from None
    if len(values) != 4:
        raise TypeError(f"crop must be (x, y, width, height), four integers in pixels, got {crop!r}")
    if any(not -_INT64 <= v < _INT64 for v in values):
        # Beyond 64 bits: outside every image. The C side checks everything within 64 bits itself.
        raise JpegError(f"crop {values!r} is outside the image", where, "bad_crop")
    return values


def _is_crop_list(crop: list) -> bool:
    """A batch's crop argument is one crop per item (each None or a sequence) or one crop for every item (four
    numbers): told apart by the elements' kind, not their type, so four floats are a (refused) shared crop."""
    return bool(crop) and all(c is None or (hasattr(c, "__len__") and not isinstance(c, (str, bytes)))
                              for c in crop)


def _check_limit(value, name: str) -> int:
    """A positive integer limit (max_pixels, max_bytes), or None for no limit (0 for C)."""
    if value is None:
        return 0
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer or None, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive or None, got {value!r}")
    return min(value, _NO_LIMIT)


def _warn(warning: str | None, where) -> None:
    if warning is not None:
        warnings.warn(f"{where}: {warning}", JpegWarning, stacklevel=3)


def read_coefficients(src: Source, *, strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      crop: tuple[int, int, int, int] | None = None, hflip: bool = False,
                      max_bytes: int | None = DEFAULT_MAX_BYTES) -> JpegCoefficients:
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
    max_bytes: a path to a larger file is refused (kind 'too_large') before it is read (None: no limit).
        Only regular files are read: a FIFO, a device or a directory is refused (kind 'io') without blocking.
    Raises JpegError for anything that cannot be read; TypeError / ValueError for bad arguments.
    """
    where = _where(src)
    crop = _check_crop(crop, where)
    limit = _check_limit(max_pixels, "max_pixels")
    byte_limit = _check_limit(max_bytes, "max_bytes")
    raw = _decode_one(src, where, strict=strict, max_pixels=limit, crop=crop, hflip=hflip, max_bytes=byte_limit)
    coefs, warning = _to_coefficients(raw)
    _warn(warning, where)
    return coefs


def read_coefficients_batch(srcs: Iterable[Source], *, threads: int | None = None, on_error: str = "raise",
                            strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                            crop=None, hflip: bool = False, max_bytes: int | None = DEFAULT_MAX_BYTES) -> list:
    """Read many JPEGs on a pool of C threads (the GIL is released for the whole batch).

    Results come in input order. Paths are read inside the worker threads. threads=None uses every core
    available to this process. on_error='raise' raises the first JpegError (in input order);
    on_error='return' puts the JpegError instance in that item's place and returns the rest.
    crop: one (x, y, width, height) for every item, or a sequence with one crop (or None) per item, e.g.
    windows chosen from `read_headers_batch`. Other keyword arguments as `read_coefficients`.
    """
    items, flags, wheres = _batch_items(srcs)
    per_item = None  # one crop (or None) per item, for C
    refused: dict[int, JpegError] = {}  # items whose crop is refused before C: an error in their place
    if crop is not None:
        crop_list = list(crop)  # once: a generator of crops is consumed by reading it
        if _is_crop_list(crop_list):
            if len(crop_list) != len(items):
                raise ValueError(f"got {len(crop_list)} crops for {len(items)} items")
            per_item = []
            for i, (c, where) in enumerate(zip(crop_list, wheres)):
                try:
                    per_item.append(_check_crop(c, where))
                except JpegError as e:
                    refused[i] = e
                    per_item.append(None)
            if refused:
                flags = bytearray(flags)
                for i in refused:  # nothing to decode for these
                    items[i], flags[i] = b"", 0
                flags = bytes(flags)
        else:
            shared = _check_crop(crop_list, "crop")
            per_item = [shared] * len(items)
    raw = _reader.decode_batch(items, path_flags=flags, max_pixels=_check_limit(max_pixels, "max_pixels"),
                               max_bytes=_check_limit(max_bytes, "max_bytes"), threads=_check_threads(threads),
                               strict=strict, crops=per_item, hflip=hflip, wheres=wheres)
    for i, e in refused.items():
        raw[i] = e
    return _batch_results(raw, wheres, on_error, _to_coefficients)


def read_header(src: Source, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> JpegHeader:
    """The geometry of a JPEG from its header alone (no entropy decoding); JpegError if it has none.

    A path is read only as far as its header: its first 64 KiB, and the rest (up to max_bytes) only when the
    header runs past them."""
    where = _where(src)
    raw = _decode_one(src, where, max_pixels=0, header_only=True, max_bytes=_check_limit(max_bytes, "max_bytes"))
    header, _ = _to_header(raw)
    return header


def read_headers_batch(srcs: Iterable[Source], *, threads: int | None = None, on_error: str = "raise",
                       max_bytes: int | None = DEFAULT_MAX_BYTES) -> list:
    """`read_header` for many inputs on C threads; a path is read only as far as its header (64 KiB first)."""
    items, flags, wheres = _batch_items(srcs)
    raw = _reader.decode_batch(items, path_flags=flags, max_pixels=0, max_bytes=_check_limit(max_bytes, "max_bytes"),
                               threads=_check_threads(threads), header_only=True, wheres=wheres)
    return _batch_results(raw, wheres, on_error, _to_header)


def _to_header(raw: tuple):
    return JpegHeader(*raw), None


def _where(src) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(src, (str, os.PathLike)):
        return os.fsdecode(os.fspath(src))
    raise TypeError(f"src must be bytes-like or a path, got {type(src).__name__}")


def _check_buffer(src, where):
    if isinstance(src, memoryview) and not src.c_contiguous:
        raise ValueError(f"{where}: a memoryview source must be C-contiguous (pass bytes(view) to copy it)")
    return src


def _decode_one(src, where, *, max_pixels: int, max_bytes: int, strict: bool = True, crop=None, hflip: bool = False,
                header_only: bool = False) -> tuple:
    """One input through C, the limits already checked (0: none). A path goes through the batch call with one
    item, so that the file is opened and read by the same C code as in a batch (regular files only, max_bytes,
    header prefix)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _reader.decode(_check_buffer(src, where), max_pixels=max_pixels, strict=strict, crop=crop,
                              hflip=hflip, header_only=header_only, where=where)
    (raw,) = _reader.decode_batch([os.fsencode(src)], path_flags=b"\x01", max_pixels=max_pixels, max_bytes=max_bytes,
                                  strict=strict, crops=[crop], hflip=hflip, header_only=header_only, wheres=[where])
    if isinstance(raw, JpegError):
        raise raw
    return raw


def _batch_items(srcs):
    """bytes-likes as they are, paths as filesystem bytes (read by the C threads), and a name for each."""
    items: list = []
    flags = bytearray()
    wheres: list = []
    for i, src in enumerate(srcs):
        if isinstance(src, (bytes, bytearray, memoryview)):
            items.append(_check_buffer(src, f"item {i}"))
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
    try:
        threads = operator.index(threads)
    except TypeError:
        raise TypeError(f"threads must be an integer or None, got {threads!r}") from None
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    return min(threads, 256)  # the C pool's own cap


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
    w, h, c, data = _reader.decode_pixels(bytes(src), fancy_upsampling=fancy_upsampling)
    return np.frombuffer(data, dtype=np.uint8).reshape(h, w, c)
