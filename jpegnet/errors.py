"""The one base class of jpegnet's user-facing errors.

Every error meant to be shown to a user as one line (a missing folder, an unknown model, a file that is not a
checkpoint, an unreadable JPEG, weights that do not fit) derives from `JpegnetError`; the `jpegnet` command
prints those as `jpegnet: error: <message>` and lets everything else (a TypeError or KeyError from a bug)
surface with its traceback. This module imports nothing, so every package can use it.
"""
from __future__ import annotations


class JpegnetError(Exception):
    """Base of the errors whose message is the whole story for the user."""


__all__ = ["JpegnetError"]
