"""The EXIF orientation tag of a JPEG (1 … 8), read from the APP1 segment without decoding anything.

Cameras store pixels as the sensor saw them and say in EXIF tag 0x0112 how to turn them upright. Values
(how the stored image becomes the displayed one): 1 as stored, 2 mirrored left-right, 3 turned 180°,
4 mirrored top-bottom, 5 transposed (rows become columns), 6 turned 90° clockwise, 7 transversed (transpose
then 180°), 8 turned 90° counter-clockwise. `ORIENTATION_OPS` writes each as (transpose, hflip, vflip)
applied in that order, the form jpegtran's lossless transforms take on DCT blocks.
"""
from __future__ import annotations

import os
import struct

#: orientation → (transpose first, then mirror left-right, then mirror top-bottom)
ORIENTATION_OPS = {1: (False, False, False), 2: (False, True, False), 3: (False, True, True),
                   4: (False, False, True), 5: (True, False, False), 6: (True, True, False),
                   7: (True, True, True), 8: (True, False, True)}

#: How much of a file is read to find the tag: EXIF sits in the first segments (APP1 is at most 64 KiB).
HEAD_BYTES = 1 << 16
_ORIENTATION_TAG = 0x0112


def read_orientation(src) -> int:
    """The orientation (1 … 8) of a JPEG file path or bytes; 1 when there is no valid tag (or no file)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        head = bytes(src[:HEAD_BYTES])
    else:
        try:
            with open(os.fspath(src), "rb") as f:
                head = f.read(HEAD_BYTES)
        except OSError:
            return 1  # the decoder reports the unreadable file
    return orientation_from_head(head)


def orientation_from_head(head: bytes) -> int:
    if head[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return 1
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no EXIF before the data
            return 1
        length = struct.unpack(">H", head[pos + 2:pos + 4])[0]
        if length < 2:
            return 1
        if marker == 0xE1 and head[pos + 4:pos + 10] == b"Exif\x00\x00":
            return _orientation_from_tiff(head[pos + 10:pos + 2 + length])
        pos += 2 + length
    return 1


def _orientation_from_tiff(tiff: bytes) -> int:
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    endian = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(endian + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(endian + "H", tiff[ifd:ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            return 1
        tag, kind, n = struct.unpack(endian + "HHI", tiff[entry:entry + 8])
        if tag == _ORIENTATION_TAG:
            if kind != 3 or n != 1:  # SHORT, one value
                return 1
            (value,) = struct.unpack(endian + "H", tiff[entry + 8:entry + 10])
            return value if value in ORIENTATION_OPS else 1
    return 1


__all__ = ["HEAD_BYTES", "ORIENTATION_OPS", "orientation_from_head", "read_orientation"]
