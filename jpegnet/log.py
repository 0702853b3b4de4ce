"""Console output of jpegnet through the `logging` module, set up without importing torch (the CLI calls it
first thing). A run's lines go to the 'jpegnet.train' logger: change its level or handlers to redirect them."""
from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a record is written (so redirection, e.g. by pytest, works)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it
        pass


def setup_console_logging(level: int = logging.INFO) -> logging.Logger:
    """Give the 'jpegnet.train' logger (a run's console lines) a plain message-only stderr handler, once,
    unless it has handlers already (an application that configured it keeps its own). Other jpegnet loggers
    (e.g. 'jpegnet.data' warnings about skipped files) propagate as usual."""
    logger = logging.getLogger("jpegnet.train")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False  # one copy of each line, even when the root logger is configured
    if logger.level == logging.NOTSET:  # a level the application chose stays
        logger.setLevel(level)
    return logger
