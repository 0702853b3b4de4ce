"""Models as the commands see them: the table of `jpegnet models` (input kind and size, parameters and,
optionally, GFLOPs) and `build_model`, a registered model built from options a person typed.

Models are built on PyTorch's 'meta' device (shapes only, no memory, no initialisation), so listing every
model with its parameter count takes seconds; FLOPs are counted from shapes on the same meta tensors. A model
that cannot be built on 'meta' falls back to the CPU.
"""
from __future__ import annotations

import fnmatch
import math
import numbers
import re

import torch

from ..errors import JpegnetError
from ..profile import count_flops, count_params
from .errors import ConfigError

# Builder keyword arguments from a checkpoint: plain values only, numbers at most this large. Multipliers of
# widths and depths are the only ones that size a model, and the registry's go up to 2; 64 leaves room for any
# real model and keeps even the shape-only ("meta") build of a bogus one to a few seconds. The memory a model
# may take is bounded exactly afterwards: its tensors must be the file's own.
MAX_KWARG_MAGNITUDE = 64
_BUILD_ONLY_KWARGS = ("features_only", "out_indices")  # a backbone is not a classifier: nothing to load into


def check_model_kwargs(kwargs, where: str = "model_kwargs") -> dict:
    """Builder keyword arguments as a checkpoint or the command line may give them: plain values, numbers finite
    and at most MAX_KWARG_MAGNITUDE; no features_only / out_indices (a backbone cannot be trained or loaded as
    a classifier). Raises ValueError / TypeError with a message; the callers say where the arguments came from."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"{where} must be a dict of keyword arguments, got {type(kwargs).__name__}")
    for key, value in kwargs.items():
        if key in _BUILD_ONLY_KWARGS:
            raise ValueError(f"{where}: {key} builds a feature backbone without a classifier head; it cannot be "
                             f"trained, evaluated or loaded from a checkpoint")
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            if v is None or isinstance(v, (bool, str)):
                continue
            if not isinstance(v, numbers.Real):
                raise TypeError(f"{where}: {key}={value!r} is not a plain value (number, bool, string, None)")
            if not math.isfinite(v) or abs(v) > MAX_KWARG_MAGNITUDE:
                raise ValueError(f"{where}: {key}={value!r} is out of range (finite, at most "
                                 f"{MAX_KWARG_MAGNITUDE} in magnitude)")
    return dict(kwargs)


def check_option_kwargs(kwargs, where: str = "--model-kwargs", error: type[JpegnetError] = ConfigError) -> dict:
    """check_model_kwargs for keyword arguments a person or a file gave: its refusals become `error`."""
    try:
        return check_model_kwargs(kwargs, where)
    except (TypeError, ValueError) as exc:  # its documented refusals of a value, each with the message to show
        raise error(str(exc)) from None


def build_model(name: str, num_classes: int = 1000, model_kwargs: dict | None = None,
                where: str = "--model-kwargs", error: type[JpegnetError] = ConfigError):
    """create_model(name, num_classes, **model_kwargs) for options from the command line or a TrainConfig.

    A keyword the builder does not take, or a value its checks refuse (a builder raises ValueError for those),
    is a ConfigError (or `error`: a checkpoint's arguments give a CheckpointError) naming `where`; an unknown
    name stays UnknownModelError. Any other exception of a builder is a bug and keeps its type and traceback."""
    from ..models import create_model

    kwargs = check_option_kwargs(model_kwargs or {}, where, error)
    try:
        return create_model(name, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None:
            raise
        rest = str(exc)[unknown.end():].strip()
        hint = f" {rest.splitlines()[0]}" if rest else ""  # what the builder adds, e.g. the keyword's new name
        raise error(f"{where}: {name} takes no keyword argument {unknown.group(1)!r}{hint}") from None
    except ValueError as exc:
        if isinstance(exc, JpegnetError) or not kwargs:  # without options from a person, a ValueError is a bug
            raise
        raise error(f"{where}: cannot build {name} with {kwargs}: {str(exc).splitlines()[0]}") from None


def _build(name: str):
    from ..models import create_model

    try:
        with torch.device("meta"):
            return create_model(name), torch.device("meta")
    except Exception:  # a builder doing host-side maths on its tensors; real memory is fine then
        return create_model(name), torch.device("cpu")


def model_table(pattern: str = "*", flops: bool = False) -> list[dict]:
    """One dict per registered model matching `pattern`: name, representation, input ('dct 224x224'),
    params, flops (None unless asked for, or if counting failed)."""
    from ..models import list_models

    rows = []
    for name in list_models("*"):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        model, device = _build(name)
        cfg = model.input_config
        h, w = cfg.input_size
        row = {"name": name, "representation": cfg.representation, "input": f"{cfg.representation} {h}x{w}",
               "params": count_params(model), "flops": None}
        if flops:
            try:
                row["flops"] = count_flops(model, model.example_inputs(1, device=device))
            except Exception:
                model, device = create_model_cpu(name)
                row["flops"] = count_flops(model, model.example_inputs(1))
        rows.append(row)
    return rows


def create_model_cpu(name: str):
    from ..models import create_model
    return create_model(name), torch.device("cpu")
