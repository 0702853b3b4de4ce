"""Typed errors of the training engine, each with a message meant to be printed on one line."""
from __future__ import annotations

from ..errors import JpegnetError
from ..weights_file import CheckpointError  # noqa: F401  (defined beside the weights-file code models use too)


class EngineError(JpegnetError):
    """Base of the engine's errors: the CLI prints the message and exits non-zero."""


class DataFolderError(EngineError, ValueError):
    """A data folder that does not exist, lacks train/ or val/, or has a class folder without images."""


class OutOfMemoryError(EngineError, MemoryError):
    """The model or batch did not fit in memory; the message says what to reduce."""


class TrainingError(EngineError):
    """The run produced non-finite values (loss, weights, validation loss) or had nothing to train on; the
    last checkpoint written before it is kept."""


class ConfigError(EngineError, ValueError):
    """An option out of range or options that do not go together (--lr nan, a batch size the processes cannot
    share, a benchmark size DCT models cannot take, an unknown backend, model keyword arguments a builder
    refuses)."""


class DeviceError(EngineError, ValueError):
    """A device that is unknown, or asked for and absent (--device cuda without a visible GPU)."""


class CalibrationError(EngineError, ValueError):
    """int8 calibration images that cannot be used: a folder or shards that are missing, hold no JPEG file, or
    none that can be read (`jpegnet export --int8 --calibration SRC`)."""


class MissingDependencyError(EngineError):
    """An optional package a feature needs is not installed (openvino for `--backend openvino`); the message
    names the extra that installs it. Not an ImportError: the CLI prints it as one line like every typed error."""
