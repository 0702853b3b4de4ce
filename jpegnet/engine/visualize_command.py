"""`jpegnet visualize` on the engine side: the model from a registry name (random weights) or a checkpoint,
the input image (a built-in sample by default), then the drawing in `jpegnet.visualize`."""
from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

WHAT = ("kernels", "features")


def visualize(what: str, model_name: str | None = None, checkpoint: str | None = None, layers=None,
              image: str | None = None, out: str | Path = "visualize.png") -> list[str]:
    """Draw `what` ('kernels' or 'features') of a model into `out`; returns the files written."""
    from .. import visualize as vis
    from ..models import create_model
    from .checkpoint import load_checkpoint, model_from_checkpoint

    if what not in WHAT:
        raise ConfigError(f"what must be 'kernels' or 'features', got {what!r}")
    if (model_name is None) == (checkpoint is None):
        raise ConfigError("give exactly one of a model name or a checkpoint")
    model = (model_from_checkpoint(load_checkpoint(checkpoint), str(checkpoint)) if checkpoint
             else create_model(model_name)).eval()
    if what == "kernels":
        vis.plot_kernels(model, layers or vis.default_kernel_layers(model), out)
        return [str(out)]
    from ..samples import sample_files
    from .inference import input_batches

    path = image or str(sample_files()[0])
    (_, inputs, (error,)), = list(input_batches([path], model.input_config))
    if error is not None:
        raise ConfigError(f"{path}: {error}")
    result = vis.plot_features(model, inputs, out, layers=layers)
    return [str(f) for f in result.get("files", [out])]
