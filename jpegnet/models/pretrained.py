"""Pretrained starts: `create_model(name, pretrained=..., checkpoint_path=...)` and `jpegnet train --init-from`.

Weights come from a local file (a jpegnet checkpoint or best.safetensors, or a torchvision / timm state dict
saved with torch.save or safetensors) or, where a network exists, from the torchvision / timm hubs
(`torchvision:NAME`, `timm:NAME`; nothing here downloads unless asked to).

Foreign key names are mapped with the family's registered converter (jpegnet.models.weights). An RGB model
takes every tensor that fits; a DCT model takes every layer it shares with its RGB twin: the stages after
the DCT entry (the backbone behind the generic stride-8 adapter, or ResNet-50's blocks in the paper's DCT
ResNets); its DCT stem is new. A module is loaded whole or not at all (never a conv without its norm), and
the report says what was loaded and what stays as initialised.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..weights_file import JPEGNET_FORMATS, first_line, load_model_state, read_weights_file
from .dct_adapter import DctAdapter
from .dct_resnet import DCT_RESNET_VARIANTS, _resnet50_name
from .registry import is_model, model_builder
from .weights import _CONVERTERS, HUB_SOURCES, SOURCES, WeightImportError, label_imagenet

#: Hub weights `pretrained=True` uses: the RGB twin's torchvision or timm weights.
HUB_DEFAULTS = {"resnet50": "torchvision:resnet50", "efficientnet_b0": "torchvision:efficientnet_b0",
                "efficientnet_b1": "torchvision:efficientnet_b1", "efficientnet_b2": "torchvision:efficientnet_b2",
                "efficientnet_b3": "torchvision:efficientnet_b3", "efficientnet_b4": "torchvision:efficientnet_b4",
                "efficientnet_b5": "torchvision:efficientnet_b5", "efficientnet_b6": "torchvision:efficientnet_b6",
                "efficientnet_b7": "torchvision:efficientnet_b7", "cspresnet50": "timm:cspresnet50"}


@dataclass
class InitReport:
    """What an initialisation took from its source."""

    source: str
    format: str                                   # 'jpegnet', 'torchvision', 'timm'
    loaded: list[str] = field(default_factory=list)   # model keys now holding the source's tensors
    new: list[str] = field(default_factory=list)      # model keys left as initialised
    unused: list[str] = field(default_factory=list)   # source keys (in jpegnet names) the model has no place for

    def summary(self) -> str:
        groups = sorted({".".join(k.split(".")[:2 if k.startswith("backbone.") else 1]) for k in self.new})
        return (f"init from {self.source} ({self.format} weights): loaded {len(self.loaded)} tensors, "
                f"{len(self.new)} new" + (f" ({', '.join(groups[:6])}{', ...' if len(groups) > 6 else ''})"
                                           if groups else "") + f", {len(self.unused)} unused")

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "loaded": len(self.loaded),
                "new": list(self.new), "unused": len(self.unused)}


# --- reading weights (local files: jpegnet.weights_file) -----------------------------------------------

def hub_state_dict(spec: str) -> dict:
    """Download `torchvision:NAME` / `timm:NAME` weights (needs a network; torchvision / timm cache them)."""
    source, _, name = spec.partition(":")
    try:
        if source == "torchvision":
            import torchvision
            return torchvision.models.get_model_weights(name).DEFAULT.get_state_dict(progress=False)
        if source == "timm":
            import timm
            return timm.create_model(name, pretrained=True).state_dict()
    except Exception as exc:  # no network, unknown name, no such weights
        raise WeightImportError(f"could not get {spec} weights ({type(exc).__name__}: {first_line(exc)}); "
                                f"pass a local weights file instead") from None
    raise WeightImportError(f"unknown weight source {source!r} in {spec!r}; use torchvision:NAME, timm:NAME "
                            f"or a file path")


# --- mapping onto a model ----------------------------------------------------------------------------------

def rgb_twin_name(model_name: str) -> str | None:
    """The RGB model whose layers a DCT model shares (None for an RGB model)."""
    if model_name in DCT_RESNET_VARIANTS:
        return "resnet50"
    if model_name.startswith("dct_") and is_model(model_name[4:]):
        return model_name[4:]
    return None


def to_jpegnet_names(rgb_model: nn.Module, state_dict: dict) -> tuple[dict, str]:
    """The state dict in `rgb_model`'s key names and the format it came in: as is when most keys already
    match, else through the first registered converter (torchvision, then timm) that maps the most keys."""
    own = rgb_model.state_dict()
    best, best_fmt, best_hits = dict(state_dict), "same key names", len(set(state_dict) & set(own))
    if best_hits >= 0.9 * len(own):
        return best, best_fmt
    for source in SOURCES:
        converter = next((_CONVERTERS[(cls, source)] for cls in type(rgb_model).__mro__
                          if (cls, source) in _CONVERTERS), None)
        if converter is None:
            continue
        try:
            converted = converter(rgb_model, dict(state_dict))
        except Exception:  # keys of another format: this converter does not apply
            continue
        hits = len(set(converted) & set(own))
        if hits > best_hits:
            best, best_fmt, best_hits = converted, source, hits
    if best_hits == 0:
        raise WeightImportError(f"no tensor of the weights fits {type(rgb_model).__name__} under any known "
                                f"naming (jpegnet, torchvision, timm, efficientnet_pytorch)")
    return best, best_fmt


def load_by_module(model: nn.Module, state_dict: dict, rename=lambda k: k) -> tuple[list[str], list[str]]:
    """Load, module by module, every module whose tensors all exist in `state_dict` (under `rename(key)`)
    with the same shapes; others keep their values. Returns (loaded keys, new keys)."""
    own = model.state_dict()
    groups: dict[str, list[str]] = {}
    for key in own:
        groups.setdefault(key.rsplit(".", 1)[0], []).append(key)
    loaded: dict[str, torch.Tensor] = {}
    for keys in groups.values():
        sources = [rename(k) for k in keys]
        if all(s in state_dict and state_dict[s].shape == own[k].shape for k, s in zip(keys, sources)):
            loaded.update({k: state_dict[s] for k, s in zip(keys, sources)})
    model.load_state_dict(loaded, strict=False)
    return sorted(loaded), sorted(set(own) - set(loaded))


def init_from(model: nn.Module, spec: str, model_name: str | None = None,
              model_kwargs: dict | None = None) -> InitReport:
    """Initialise `model` from `spec` (a file path, `torchvision:NAME` or `timm:NAME`) as the module
    docstring says; returns the report. model_name: its registry name (default: the model's own)."""
    model_name = model_name or getattr(model, "registry_name", None)
    if spec.split(":", 1)[0] in HUB_SOURCES:
        state_dict, meta = hub_state_dict(spec), {}
    else:
        state_dict, meta = read_weights_file(spec)
    twin_name = rgb_twin_name(model_name) if model_name else None
    if twin_name is None and isinstance(model, DctAdapter):
        raise WeightImportError("a DCT model needs its registry name to find its RGB twin")
    if twin_name is None:  # an RGB model: its own converter
        named, fmt = _named_for(model, state_dict, meta, model_name)
        loaded, new = load_by_module(model, named)
        if fmt in SOURCES and _classifier_loaded(model, loaded):  # a foreign zoo's classifier: ImageNet-1k
            label_imagenet(model)
        return InitReport(spec, fmt, loaded, new, sorted(set(named) - set(loaded)))
    kwargs = dict(model_kwargs or {}) if isinstance(model, DctAdapter) else {}
    with torch.device("meta"):  # only the key names and shapes of the twin are needed
        twin = model_builder(twin_name)(num_classes=getattr(model, "num_classes", 1000), **kwargs)
    named, fmt = _named_for(twin, state_dict, meta, twin_name)
    if isinstance(model, DctAdapter):
        loaded, new = load_by_module(model, named, rename=lambda k: k.removeprefix("backbone."))
        used = {k.removeprefix("backbone.") for k in loaded}
        _copy_norm_eps(twin, model.backbone)  # converters set the eps the weights were trained with
    else:
        loaded, new = load_by_module(model, named, rename=_resnet50_name)
        used = {_resnet50_name(k) for k in loaded}
    if fmt in SOURCES and _classifier_loaded(model, loaded):
        label_imagenet(model)
    return InitReport(spec, fmt, loaded, new, sorted(set(named) - used))


def _classifier_loaded(model: nn.Module, loaded: list[str]) -> bool:
    """Whether the model's final linear layer came from the weights (then it predicts what they did)."""
    head = model.backbone if isinstance(model, DctAdapter) else model
    attr = getattr(head, "classifier_attr", None)
    prefix = ("backbone." if head is not model else "") + f"{attr}."
    return attr is not None and any(key.startswith(prefix) for key in loaded)


def _copy_norm_eps(source: nn.Module, target: nn.Module) -> None:
    mods = dict(target.named_modules())
    for name, m in source.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and isinstance(mods.get(name), type(m)):
            mods[name].eps = m.eps


def _named_for(model: nn.Module, state_dict: dict, meta: dict, model_name) -> tuple[dict, str]:
    if meta.get("format") in JPEGNET_FORMATS:
        return state_dict, "jpegnet"
    return to_jpegnet_names(model, state_dict)


def load_pretrained(model: nn.Module, name: str, pretrained, checkpoint_path, model_kwargs: dict) -> nn.Module:
    """create_model's pretrained / checkpoint_path. checkpoint_path loads strictly (every tensor of the
    model, as timm does); pretrained (True: the hub default of HUB_DEFAULTS; or a spec like --init-from)
    initialises what fits and leaves the rest (e.g. a classifier of another size, a DCT stem) as built."""
    if checkpoint_path is not None:
        state_dict, meta = read_weights_file(checkpoint_path)
        twin = model if rgb_twin_name(name) is None else None
        if twin is None or meta.get("format") in JPEGNET_FORMATS:
            named, fmt = state_dict, meta.get("format", "state dict")
        else:
            named, fmt = to_jpegnet_names(model, state_dict)
        load_model_state(model, named, str(checkpoint_path))
        if fmt in SOURCES:  # a foreign zoo's classifier, loaded whole: the ImageNet-1k classes
            label_imagenet(model)
        model.pretrained_report = InitReport(str(checkpoint_path), fmt, sorted(named), [], [])
    if pretrained:
        spec = pretrained if isinstance(pretrained, str) else HUB_DEFAULTS.get(rgb_twin_name(name) or name)
        if spec is None:
            raise WeightImportError(f"no pretrained weights are known for {name}; pass pretrained='PATH' or "
                                    f"checkpoint_path=")
        model.pretrained_report = init_from(model, spec, name, model_kwargs)
    return model


__all__ = ["HUB_DEFAULTS", "InitReport", "hub_state_dict", "init_from", "load_by_module", "load_pretrained",
           "read_weights_file", "rgb_twin_name", "to_jpegnet_names"]
