"""Reading model weights from local files, and checking that they fit a model.

The part of the checkpoint format that both `jpegnet.models` (`create_model(checkpoint_path=...)`,
`pretrained=PATH`) and `jpegnet.engine` (resume, evaluate, export) need. It lives here, beside neither,
because models never import the engine: the engine's checkpoint module writes and validates whole training
checkpoints and uses these for the weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import JpegnetError

CHECKPOINT_FORMAT = "jpegnet-checkpoint"  # the marker of a training checkpoint (engine.checkpoint writes it)
WEIGHTS_FORMAT = "jpegnet-weights"        # the marker of an exported best.safetensors (engine.runs writes it)
JPEGNET_FORMATS = (CHECKPOINT_FORMAT, WEIGHTS_FORMAT)


class CheckpointError(JpegnetError, ValueError):
    """A file that is not a jpegnet checkpoint / weights file, or one that does not fit the model, data or run
    at hand (also `jpegnet.engine.CheckpointError`)."""


def read_weights_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """(state dict, metadata) of a local weights file: .safetensors, a jpegnet checkpoint (the EMA weights
    when it has them: those were evaluated), or a torch.save'd state dict (optionally under 'state_dict' /
    'model'). Loaded with the safe unpickler: a file cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, meta
        except Exception as exc:  # safetensors raises its own SafetensorError for bad files
            raise CheckpointError(f"{path} is not a readable safetensors file ({first_line(exc)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable weights file ({first_line(exc)})") from None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        meta = {"format": CHECKPOINT_FORMAT, "model_name": obj.get("model_name")}
        return dict(obj.get("ema") or obj["model"]), meta
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}, {}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model_state(model: torch.nn.Module, model_state: dict, path: str = "checkpoint") -> None:
    """load_state_dict with strict checking, turned into a one-line CheckpointError on mismatch."""
    check_state_fits(model.state_dict(), model_state, path)
    model.load_state_dict(model_state)


def check_state_fits(own: dict, model_state: dict, path: str = "checkpoint") -> None:
    """CheckpointError unless model_state has exactly the keys and shapes of `own` (a model's state dict)."""
    if not all(isinstance(v, torch.Tensor) for v in model_state.values()):
        raise CheckpointError(f"{path}: its weights hold values that are not tensors")
    missing = [k for k in own if k not in model_state]
    unexpected = [k for k in model_state if k not in own]
    wrong_shape = [k for k in own if k in model_state and own[k].shape != model_state[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"{len(wrong_shape)} of another shape (e.g. {k}: "
                         f"{tuple(model_state[k].shape)} in file, {tuple(own[k].shape)} in model)")
        raise CheckpointError(f"{path} does not fit the model: " + "; ".join(parts))


__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "JPEGNET_FORMATS", "WEIGHTS_FORMAT", "check_state_fits",
           "load_model_state", "read_weights_file"]
