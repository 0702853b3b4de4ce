"""Typed errors of the reader."""
from __future__ import annotations

from ..errors import JpegnetError


class JpegError(JpegnetError, ValueError):
    """An input that cannot be read as a JPEG (or not within the limits asked for).

    `message` is libjpeg's own description of the problem (or ours); `source` names the input (a path, or
    "<bytes>" / "item N" for in-memory data); `kind` is one of 'jpeg' (invalid or corrupt data), 'too_large'
    (above max_pixels), 'bad_crop' (crop outside the image or not block aligned), 'io' (file not readable),
    'no_memory'.
    """

    def __init__(self, message: str, source=None, kind: str = "jpeg"):
        self.message = message
        self.source = source
        self.kind = kind
        where = f"{source}: " if source not in (None, "") else ""
        super().__init__(f"{where}{message}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.message, self.source, self.kind))


class JpegWarning(UserWarning):
    """libjpeg reported recoverable corruption (e.g. premature end of data) and strict=False was given."""
