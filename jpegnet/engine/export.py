"""Export to ONNX with the model's own input signature and its preprocessing in the file's metadata.

A DCT model takes inputs `y` (N, 64, H/8, W/8) and `cbcr` (N, 128, H/16, W/16), an RGB model `x`
(N, 3, H, W); the output is `logits` (N, classes). The batch dimension is dynamic (`batch`), the spatial size is
the model's input size (fixed: some families pool to a fixed grid, which ONNX only has for known sizes).

The file describes itself: `metadata_props` hold, each as a JSON value,

    jpegnet.format   "jpegnet-onnx/1"
    model_name       the registry name
    representation   "dct" or "rgb"
    input_size       [H, W] in pixels
    crop_pct         evaluation resize: shorter side to max(H, W) / crop_pct, then centre crop
    interpolation    the resize filter, "bilinear" or "bicubic" (antialiased; files without it: "bilinear")
    mean, std        RGB normalization (3 values each)
    dct_mean, dct_std  the DCT normalization (192 values each: 64 Y, 128 CbCr) or null for the default scale;
                     a checkpoint's export folds the model's input BatchNorms into them (jpegnet.engine.input_fold)
    class_names      one label per output
    input_names      ["y", "cbcr"] or ["x"]
    precision        "fp32", or "int8" for a file `jpegnet export --int8` quantized (jpegnet.engine.quantize,
                     which adds `quantization`: how it was calibrated); a file without the key is fp32

so a server (or any other ONNX Runtime user) needs nothing but the file to turn JPEG bytes into labels.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

FORMAT = "jpegnet-onnx/1"
OPSET = 17


def input_names(representation: str) -> list[str]:
    """The graph's input names for a representation: ['y', 'cbcr'] (DCT) or ['x'] (RGB)."""
    return ["y", "cbcr"] if representation == "dct" else ["x"]


def export_onnx(model: torch.nn.Module, out: str | os.PathLike | None = None, *, class_names=None,
                model_name: str | None = None, input_size=None, opset: int = OPSET) -> bytes:
    """The ONNX file of `model` (eval mode, CPU, float32) as bytes; also written atomically to `out` if given.

    class_names: labels of the outputs (default "0", "1", ...); input_size: (H, W) or an int to export at
    another size than the model's input_config (the metadata follows).
    """
    import onnx

    from ..models import InputConfig
    from .onnx_rewrite import fold_pads_into_convs

    cfg: InputConfig = model.input_config
    if input_size is not None:
        cfg = cfg.with_size(input_size)
    was_training = model.training
    model = model.eval()
    names = input_names(cfg.representation)
    example = model.example_inputs(1, tuple(cfg.input_size))
    example = tuple(x.to(next(model.parameters()).device) for x in example)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
            torch.onnx.export(model, example, buffer, dynamo=False, input_names=names, output_names=["logits"],
                              dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
                              opset_version=opset)
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    fold_pads_into_convs(proto)  # TF "same" stride-2 convs: their Pad would stay float in an int8 graph
    num_classes = int(proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")
    meta = {
        "jpegnet.format": FORMAT,
        "model_name": model_name or type(model).__name__,
        "representation": cfg.representation,
        "input_size": list(cfg.input_size),
        "crop_pct": cfg.crop_pct,
        "interpolation": cfg.interpolation,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "dct_mean": None if cfg.dct_mean is None else [float(v) for v in cfg.dct_mean],
        "dct_std": None if cfg.dct_std is None else [float(v) for v in cfg.dct_std],
        "class_names": [str(c) for c in class_names],
        "input_names": names,
        "precision": "fp32",
    }
    fp32_modules = getattr(model, "int8_fp32_modules", ())
    if fp32_modules:  # the exporter names each node after its module's path: /entry/Conv
        meta["int8_fp32_scopes"] = [f"/{name.replace('.', '/')}/" for name in fp32_modules]
    set_metadata(proto, meta)
    data = proto.SerializeToString()
    if out is not None:
        write_onnx(out, data)
    return data


def set_metadata(proto, meta: dict) -> None:
    """Replace the metadata_props of `proto` (an onnx.ModelProto) with `meta`, each value as JSON, and check the
    model."""
    import onnx

    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)


