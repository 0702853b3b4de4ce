"""Models as the commands see them: the table of `jpegnet models` (input kind and size, parameters and,
optionally, GFLOPs) and `build_model`, a registered model built from options a person typed.

Models are built on PyTorch's 'meta' device (shapes only, no memory, no initialisation), so listing every
model with its parameter count takes seconds; FLOPs are counted from shapes on the same meta tensors. A model
that cannot be built on 'meta' falls back to the CPU.
"""
from __future__ import annotations

import fnmatch
import re

import torch

from ..errors import JpegnetError
from ..profile import count_flops, count_params
from .checkpoint import check_model_kwargs
from .errors import ConfigError


def check_option_kwargs(kwargs, where: str = "--model-kwargs") -> dict:
    """check_model_kwargs for keyword arguments a person gave: its refusals become a ConfigError."""
    try:
        return check_model_kwargs(kwargs, where)
    except (TypeError, ValueError) as exc:  # its documented refusals of a value, each with the message to show
        raise ConfigError(str(exc)) from None


def build_model(name: str, num_classes: int = 1000, model_kwargs: dict | None = None,
                where: str = "--model-kwargs"):
    """create_model(name, num_classes, **model_kwargs) for options from the command line or a TrainConfig.

    A keyword the builder does not take, or a value its checks refuse (a builder raises ValueError for those),
    is a ConfigError naming `where`; an unknown name stays UnknownModelError. Any other exception of a builder
    is a bug and keeps its type and traceback."""
    from ..models import create_model

    kwargs = check_option_kwargs(model_kwargs or {}, where)
    try:
        return create_model(name, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None:
            raise
        raise ConfigError(f"{where}: {name} takes no keyword argument {unknown.group(1)!r}") from None
    except ValueError as exc:
        if isinstance(exc, JpegnetError) or not kwargs:  # without options from a person, a ValueError is a bug
            raise
        raise ConfigError(f"{where}: cannot build {name} with {kwargs}: {str(exc).splitlines()[0]}") from None


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
