"""`check_images`: which JPEGs of a batch would be read by training, checked before they are written somewhere.

Two depths (VERIFY_MODES):
  - 'header': the header alone (`read_headers_batch`): a file that is not a JPEG, is empty or is cut inside its
    header is caught; one with corrupt entropy data or cut in the middle of its scans is not.
  - 'full': the header, then one coefficient read of the whole image in strict mode (`read_coefficients_batch`,
    on the reader's C threads with the GIL released), as the training reader decodes it (same `max_pixels`):
    a corrupt or truncated scan, extraneous bytes and an image over the pixel limit are caught too. Its cost is
    one entropy decode per image, no IDCT.

A batch's coefficients are decoded in groups of at most `_GROUP_PIXELS` pixels (from the headers), so the
memory held at once stays bounded whatever the images' sizes (an image larger than that is a group alone).
"""
from __future__ import annotations

from ..codec import DEFAULT_MAX_PIXELS, JpegError, read_coefficients_batch, read_headers_batch
from ..codec.reader import default_threads

VERIFY_MODES = ("full", "header")
_GROUP_PIXELS = 1 << 25  # ~32 Mpx: at most ~200 MB of coefficients (4:4:4) held by one decode call


def _reason(error: Exception) -> str:
    return error.message if isinstance(error, JpegError) else str(error)


def check_images(blobs, verify: str = "full", *, threads: int | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list:
    """For each item of `blobs` (a JPEG's bytes, or the exception met reading its file): None when it reads,
    else (stage, reason): stage 'header' (not readable as a JPEG at all) or 'data' (its header reads but the
    image does not decode in strict mode; only with verify='full'), reason the reader's own message."""
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
    threads = threads or default_threads()
    out: list = [None] * len(blobs)
    readable = []
    for i, blob in enumerate(blobs):
        if isinstance(blob, BaseException):
            out[i] = ("header", _reason(blob))
        else:
            readable.append(i)
    headers = read_headers_batch([blobs[i] for i in readable], threads=threads, on_error="return")
    good = []
    for i, header in zip(readable, headers):
        if isinstance(header, JpegError):
            out[i] = ("header", header.message)
        else:
            good.append((i, header.width * header.height))
    if verify == "header":
        return out
    for group in _groups(good):
        results = read_coefficients_batch([blobs[i] for i in group], threads=threads, on_error="return",
                                          strict=True, max_pixels=max_pixels)
        for i, result in zip(group, results):
            if isinstance(result, JpegError):
                out[i] = ("data", result.message)
        del results  # the coefficients are not kept: only whether they could be read
    return out


def _groups(items):
    """Consecutive runs of (index, pixels) whose pixels add up to at most _GROUP_PIXELS (a larger image alone)."""
    group, pixels = [], 0
    for i, n in items:
        if group and pixels + n > _GROUP_PIXELS:
            yield group
            group, pixels = [], 0
        group.append(i)
        pixels += n
    if group:
        yield group


__all__ = ["VERIFY_MODES", "check_images"]
