"""Checkpoints: written atomically, loadable with `torch.load(weights_only=True)`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects), so it loads
with PyTorch's safe unpickler and never executes code from the file. `input_config` is stored as a dict and
the class names as a list; the model is rebuilt from its registry name and keyword arguments.

Files are first written to a temporary file in the same folder, flushed to disk and then renamed over the
target with `os.replace`, which is atomic on POSIX: a run killed at any moment leaves either the old
checkpoint or the new one, never a torn file. A full disk is reported as such (the old file is kept).

Checkpoints come from elsewhere too (downloads, shared storage), so nothing in one is trusted before it is
checked: the weights carry a SHA-256 digest (version 2 on) that must match, and the model a checkpoint names is
first built on PyTorch's "meta" device (shapes only, no memory) and must have exactly the tensors the file
holds before it is built for real (see `model_from_checkpoint`).
"""
from __future__ import annotations

import errno
import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..weights_file import CHECKPOINT_FORMAT as FORMAT
from ..weights_file import check_state_fits, load_model_state  # noqa: F401  (re-exported: the format lives there)
from .errors import CheckpointError
from .zoo import build_model, check_option_kwargs

VERSION = 2  # 2: the weights' digest (model_sha256); version 1 files load without one



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


def weights_digest(model_state: dict) -> str:
    """SHA-256 over a state dict's tensors in key order: names, dtypes, shapes and raw bytes."""
    h = hashlib.sha256()
    for key in sorted(model_state):
        t = model_state[key]
        h.update(key.encode())
        if not isinstance(t, torch.Tensor):
            h.update(repr(t).encode())
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint dict atomically (see module docstring), with the digest of its weights.

    CheckpointError when it cannot be written (no space left, read-only folder...); the old file is kept."""
    state = {"format": FORMAT, "version": VERSION, **state}
    if "model" in state:
        state["model_sha256"] = weights_digest(state["model"])
    def write(f) -> None:
        try:
            torch.save(state, f)
        except RuntimeError:
            # torch's zip writer reports a failed write as "[enforce fail at inline_container.cc] unexpected
            # pos"; the bytes still buffered then fail to flush with the real OSError (ENOSPC, EDQUOT, EIO).
            f.flush()
            raise

    try:
        atomic_write(path, write)
    except OSError as exc:
        reason = "no space left on device" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or
                                                                                              str(exc))
        kept = f"; the previous {Path(path).name} is kept" if Path(path).exists() else ""
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}{kept}") from None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a jpegnet checkpoint with the safe unpickler; CheckpointError if it is not one, or if its weights do
    not match their digest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # every torch.save since PyTorch 1.6 is a zip archive
        raise CheckpointError(f"{path} is not a readable checkpoint (not a PyTorch zip archive)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        # Only the first line, and never torch's advice to retry with weights_only=False: that would run
        # whatever code the file carries.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first_line or "Weights only" in first_line:
            first_line = "it holds objects other than tensors and plain values, refused unread"
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jpegnet checkpoint (no '{FORMAT}' marker)")
    version = state.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} was written by a newer jpegnet (checkpoint version {version!r} > {VERSION})")
    for key in ("model_name", "model", "num_classes", "input_config"):
        if key not in state:
            raise CheckpointError(f"{path} lacks the entry {key!r}")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict")
    if version >= 2:
        if state.get("model_sha256") != weights_digest(state["model"]):
            raise CheckpointError(f"{path} is corrupt: its weights do not match their SHA-256 digest")
    return state


def build_checked_model(state: dict, path: str = "checkpoint"):
    """The model a checkpoint names, built only once it is known to fit the checkpoint's own tensors (which are
    in memory already): so a checkpoint can never make us allocate more than it holds. Weights not loaded."""
    from ..models import create_model

    kwargs = check_checkpoint_model(state, path)
    return create_model(state["model_name"], num_classes=state["num_classes"], **kwargs)


def check_checkpoint_model(state: dict, path: str = "checkpoint") -> dict:
    """CheckpointError unless the model a checkpoint names, with its num_classes and model_kwargs, has exactly
    the tensors of the checkpoint's weights. Built on the meta device: nothing is allocated, whatever the
    checkpoint asks for. Returns the checked model_kwargs."""
    from ..models import UnknownModelError

    name, num_classes = state["model_name"], state["num_classes"]
    if not isinstance(name, str):
        raise CheckpointError(f"{path}: model_name must be a string, got {type(name).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise CheckpointError(f"{path}: num_classes must be a positive integer, got {num_classes!r}")
    kwargs = check_option_kwargs(state.get("model_kwargs", {}), f"{path}: model_kwargs", CheckpointError)
    try:
        with torch.device("meta"):  # shapes only: nothing allocated, whatever the arguments ask for
            skeleton = build_model(name, num_classes, kwargs, f"{path}: model_kwargs", CheckpointError)
    except UnknownModelError as exc:
        raise CheckpointError(f"{path}: names a model this jpegnet does not have: {exc}") from None
    check_state_fits(skeleton.state_dict(), state["model"], path)
    return kwargs


def model_from_checkpoint(state: dict, path: str = "checkpoint"):
    """Rebuild the model a checkpoint was trained with and load its weights (eval mode, CPU): the EMA weights
    when the run kept an EMA (those are what its validation measured), else the model's."""
    from ..models import InputConfig

    model = build_checked_model(state, path)
    load_model_state(model, state.get("ema") or state["model"], path)
    # a config saved before a field existed takes the field's default (interpolation: 'bilinear', the filter
    # such checkpoints were trained with)
    try:
        model.input_config = InputConfig.from_dict(state["input_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its input_config is not valid: {exc}") from None
    return model.eval()


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
