"""`create_model`: build a registered model, optionally with weights and as a feature backbone.

Kept apart from `registry` because loading weights (`pretrained`) needs the families (a DCT model's RGB twin),
while the families need the registry to register themselves: with `create_model` here, neither import runs
in a circle.
"""
from __future__ import annotations

from torch import nn

from .pretrained import load_pretrained
from .registry import FeatureExtractor, model_builder


def create_model(name: str, num_classes: int = 1000, features_only: bool = False,
                 out_indices: tuple[int, ...] | None = None, pretrained: bool | str = False,
                 checkpoint_path: str | None = None, **kwargs) -> nn.Module:
    """Build a registered model. Unknown names raise UnknownModelError naming the closest matches.

    pretrained: True for the model's hub weights (torchvision / timm, downloaded where a network exists), or a
    spec (a weights file path, 'torchvision:NAME', 'timm:NAME'): every layer that fits is initialised from it
    (a DCT model takes the layers it shares with its RGB twin). checkpoint_path: a local weights file (jpegnet
    checkpoint, best.safetensors, torchvision / timm state dict) loaded strictly. What was loaded is in
    `model.pretrained_report` (see jpegnet.models.pretrained)."""
    model = model_builder(name)(num_classes=num_classes, **kwargs)
    model.registry_name = name
    if pretrained or checkpoint_path is not None:
        load_pretrained(model, name, pretrained, checkpoint_path, kwargs)
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model


__all__ = ["create_model"]
