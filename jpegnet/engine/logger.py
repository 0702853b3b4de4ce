"""Run logs: a CSV with one row per epoch, TensorBoard events, and console lines. Rank 0 only.

The CSV is rewritten whole (atomically) from the run's history after each epoch; the history also lives in
the checkpoint, so a resumed run rewrites a CSV that matches the checkpoint exactly, with no duplicated or
half-written rows. TensorBoard is optional (used when `tensorboard` is importable) and created lazily, so a
run that fails before its first log line leaves no empty event file behind; on resume it purges events
logged after the checkpoint's step.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from .checkpoint import atomic_write

_logger = logging.getLogger("jpegnet.train")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write rows (dicts with the same keys in the same order) atomically as a CSV file."""
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    data = buf.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # ImportError, or tensorboard present but broken
        return False
    return True


class RunLogger:
    """CSV + TensorBoard + console for one training run (a no-op on ranks other than 0)."""

    def __init__(self, out_dir: str | Path | None, is_main: bool = True, tensorboard: bool = True,
                 purge_step: int | None = None, stream=None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.is_main = is_main
        self.enabled = is_main and self.out_dir is not None
        self.use_tensorboard = tensorboard and self.enabled and tensorboard_available()
        self.purge_step = purge_step
        self.stream = stream  # None: the logging module (see jpegnet.engine.runs)
        from .runs import setup_console_logging
        setup_console_logging()
        self._writer = None

    @property
    def csv_path(self) -> Path | None:
        return self.out_dir / "log.csv" if self.out_dir is not None else None

    def _tb(self):
        if self._writer is None and self.use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.purge_step)
        return self._writer

    def scalars(self, values: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        writer = self._tb()
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(key, value, step)

    def epoch(self, history: list[dict], step: int) -> None:
        """Log the newest history row: CSV (all rows), TensorBoard (this row), console."""
        if not self.enabled or not history:
            return
        write_csv(self.csv_path, history)
        row = history[-1]
        self.scalars({f"epoch/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"},
                     step)
        if self._writer is not None:
            self._writer.flush()

    def print(self, message: str) -> None:
        """A console line, through the 'jpegnet.train' logger (INFO) unless a stream was given."""
        if not self.is_main:
            return
        if self.stream is not None:
            print(message, file=self.stream, flush=True)
        else:
            _logger.info(message)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