def write_onnx(out: str | os.PathLike, data: bytes) -> None:
    """Write an ONNX file atomically (a reader never sees half a file; a failed write leaves the old one)."""
    from .checkpoint import atomic_write

    atomic_write(out, lambda f: f.write(data))


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported file says about itself (see the module docstring)."""

    model_name: str
    input_config: object          # jpegnet.models.InputConfig
    class_names: list
    input_names: list
    precision: str = "fp32"       # "fp32" or "int8"
    quantization: dict | None = None  # how an int8 file was calibrated (jpegnet.engine.quantize)


def parse_metadata(props: dict) -> OnnxInfo:
    """OnnxInfo from a file's metadata_props as a {key: JSON string} dict; CheckpointError (a ValueError) if it
    is not ours."""
    from .errors import CheckpointError
    from ..input_config import INTERPOLATIONS
    from ..models import InputConfig

    if props.get("jpegnet.format") != json.dumps(FORMAT):
        raise CheckpointError("not an ONNX file written by `jpegnet export` (no jpegnet.format metadata): the "
                         "server needs the preprocessing the file's metadata describes")
    meta = {k: json.loads(v) for k, v in props.items()}
    # files exported before the filter was recorded were made by models that resized with the triangle
    interpolation = meta.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise CheckpointError(f"the file's metadata names an unknown resize filter interpolation="
                              f"{interpolation!r} (expected one of {', '.join(INTERPOLATIONS)})")
    cfg = InputConfig(representation=meta["representation"], input_size=tuple(meta["input_size"]),
                      mean=tuple(meta["mean"]), std=tuple(meta["std"]), crop_pct=float(meta["crop_pct"]),
                      interpolation=interpolation,
                      dct_mean=None if meta["dct_mean"] is None else tuple(meta["dct_mean"]),
                      dct_std=None if meta["dct_std"] is None else tuple(meta["dct_std"]))
    return OnnxInfo(meta["model_name"], cfg, list(meta["class_names"]), list(meta["input_names"]),
                    precision=str(meta.get("precision", "fp32")), quantization=meta.get("quantization"))


def read_onnx_metadata(path: str | os.PathLike | bytes) -> OnnxInfo:
    """The OnnxInfo of an exported file (path or bytes)."""
    import onnx

    proto = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(os.fspath(path))
    return parse_metadata({p.key: p.value for p in proto.metadata_props})


def model_for_export(checkpoint: str | os.PathLike, model_name: str | None = None):
    """(model, class_names, model_name) from a jpegnet checkpoint, or from a plain state dict (e.g.
    `torch.save(model.state_dict())`) when `model_name` names its registered architecture. The model is in eval
    mode with its input BatchNorms folded into its input normalization (jpegnet.engine.input_fold: the same
    function; what the exported file's dct_mean / dct_std say, and what keeps an int8 file's inputs precise)."""
    from .checkpoint import load_checkpoint, load_model_state, model_from_checkpoint
    from .errors import CheckpointError
    from .input_fold import fold_input_batchnorms
    from ..models import create_model

    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as not_ours:
        if model_name is None or "jpegnet checkpoint" not in str(not_ours):
            raise
        weights = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(weights, dict) or not weights or not all(torch.is_tensor(v) for v in weights.values()):
            raise CheckpointError(f"{checkpoint} is neither a jpegnet checkpoint nor a state dict") from None
        # the classifier is the last entry of every family's state dict: its rows are the classes
        num_classes = int(list(weights.values())[-1].shape[0])
        model = create_model(model_name, num_classes=num_classes)
        load_model_state(model, weights, str(checkpoint))
        fold_input_batchnorms(model.eval())
        return model, None, model_name
    if model_name is not None and model_name != state["model_name"]:
        raise CheckpointError(f"{checkpoint} holds a {state['model_name']}, not a {model_name}")
    model = model_from_checkpoint(state, str(checkpoint))
    fold_input_batchnorms(model.eval())
    return model, state.get("class_names"), state["model_name"]


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, model_name: str | None = None) -> dict:
    """`jpegnet export`: the checkpoint's model as an ONNX file at `out`. Returns a summary dict (int8:
    jpegnet.engine.quantize.export_int8)."""
    model, class_names, name = model_for_export(checkpoint, model_name)
    data = export_onnx(model, out, class_names=class_names, model_name=name)
    return export_summary(out, data, name)


def export_summary(out: str | os.PathLike, data: bytes, name: str) -> dict:
    """What `jpegnet export` reports about the file it wrote."""
    info = read_onnx_metadata(data)
    return {"path": str(Path(out)), "bytes": len(data), "model": name, "inputs": info.input_names,
            "representation": info.input_config.representation, "input_size": info.input_config.input_size,
            "classes": len(info.class_names), "dct_stats": info.input_config.dct_mean is not None,
            "precision": info.precision}
