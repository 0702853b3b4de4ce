"""Checkpoints: written atomically, loadable with `torch.load(weights_only=True)`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects), so it loads
with PyTorch's safe unpickler and never executes code from the file. `input_config` is stored as a dict and
the class names as a list; the model is rebuilt from its registry name and keyword arguments.

Files are first written to a temporary file in the same folder, flushed to disk and then renamed over the
target with `os.replace`, which is atomic on POSIX: a run killed at any moment leaves either the old
checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError

FORMAT = "jpegnet-checkpoint"
VERSION = 1


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call `write(file_object)` on a temporary file beside `path`, then rename it over `path`.

    The temporary file is removed if writing fails, so nothing half-written is ever left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint dict atomically (see module docstring)."""
    state = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a jpegnet checkpoint with the safe unpickler; CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jpegnet checkpoint (no '{FORMAT}' marker)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer jpegnet (checkpoint version "
                              f"{state['version']} > {VERSION})")
    for key in ("model_name", "model", "num_classes", "input_config"):
        if key not in state:
            raise CheckpointError(f"{path} lacks the entry {key!r}")
    return state


def model_from_checkpoint(state: dict, path: str = "checkpoint"):
    """Rebuild the model a checkpoint was trained with and load its weights (eval mode, CPU): the EMA weights
    when the run kept an EMA (those are what its validation measured), else the model's."""
    from ..models import InputConfig, create_model

    model = create_model(state["model_name"], num_classes=state["num_classes"],
                         **state.get("model_kwargs", {}))
    load_model_state(model, state.get("ema") or state["model"], path)
    model.input_config = InputConfig.from_dict(state["input_config"])
    return model.eval()


def load_model_state(model: torch.nn.Module, model_state: dict, path: str = "checkpoint") -> None:
    """load_state_dict with strict checking, turned into a one-line CheckpointError on mismatch."""
    own = model.state_dict()
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
    model.load_state_dict(model_state)


# --- random number generator states, in weights_only-safe form ---------------------------------------------

def capture_rng_state() -> dict:
    """Every RNG a training step may consume: torch (CPU and CUDA), numpy's global one, Python's."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
