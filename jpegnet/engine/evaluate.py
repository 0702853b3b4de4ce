"""Evaluation (top-1 / top-5, loss, images/s, confusion matrix) and the confusion-matrix figure."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from .device import autocast_context
from .distributed import all_reduce_sum
from .metrics import confusion_matrix, topk_correct


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | str = "cpu", precision: str = "fp32",
             num_classes: int | None = None, criterion: nn.Module | None = None,
             channels_last: bool = False, on_batch=None) -> dict:
    """Run `model` over every batch of `loader`; sums are reduced over processes when distributed.

    Returns loss (mean cross-entropy, with the criterion's label smoothing if given), top1 / top5 (%),
    images, seconds, images_per_s (this process's rate times the number of processes is not claimed: it is
    images over the slowest process's wall time) and, when num_classes is given, the confusion matrix.
    on_batch(batches done): called after each batch (progress lines).
    """
    device = torch.device(device)
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros(2, dtype=torch.int64, device=device)
    seen = torch.zeros((), dtype=torch.int64, device=device)
    confusion = (torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
                 if num_classes else None)
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    start = time.perf_counter()
    done = 0
    try:
        for inputs, targets in loader:
            if channels_last:
                inputs = tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs)
            with autocast_context(device, precision):
                logits = model(*inputs)
            logits = logits.float()
            loss_sum += criterion(logits, targets).double() * targets.shape[0]
            correct += torch.stack(topk_correct(logits, targets))
            seen += targets.shape[0]
            if confusion is not None:
                confusion += confusion_matrix(logits.argmax(1), targets, num_classes)
            done += 1
            if on_batch is not None:
                on_batch(done)
    finally:
        model.train(was_training)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    sums = all_reduce_sum(torch.cat([loss_sum.reshape(1), correct.double(), seen.double().reshape(1),
                                     torch.tensor([seconds], dtype=torch.float64, device=device)]))
    images = int(sums[3])
    n = max(images, 1)
    result = {"loss": float(sums[0]) / n, "top1": 100.0 * float(sums[1]) / n, "top5": 100.0 * float(sums[2]) / n,
              "images": images, "seconds": seconds, "images_per_s": images / max(seconds, 1e-9)}
    if confusion is not None:
        result["confusion"] = all_reduce_sum(confusion).cpu()
    return result


def plot_confusion(confusion: torch.Tensor, class_names: list[str], out_png: str | Path,
                   title: str = "confusion matrix") -> Path:
    """Save a row-normalized confusion matrix (true class by row) as a PNG; counts written in the cells."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write

    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    out_png = Path(out_png)
    atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return out_png
