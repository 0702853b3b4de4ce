"""The classifier head every model family shares: global average pool → (hidden layers) → dropout → linear.

It is a mixin rather than a submodule so that each family keeps the state-dict names its foreign weights use
(`fc.*` for torchvision's ResNet-50 and timm's CSPNet after conversion, `classifier.*` for EfficientNet and
VGNet): the family names the linear layer with `classifier_attr`, the head does the rest. The pooling and
dropout hold no parameters, so their names (`global_pool`, `head_drop`) are not in any state dict.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn


def check_num_classes(num_classes) -> int:
    """A classifier size: an int >= 0 (0 means no classifier: the head returns pooled features)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 removes the classifier), got {num_classes}")
    return int(num_classes)


def check_drop_rate(drop_rate, name: str = "drop_rate") -> float:
    """A dropout probability in [0, 1)."""
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {drop_rate!r}")
    return float(drop_rate)


def linear_classifier(num_features: int, num_classes: int, device=None, dtype=None) -> nn.Module:
    """The final fully connected layer, or nn.Identity for num_classes == 0."""
    num_classes = check_num_classes(num_classes)
    return nn.Linear(num_features, num_classes, device=device, dtype=dtype) if num_classes else nn.Identity()


class ClassifierHead:
    """Mixin for an nn.Module model: `init_head` builds the head, `forward_head` / `reset_classifier` run it.

    forward_head(x, pre_logits=False): x (N, C, H, W) → `global_pool` → flatten → `pre_logits` (hidden layers,
    nn.Identity unless given) → features (returned when pre_logits=True) → `head_drop` → the linear layer.
    """

    classifier_attr = "fc"  # the linear layer's attribute (state-dict prefix); families override it

    def init_head(self, num_features: int, num_classes: int, drop_rate: float = 0.0,
                  pool: nn.Module | None = None, hidden: nn.Module | None = None) -> None:
        """pool: the pooling before flattening (default: global average); hidden: layers between the flattened
        pool output and the dropout (VGG's MLP), whose output is the pre-logits feature of `num_features`."""
        self.num_features = num_features
        self.num_classes = check_num_classes(num_classes)
        self.global_pool = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        self.pre_logits = hidden if hidden is not None else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate) if check_drop_rate(drop_rate) > 0 else nn.Identity()
        setattr(self, self.classifier_attr, linear_classifier(num_features, self.num_classes))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(torch.flatten(self.global_pool(x), 1))
        if pre_logits:
            return x
        return getattr(self, self.classifier_attr)(self.head_drop(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear layer by a fresh one with `num_classes` outputs (0: none, features out), on the
        device and in the dtype of the model's parameters."""
        num_classes = check_num_classes(num_classes)
        param = next(self.parameters(), None)
        where = dict(device=param.device, dtype=param.dtype) if param is not None else {}
        setattr(self, self.classifier_attr, linear_classifier(self.num_features, num_classes, **where))
        self.num_classes = num_classes


__all__ = ["ClassifierHead", "check_drop_rate", "check_num_classes", "linear_classifier"]
