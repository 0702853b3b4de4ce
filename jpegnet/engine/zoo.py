"""The model table of `jpegnet models`: input kind and size, parameters and (optionally) GFLOPs.

Models are built on PyTorch's 'meta' device (shapes only, no memory, no initialisation), so listing every
model with its parameter count takes seconds; FLOPs are counted from shapes on the same meta tensors. A model
that cannot be built on 'meta' falls back to the CPU.
"""
from __future__ import annotations

import fnmatch

import torch

from ..profile import count_flops, count_params


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
