"""Where a command runs and at what precision: the one place that turns --device / --precision /
--channels-last (or their absence) into a torch.device, an autocast dtype and a memory format.

Training, evaluation, prediction, the benchmark, the torch serving backend and the distributed setup all
resolve these here, so "CUDA when available", "bf16 on CUDA, fp32 on the CPU" and the error for a GPU that is
asked for but absent read the same everywhere.
"""
from __future__ import annotations

import torch

from .errors import ConfigError, DeviceError

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None: the first CUDA GPU when one is visible, else the CPU. 'cpu', 'cuda' and 'cuda:N' are checked
    against what this machine has; anything else is a DeviceError (also a ValueError) that says why."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):  # torch's own parse error for a string it does not know
            raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in DEVICE_TYPES:
        raise DeviceError(f"device {str(dev)!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {dev} was asked for but no CUDA GPU is visible")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {dev} was asked for but only {torch.cuda.device_count()} CUDA GPU(s) "
                              f"are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return dev


def resolve_precision(precision: str | None, device: torch.device, training: bool = False) -> str:
    """None: bf16 on CUDA, fp32 on the CPU. Training in fp16 needs CUDA (its loss scaling, GradScaler, is a
    CUDA feature); inference in fp16 autocasts on the CPU too."""
    if precision is None:
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if training and precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 autocast needs CUDA; use --precision bf16 or fp32 on the CPU")
    return precision


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """None: on for CUDA (its convolution kernels are fastest in NHWC), off on the CPU."""
    return device.type == "cuda" if channels_last is None else bool(channels_last)


def autocast_context(device: torch.device, precision: str):
    """torch.autocast at a resolved precision: off for fp32, bf16 or fp16 otherwise."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
