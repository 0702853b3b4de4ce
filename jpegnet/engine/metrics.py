"""Top-k accuracy and confusion matrices, accumulated on the device (no host sync per step)."""
from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the k highest logits, for each k (k capped at classes)."""
    max_k = min(max(ks), logits.shape[1])
    top = logits.topk(max_k, dim=1).indices
    hits = top.eq(targets.unsqueeze(1))
    return [hits[:, :min(k, max_k)].any(dim=1).sum() for k in ks]


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
