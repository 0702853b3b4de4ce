"""The model registry, in the timm style: families register builder functions by name.

`register_model` (a decorator) and `register_variant` (a generated name: a builder with preset keywords) fill
it; `list_models(pattern)` lists names and `model_builder(name)` finds one (`create_model`, in `factory`, builds
it). Every registered model is a `JpegNetModel` and carries an `InputConfig` saying which input it takes.

This module imports no model family and nothing that builds models: the families import it to register
themselves, and `jpegnet.models` imports the families.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

import torch
from torch import nn

from ..errors import JpegnetError
from ..input_config import DCT_CBCR_CHANNELS, DCT_Y_CHANNELS, IMAGENET_MEAN, IMAGENET_STD, InputConfig  # noqa: F401
from ..layers.classifier import check_num_classes, linear_classifier  # noqa: F401  (re-exported)


class UnknownModelError(JpegnetError, KeyError, ValueError):
    """An unknown model name; the message suggests the closest registered names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""




class JpegNetModel(nn.Module):
    """Base of every registered model: the timm-like classifier interface.

    Subclasses set `input_config`, `num_classes`, `num_features`, `feature_info` (a list of dicts with
    'module' (a submodule name), 'num_chs' and 'reduction' (stride in input pixels)) and implement
    `forward_features(*inputs)`, `forward_head(x, pre_logits=False)` and `reset_classifier(num_classes)`; every
    family here gets the last two (and `num_classes`, `num_features`) from `jpegnet.layers.ClassifierHead`.
    """

    input_config: InputConfig = InputConfig()
    #: (input name, dotted BatchNorm path) pairs: a BatchNorm that is the only consumer of that raw input ("y" or
    #: "cbcr"). An export folds its statistics into the input normalization (jpegnet.engine.input_fold).
    input_batchnorms: tuple[tuple[str, str], ...] = ()
    num_classes: int = 1000
    num_features: int = 0
    feature_info: list[dict]

    def forward_features(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(*inputs))

    def example_inputs(self, batch_size: int = 1, size: int | tuple[int, int] | None = None,
                       device=None, dtype=torch.float32) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right kind and shape for this model (for tests, profiling, benchmarks)."""
        return example_inputs(self.input_config, batch_size, size, device=device, dtype=dtype)


def example_inputs(cfg: InputConfig, batch_size: int = 1, size=None, device=None,
                   dtype=torch.float32) -> tuple[torch.Tensor, ...]:
    h, w = (size, size) if isinstance(size, int) else (size or cfg.input_size)
    if cfg.representation == "rgb":
        return (torch.randn(batch_size, 3, h, w, device=device, dtype=dtype),)
    if h % 16 or w % 16:
        raise ValueError(f"DCT input size must be a multiple of 16, got {h}x{w}")
    return (torch.randn(batch_size, DCT_Y_CHANNELS, h // 8, w // 8, device=device, dtype=dtype),
            torch.randn(batch_size, DCT_CBCR_CHANNELS, h // 16, w // 16, device=device, dtype=dtype))


class FeatureExtractor(nn.Module):
    """`features_only=True`: returns the multi-scale feature maps named by the model's feature_info.

    Runs the wrapped model's forward_features and collects the outputs of the feature modules with forward
    hooks, so every family gets it for free from its feature_info.
    """

    def __init__(self, model: JpegNetModel, out_indices: tuple[int, ...] | None = None):
        super().__init__()
        self.model = model
        infos = list(model.feature_info)
        if out_indices is None:
            out_indices = tuple(range(len(infos)))
        self.out_indices = tuple(i if i >= 0 else len(infos) + i for i in out_indices)
        self.feature_info = [infos[i] for i in self.out_indices]
        self.input_config = model.input_config
        self._names = [info["module"] for info in self.feature_info]
        modules = dict(model.named_modules())
        missing = [n for n in self._names if n not in modules]
        if missing:
            raise ValueError(f"feature_info names modules that do not exist: {missing}")
        self._store: dict[str, torch.Tensor] = {}
        for name in self._names:
            modules[name].register_forward_hook(self._make_hook(name))

    def _make_hook(self, name: str):
        def hook(_module, _inp, out):
            self._store[name] = out
        return hook

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        self._store = {}
        self.model.forward_features(*inputs)
        out = [self._store[n] for n in self._names]
        self._store = {}
        return out

    def example_inputs(self, *args, **kwargs):
        return self.model.example_inputs(*args, **kwargs)


_REGISTRY: dict[str, Callable[..., JpegNetModel]] = {}


def register_model(fn: Callable[..., JpegNetModel]) -> Callable[..., JpegNetModel]:
    """Decorator: register a builder `fn(num_classes=..., **kwargs)` under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn


def register_variant(name: str, build: Callable[..., JpegNetModel], doc: str, **preset) -> Callable[..., JpegNetModel]:
    """Register a generated model name: `name(num_classes, **kwargs)` calls `build(num_classes=num_classes,
    **preset, **kwargs)`, a keyword given by the caller replacing the preset one. Every family registers its
    generated names (width / SE / alpha variants, DCT twins) through this; returns the builder."""

    def builder(num_classes: int = 1000, **kwargs) -> JpegNetModel:
        return build(num_classes=num_classes, **{**preset, **kwargs})

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    builder.preset = dict(preset)
    return register_model(builder)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    return name in _REGISTRY


def model_builder(name: str) -> Callable[..., JpegNetModel]:
    """The builder registered as `name`; UnknownModelError naming the closest registered names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY.keys(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see jpegnet.list_models()"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None
