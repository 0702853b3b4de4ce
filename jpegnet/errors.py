"""The base of jpegnet's errors meant for the person running it (not for a programmer's bug)."""
from __future__ import annotations


class JpegnetError(Exception):
    """A problem with the inputs, the data, the options or the run that the message fully explains: the
    `jpegnet` command prints it on one line and exits with status 1, while any other exception (a bug) keeps
    its traceback. Every user-facing error type of the package derives from it: the engine's EngineError
    family, the reader's JpegError, UnknownModelError, WeightImportError, ShardError, LayerError, the
    server's UploadError / RequestError / Overloaded. Most are also the builtin they refine (ValueError,
    KeyError, ...), so `except ValueError` in a caller keeps working."""
