"""Teachers cut in two: the front (pixels → the stride-8 feature map) and the remainder (that map → logits).

`jpegnet convert` replaces a pretrained CNN's front with a DCT entry and keeps its remainder. A teacher is
a registered jpegnet model (`resnet50`, `efficientnet_b0`, ...) or any timm CNN (`timm:NAME`, timm being an
optional dependency). The cut goes after the module named in the model's `feature_info` as the last one at
stride 8 (or after a module the user names: `blocks.1` of an EfficientNet cuts at stride 4, `blocks.4` at 16).

How the cut is made, generically: the modules that run, in order, from the input to the cut (the *front
chain*) are the jpegnet stride-8 entry protocol's `stride8_prefix` for a jpegnet model (extended generically
past stride 8 where the model's stages continue that sequence), and for a timm model
its top-level children in registration order, with the container of the cut module (`blocks`, `stages`)
opened up to it; timm's own `features_only` wrapper relies on the same order. The remainder is the very
model with every front-chain module replaced by `nn.Identity`, so `remainder(features)` runs the model's own
`forward_features` and `forward_head` from the cut on (no copy of any code path, nothing re-implemented).
`cut_teacher` checks on a small random image that remainder(front(x)) equals model(x); a model whose forward
does something between those modules that the chain misses is refused instead of being silently wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import JpegnetError
from .registry import JpegNetModel

TIMM_PREFIX = "timm:"
#: The image side of the check that a cut reproduces the model (a multiple of 32 so every stride divides it).
CHECK_SIZE = 64


class TeacherError(JpegnetError, ValueError):
    """A teacher that cannot be built, loaded or cut as asked; the message says which and why."""


def is_timm_spec(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(TIMM_PREFIX)


def build_teacher_architecture(spec: str, num_classes: int = 1000) -> nn.Module:
    """The teacher network, randomly initialised: `timm:NAME` through timm (pretrained=False: nothing is
    downloaded), anything else a registered jpegnet RGB model."""
    if not isinstance(spec, str) or not spec:
        raise TeacherError(f"a teacher is a jpegnet model name or timm:NAME, got {spec!r}")
    if is_timm_spec(spec):
        try:
            import timm
        except ImportError:
            raise TeacherError(f"teacher {spec} needs timm: pip install 'jpegnet[timm]'") from None
        name = spec[len(TIMM_PREFIX):]
        if not timm.is_model(name):
            raise TeacherError(f"unknown timm model {name!r} (teacher {spec}); `timm.list_models()` lists them")
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    from .factory import create_model

    model = create_model(spec, num_classes=num_classes)
    if model.input_config.representation != "rgb":
        raise TeacherError(f"teacher {spec} takes DCT input already; a teacher is an RGB (pixel) model")
    return model


def teacher_preprocessing(model: nn.Module) -> dict:
    """The teacher's evaluation transform: input_size (h, w), mean, std, crop_pct, interpolation."""
    cfg = getattr(model, "input_config", None)
    if cfg is not None:  # a jpegnet model
        return {"input_size": tuple(cfg.input_size), "mean": tuple(cfg.mean), "std": tuple(cfg.std),
                "crop_pct": float(cfg.crop_pct), "interpolation": getattr(cfg, "interpolation", "bilinear")}
    pcfg = dict(getattr(model, "pretrained_cfg", None) or {})
    size = tuple(pcfg.get("input_size", (3, 224, 224)))[-2:]
    return {"input_size": size, "mean": tuple(pcfg.get("mean", (0.485, 0.456, 0.406))),
            "std": tuple(pcfg.get("std", (0.229, 0.224, 0.225))), "crop_pct": float(pcfg.get("crop_pct", 0.875)),
            "interpolation": pcfg.get("interpolation", "bilinear")}


# --- the cut -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CutPoint:
    """Where a teacher is cut: after module `name`; its output has `channels` channels at `reduction`."""

    name: str
    channels: int
    reduction: int
    front: tuple[str, ...]  # the front chain: modules run in order from the input up to and including `name`


def _feature_info(model: nn.Module) -> list[dict]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "get_dicts"):  # timm's FeatureInfo object (features_only models)
        return list(info.get_dicts())
    return [dict(d) for d in info]


def _chain(model: nn.Module, cut: str) -> tuple[str, ...]:
    """The front chain up to and including `cut` (see the module docstring)."""
    prefix = getattr(model, "stride8_prefix", None)
    if isinstance(model, JpegNetModel) and prefix:
        names = tuple(prefix)
        if cut in names:
            return names[: names.index(cut) + 1]
        # Past stride 8 the generic chain (below) is trusted only where it runs through the model's whole
        # stride-8 prefix in its order first, i.e. where the model's forward is that plain sequence so far.
        try:
            chain = _generic_chain(model, cut)
        except TeacherError:
            chain = ()
        if chain[: len(names)] != names:
            raise TeacherError(f"cannot cut {type(model).__name__} after {cut!r}: a jpegnet model is cut after "
                               f"one of its stride-8 entry modules {list(names)}, or after a later stage of "
                               f"the same sequence")
        return chain
    return _generic_chain(model, cut)


