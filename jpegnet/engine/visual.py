"""`jpegnet visualize`: kernels or feature maps of a model (random or trained) through `jpegnet.visualize`."""
from __future__ import annotations

from pathlib import Path

from torch import nn


def default_kernel_layers(model: nn.Module, count: int = 2) -> list[str]:
    """The first `count` convolutions with spatial kernels (1×1 kernels draw as single pixels)."""
    names = [name for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]
    if not names:
        names = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no convolution layer to draw")
    return names[:count]


def visualize(what: str, model_name: str | None = None, checkpoint: str | None = None, layers=None,
              image: str | None = None, out: str | Path = "visualize.png") -> list[str]:
    from .. import visualize as vis
    from ..models import create_model
    from .checkpoint import load_checkpoint, model_from_checkpoint

    if (model_name is None) == (checkpoint is None):
        raise ValueError("give exactly one of a model name or a checkpoint")
    model = (model_from_checkpoint(load_checkpoint(checkpoint), str(checkpoint)) if checkpoint
             else create_model(model_name)).eval()
    if what == "kernels":
        vis.plot_kernels(model, layers or default_kernel_layers(model), out)
        return [str(out)]
    if what == "features":
        from ..samples import sample_files
        from .inference import input_batches

        path = image or str(sample_files()[0])
        (_, inputs, (error,)), = list(input_batches([path], model.input_config))
        if error is not None:
            raise ValueError(f"{path}: {error}")
        result = vis.plot_features(model, inputs, out, layers=layers)
        return [str(f) for f in result.get("files", [out])]
    raise ValueError(f"what must be 'kernels' or 'features', got {what!r}")
