"""Run folders a user can trust: never overwritten, self-describing, with a small weights-only best file.

- `check_run_folder`: a folder that already holds anything is refused unless the run resumes (`--resume`):
  a second `jpegnet train` into the same `--out` would otherwise replace the first run's checkpoints.
- `write_run_config`: config.json, the resolved configuration (every option after defaults, the model's
  input config, the data, the versions), written when the run starts.
- `write_best_weights`: best.safetensors, the best epoch's weights only (safetensors: no pickle, no code),
  with what rebuilds the model in its metadata.
- Console output goes through the `logging` logger 'jpegnet.train' (levels, redirection: configure it or
  its handlers like any logger); `StepLogger` writes step lines when no progress bar is shown.
"""
from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

from ..weights_file import WEIGHTS_FORMAT
from .checkpoint import atomic_write
from .errors import EngineError

train_logger = logging.getLogger("jpegnet.train")


class RunFolderError(EngineError, FileExistsError):
    """The --out folder already holds a run (or other files) and the run does not resume it."""


def check_run_folder(out_dir: str | os.PathLike, resume) -> None:
    """Refuse an existing non-empty run folder unless resuming (see module docstring)."""
    out = Path(out_dir)
    if resume is not None or not out.exists():
        return
    if not out.is_dir():
        raise RunFolderError(f"--out {out} exists and is not a folder")
    # config.json alone is a run that failed before its first step, and .NAME.*.tmp a checkpoint write it never
    # finished: nothing in either is worth keeping
    entries = sorted(p.name for p in out.iterdir()
                     if p.name != "config.json" and not (p.name.startswith(".") and p.name.endswith(".tmp")))
    if entries:
        hint = (f"continue it with --resume {out / 'last.pt'}" if (out / "last.pt").exists()
                else "remove it")
        raise RunFolderError(f"--out {out} already holds a run ({', '.join(entries[:3])}"
                             f"{', ...' if len(entries) > 3 else ''}); choose a new --out or {hint}")


def run_is_complete(epoch: int, epochs: int) -> bool:
    return epoch >= epochs


def versions() -> dict:
    import numpy
    import torch

    from .. import __version__
    out = {"jpegnet": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "platform": platform.platform()}
    try:
        import torchvision
        out["torchvision"] = torchvision.__version__
    except ImportError:  # only the RGB twin needs it
        out["torchvision"] = None
    return out


def write_run_config(out_dir: str | os.PathLike, config: dict) -> Path:
    path = Path(out_dir) / "config.json"
    data = (json.dumps(config, indent=2, sort_keys=False, default=str) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))
    return path


def read_run_config(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def write_best_weights(path: str | os.PathLike, state_dict: dict, *, model_name: str, model_kwargs: dict,
                       class_names: list[str], input_config: dict) -> Path:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    metadata = {"format": WEIGHTS_FORMAT, "model_name": model_name, "model_kwargs": json.dumps(model_kwargs),
                "num_classes": str(len(class_names)), "class_names": json.dumps(list(class_names)),
                "input_config": json.dumps(input_config)}
    data = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))
    return Path(path)


class StepLogger:
    """Step and validation progress lines through `logging`, for logs without a progress bar."""

    def __init__(self, enabled: bool, epoch: int, epochs: int, steps: int, what: str = "train"):
        self.enabled, self.epoch, self.epochs, self.steps, self.what = enabled, epoch, epochs, steps, what

    def step(self, batch: int, global_step: int, loss: float, lr: float, images_per_s: float) -> None:
        if self.enabled:
            train_logger.info("epoch %d/%d step %d/%d (global %d): loss %.4f, lr %.4g, %.1f images/s",
                              self.epoch, self.epochs, batch, self.steps, global_step, loss, lr, images_per_s)

    def validation(self, done: int, every: int) -> None:
        if self.enabled and (done % every == 0 or done == self.steps):
            train_logger.info("epoch %d/%d validation: %d/%d batches", self.epoch, self.epochs, done, self.steps)


from ..log import setup_console_logging  # noqa: E402  (re-exported: light module, no torch)


__all__ = ["RunFolderError", "StepLogger", "check_run_folder", "read_run_config", "run_is_complete",
           "setup_console_logging", "train_logger", "versions", "write_best_weights", "write_run_config"]
