"""One inference interface, two backends.

A backend is called like an eval-mode model, `backend(*inputs) -> logits`, with the inputs jpegnet.data builds
(`(y, cbcr)` for DCT, `(x,)` for RGB) and float32 logits back as a torch tensor. It carries what a caller needs
to prepare those inputs and name the outputs: `input_config`, `class_names`, `model_name`, and `device` (where
the inputs should be: the model's device for torch, the CPU for ONNX Runtime, which copies to its own
execution provider).

- `torch`: the PyTorch module, CPU or CUDA, under inference_mode, with autocast at the chosen precision
  (default bf16 on CUDA, fp32 on the CPU).
- `onnxruntime`: an InferenceSession over an exported file (`jpegnet export`) or over a model exported in
  memory; CUDA execution provider where the installed onnxruntime has it, else the CPU one, all graph
  optimizations on, pool threads that sleep rather than spin between runs (spinning=False).

Backends quack like an eval-mode nn.Module (`eval()`, `train()`, `training`), so the engine's evaluation loop
takes either.
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("torch", "onnxruntime")


class _ModuleLike:
    training = False
    exif_orientation = True  # whether inputs are turned upright by their EXIF tag (what the run trained with)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(f"the {self.name} backend is for inference only")
        return self


class TorchBackend(_ModuleLike):
    name = "torch"

    def __init__(self, model: torch.nn.Module, *, class_names=None, model_name: str | None = None,
                 device: str | torch.device | None = None, precision: str | None = None):
        from .device import autocast_context, resolve_channels_last, resolve_device, resolve_precision

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        if resolve_channels_last(None, self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.input_config = model.input_config
        self.class_names = list(class_names) if class_names else [str(i) for i in range(_outputs(model))]
        self.model_name = model_name or type(model).__name__
        self._autocast = lambda: autocast_context(self.device, self.precision)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return self.model(*(x.to(self.device, non_blocking=True) for x in inputs)).float()


def _onnx_load_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises for a file it cannot load: its own exception types, which derive from Exception
    only (so nothing narrower than them would catch them, and Exception would hide bugs)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf", "InvalidGraph",
             "NotImplemented", "ModelLoaded")
    return tuple(getattr(state, name) for name in names if isinstance(getattr(state, name, None), type))


class OnnxRuntimeBackend(_ModuleLike):
    name = "onnxruntime"

    def __init__(self, onnx_model: str | os.PathLike | bytes, *, threads: int | None = None,
                 device: str | None = None, spinning: bool = False):
        import onnxruntime as ort

        from .errors import CheckpointError, DeviceError
        from .export import parse_metadata

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        if not spinning:
            # idle pool threads sleep instead of spinning: in a server the cores they would burn are the ones
            # decoding the next requests
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        available = ort.get_available_providers()
        if device not in (None, "cpu", "cuda"):
            raise DeviceError(f"the onnxruntime backend runs on 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise DeviceError("--device cuda was asked for but this onnxruntime has no CUDA execution provider "
                              "(install onnxruntime-gpu)")
        if device == "cpu" or "CUDAExecutionProvider" not in available:
            providers = ["CPUExecutionProvider"]
        else:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except _onnx_load_errors() as exc:  # not an ONNX model (or not one this onnxruntime can run)
            what = "the ONNX bytes" if isinstance(source, bytes) else source
            raise CheckpointError(f"{what}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None
        info = parse_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.input_config = info.input_config
        self.class_names = info.class_names
        self.model_name = info.model_name
        self.providers = self.session.get_providers()
        self.device = torch.device("cpu")
        self._inputs = [i.name for i in self.session.get_inputs()]
        if self._inputs != info.input_names:
            raise ValueError(f"the graph's inputs {self._inputs} differ from its metadata's {info.input_names}")

    @classmethod
    def from_model(cls, model: torch.nn.Module, *, class_names=None, model_name: str | None = None,
                   input_size=None, threads: int | None = None, device: str | None = None) -> "OnnxRuntimeBackend":
        """A session over `model` exported in memory (the same file `jpegnet export` writes)."""
        from .export import export_onnx

        data = export_onnx(model.cpu(), class_names=class_names, model_name=model_name, input_size=input_size)
        return cls(data, threads=threads, device=device)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: x.detach().to("cpu", torch.float32).contiguous().numpy()
                 for name, x in zip(self._inputs, inputs)}
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])


def _outputs(model: torch.nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if not n:
        raise ValueError("the model has no classifier (num_classes 0): nothing to label")
    return int(n)


def load_backend(backend: str = "torch", *, checkpoint: str | os.PathLike | None = None,
                 onnx: str | os.PathLike | None = None, device: str | None = None, precision: str | None = None,
                 threads: int | None = None):
    """A backend over a jpegnet checkpoint or an exported ONNX file (exactly one of them).

    checkpoint + 'torch': the module; checkpoint + 'onnxruntime': the model exported in memory, then a session;
    onnx + 'onnxruntime': a session over the file (an ONNX file cannot run on the torch backend).
    threads: ONNX Runtime's intra-op threads (torch: set torch.set_num_threads yourself).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give exactly one of a checkpoint and an ONNX file")
    if onnx is not None:
        if backend != "onnxruntime":
            raise ValueError("an ONNX file runs on the onnxruntime backend (--backend onnxruntime)")
        if not os.path.isfile(onnx):
            raise FileNotFoundError(f"ONNX file not found: {onnx}")
        return OnnxRuntimeBackend(onnx, threads=threads, device=device)
    from .checkpoint import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, str(checkpoint))
    names, name = state.get("class_names"), state["model_name"]
    if backend == "torch":
        runner = TorchBackend(model, class_names=names, model_name=name, device=device, precision=precision)
    else:
        runner = OnnxRuntimeBackend.from_model(model, class_names=names, model_name=name, threads=threads,
                                               device=device)
    runner.exif_orientation = bool(state.get("train_config", {}).get("exif_orientation", True))
    return runner
