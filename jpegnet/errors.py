"""The base of jpegnet's errors meant for the person running it (not for a programmer's bug)."""
from __future__ import annotations


class JpegnetError(Exception):
    """A problem with the inputs, the data or the run that the message fully explains: the `jpegnet` command
    prints it on one line and exits with status 1. The engine's errors derive from it; the reader's JpegError
    (a ValueError) is handled the same way."""