def _generic_chain(model: nn.Module, cut: str) -> tuple[str, ...]:
    """The top-level children up to `cut`, its container (a sequence of stages) opened up to it."""
    top, _, inner = cut.partition(".")
    children = [name for name, _ in model.named_children()]
    if top not in children:
        raise TeacherError(f"{type(model).__name__} has no module {cut!r} to cut after")
    chain = children[: children.index(top)]
    if not inner:
        return tuple(chain) + (top,)
    container = model.get_submodule(top)
    if not isinstance(container, (nn.Sequential, nn.ModuleList)) or "." in inner:
        raise TeacherError(f"cannot cut {type(model).__name__} after {cut!r}: only a top-level module or a "
                           f"stage of a top-level sequence of stages can be cut after")
    inner_names = [name for name, _ in container.named_children()]
    if inner not in inner_names:
        raise TeacherError(f"{type(model).__name__} has no module {cut!r} to cut after")
    return tuple(chain) + tuple(f"{top}.{n}" for n in inner_names[: inner_names.index(inner) + 1])


def find_cut(model: nn.Module, cut: str | None = None) -> CutPoint:
    """The cut after `cut` (a module name), or by default after the last stride-8 entry of `feature_info`."""
    infos = _feature_info(model)
    if not infos:
        raise TeacherError(f"{type(model).__name__} lists no feature_info (module, channels, stride); it cannot "
                           f"be cut generically")
    if cut is None:
        at8 = [d for d in infos if d["reduction"] == 8]
        if not at8:
            raise TeacherError(f"{type(model).__name__} has no stage at stride 8 in its feature_info "
                               f"{[(d['module'], d['reduction']) for d in infos]}; name the stage to cut after")
        info = at8[-1]
    else:
        matches = [d for d in infos if d["module"] == cut]
        if not matches:
            raise TeacherError(f"{type(model).__name__} has no feature stage {cut!r}; its stages are "
                               f"{[(d['module'], d['reduction']) for d in infos]}")
        info = matches[0]
    return CutPoint(info["module"], int(info["num_chs"]), int(info["reduction"]), _chain(model, info["module"]))


def remove_front(model: nn.Module, point: CutPoint) -> nn.Module:
    """The model itself (changed in place) with every front-chain module replaced by nn.Identity: its
    forward_features then takes the feature map at the cut; its feature_info keeps the later stages."""
    for name in point.front:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity().train(model.training))
    if isinstance(model, JpegNetModel):
        model.feature_info = [d for d in model.feature_info if d["reduction"] > point.reduction]
    return model


class Front(nn.Module):
    """The teacher's front chain as one module: pixels → the feature map at the cut (the modules are shared
    with the model they came from)."""

    def __init__(self, model: nn.Module, point: CutPoint):
        super().__init__()
        self.names = point.front
        self.layers = nn.ModuleList([model.get_submodule(n) for n in point.front])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Remainder(nn.Module):
    """The teacher from the cut on: `remainder(features)` = logits; forward_features / forward_head too."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.net.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def cut_teacher(model: nn.Module, cut: str | None = None, check: bool = True) -> tuple[Front, Remainder, CutPoint]:
    """(front, remainder, cut point) of `model`; the model keeps working whole. The remainder is a deep copy
    of the model without its front (so training it leaves the teacher alone). check: verify on a random
    image that remainder(front(x)) == model(x) (TeacherError if not)."""
    import copy

    point = find_cut(model, cut)
    front = Front(model, point)
    remainder = Remainder(remove_front(copy.deepcopy(model), point))
    for wrapper in (front, front.layers, remainder):  # the wrappers (not the layers) start in the model's mode
        wrapper.training = model.training
    if check:
        check_cut(model, front, remainder, point)
    return front, remainder, point


@torch.no_grad()
def check_cut(model: nn.Module, front: nn.Module, remainder: nn.Module, point: CutPoint) -> None:
    if any(p.is_meta for p in model.parameters()):
        return  # shapes only: nothing to compare
    # Every module's own mode is put back afterwards, not each wrapper's: a fresh Front is in training mode
    # while the teacher layers it shares are in eval mode, and `front.train(True)` would flip those layers'
    # BatchNorms to batch statistics (and running-statistic updates) in the teacher itself.
    modes = {m: m.training for part in (model, front, remainder) for m in part.modules()}
    model.eval(), front.eval(), remainder.eval()
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, CHECK_SIZE, CHECK_SIZE, generator=generator)
        features = front(x)
        whole, split = model(x), remainder(features)
    finally:
        for module, training in modes.items():
            module.training = training
    expected = (x.shape[0], point.channels, CHECK_SIZE // point.reduction, CHECK_SIZE // point.reduction)
    if tuple(features.shape) != expected:
        raise TeacherError(f"cutting {type(model).__name__} after {point.name!r} gave features of shape "
                           f"{tuple(features.shape)}, not the {expected} its feature_info promises")
    scale = float(whole.abs().max()) or 1.0
    if whole.shape != split.shape or float((whole - split).abs().max()) > 1e-4 * scale:
        raise TeacherError(f"{type(model).__name__} cannot be cut after {point.name!r} generically: its forward "
                           f"does more than run its modules in order up to there; name another stage")


__all__ = ["CutPoint", "Front", "Remainder", "TeacherError", "build_teacher_architecture", "check_cut",
           "cut_teacher", "find_cut", "is_timm_spec", "remove_front", "teacher_preprocessing"]
