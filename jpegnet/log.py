"""Console output of jpegnet through the `logging` module, set up without importing torch (the CLI calls it
first thing). A run's lines go to the 'jpegnet.train' logger: change its level or handlers to redirect them.
While a progress bar is on the terminal, `console_lines_through(bar_write)` sends the console lines through
the bar's writer, so that a warning prints above the bar instead of into it."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager


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


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr,
                                                                             sys.__stdout__, sys.__stderr__)


class _WriteHandler(logging.Handler):
    """Each formatted record handed to `write(line)` (a progress bar's writer), with the level, formatter and
    filters of the console handler it stands in for."""

    def __init__(self, write, like: logging.Handler | None = None, level: int = logging.NOTSET):
        super().__init__(like.level if like is not None else level)
        self._write = write
        if like is not None:
            self.setFormatter(like.formatter)
            self.filters = list(like.filters)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


@contextmanager
def console_lines_through(write):
    """While open, log lines bound for the terminal are written by `write(line)` (e.g. tqdm.write): those of
    console handlers on the 'jpegnet.train' and 'jpegnet' loggers and the root logger, and those Python prints
    itself when no handler takes a record (its last resort: how a library's warnings, such as jpegnet.data's
    `skipping FILE: reason`, reach stderr by default). Handlers writing elsewhere (files) are left as they are."""
    swapped = []
    for name in ("jpegnet.train", "jpegnet", None):
        logger = logging.getLogger(name)
        for i, handler in enumerate(logger.handlers):
            if _is_console(handler):
                logger.handlers[i] = _WriteHandler(write, like=handler)
                swapped.append((logger, i, handler))
    last_resort = logging.lastResort
    if last_resort is not None:
        logging.lastResort = _WriteHandler(write, level=last_resort.level)
    try:
        yield
    finally:
        logging.lastResort = last_resort
        for logger, i, handler in swapped:
            logger.handlers[i] = handler
