"""One inference interface, three backends.

A backend is called like an eval-mode model, `backend(*inputs) -> logits`, with the inputs jpegnet.data builds
(`(y, cbcr)` for DCT, `(x,)` for RGB) and float32 logits back as a torch tensor. It carries what a caller needs
to prepare those inputs and name the outputs: `input_config`, `class_names`, `model_name`, `precision` ('fp32',
'bf16', 'fp16' for torch's autocast; 'fp32' or 'int8' for an exported file, from its metadata) and `device` (where
the inputs should be: the model's device for torch, the CPU for ONNX Runtime, which copies to its own execution
provider, and for OpenVINO).

- `torch`: the PyTorch module, CPU or CUDA, under inference_mode, with autocast at the chosen precision
  (default bf16 on CUDA, fp32 on the CPU).
- `onnxruntime`: an InferenceSession over an exported file (`jpegnet export`) or over a model exported in
  memory; CUDA execution provider where the installed onnxruntime has it, else the CPU one, all graph
  optimizations on, pool threads that sleep rather than spin between runs (spinning=False).
- `openvino`: OpenVINO's CPU plugin over the same ONNX (a file, fp32 or int8, or the model exported in memory).
  Tuned for what the callers do: one synchronous forward pass at a time over a batch they gathered (the
  server's batcher, eval's and predict's loops), so PERFORMANCE_HINT=LATENCY: one stream whose threads all work
  on that one request. THROUGHPUT would split the cores into streams that only pay off with several requests in
  flight at once, which this interface never has; the batch is the parallelism. Inference precision f32: on CPUs
  with bf16 support (AVX512-BF16, AMX) OpenVINO otherwise runs fp32 models in bf16, which changes the answers
  (an int8 file's quantized layers run in int8 either way). Threads not pinned to cores: in a server the decode
  threads share the cores, and a pinned thread that loses its core holds the whole pass back.

Backends quack like an eval-mode nn.Module (`eval()`, `train()`, `training`), so the engine's evaluation loop
takes either.
"""
from __future__ import annotations

import os
import threading

import torch

BACKENDS = ("torch", "onnxruntime", "openvino")
#: backends that run an exported ONNX file (a checkpoint is exported in memory first)
ONNX_BACKENDS = ("onnxruntime", "openvino")


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
        self.precision = info.precision
        self.providers = self.session.get_providers()
        self.device = torch.device("cpu")
        self._inputs = [i.name for i in self.session.get_inputs()]
        if self._inputs != info.input_names:
            raise ValueError(f"the graph's inputs {self._inputs} differ from its metadata's {info.input_names}")

    @classmethod
    def from_model(cls, model: torch.nn.Module, *, class_names=None, model_name: str | None = None,
                   input_size=None, threads: int | None = None, device: str | None = None) -> "OnnxRuntimeBackend":
        """A session over `model` exported in memory (the same file `jpegnet export` writes)."""
        return cls(_export(model, class_names, model_name, input_size), threads=threads, device=device)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: x.detach().to("cpu", torch.float32).contiguous().numpy()
                 for name, x in zip(self._inputs, inputs)}
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])


class OpenVinoBackend(_ModuleLike):
    name = "openvino"

    def __init__(self, onnx_model: str | os.PathLike | bytes, *, threads: int | None = None,
                 device: str | None = None, performance_hint: str = "LATENCY"):
        from .errors import CheckpointError, DeviceError
        from .export import read_onnx_metadata

        if device not in (None, "cpu"):
            raise DeviceError(f"the openvino backend runs on the CPU ('cpu'), got {device!r}")
        ov = _import_openvino()
        source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
        core = _openvino_core(ov)
        try:
            graph = core.read_model(source)
        except RuntimeError as exc:  # OpenVINO's one exception type for a model it cannot read
            what = "the ONNX bytes" if isinstance(source, bytes) else source
            raise CheckpointError(f"{what}: openvino cannot read it: {_first_message(exc)}") from None
        info = read_onnx_metadata(source)
        config = {"PERFORMANCE_HINT": performance_hint, "INFERENCE_PRECISION_HINT": "f32",
                  "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(graph, "CPU", config)
        self.input_config = info.input_config
        self.class_names = info.class_names
        self.model_name = info.model_name
        self.precision = info.precision
        self.device = torch.device("cpu")
        # A port carries every name its tensor has: OpenVINO may fold a first Cast into the input, and then
        # get_any_name() gives the Cast's output name, so the check is membership, and feeds go by position.
        port_names = [port.get_names() for port in self.compiled.inputs]
        if len(port_names) != len(info.input_names) or any(
                name not in names for name, names in zip(info.input_names, port_names)):
            raise ValueError(f"the graph's inputs {[sorted(n) for n in port_names]} differ from its metadata's "
                             f"{info.input_names}")
        self._logits = self.compiled.output("logits")
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one caller at a time

    @classmethod
    def from_model(cls, model: torch.nn.Module, *, class_names=None, model_name: str | None = None,
                   input_size=None, threads: int | None = None, device: str | None = None) -> "OpenVinoBackend":
        """OpenVINO over `model` exported in memory (the same file `jpegnet export` writes)."""
        return cls(_export(model, class_names, model_name, input_size), threads=threads, device=device)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {index: x.detach().to("cpu", torch.float32).contiguous().numpy() for index, x in enumerate(inputs)}
        with self._lock:
            # share_inputs: no copy of the arrays in; the outputs are copies (the request reuses its buffers)
            logits = self._request.infer(feeds, share_inputs=True, share_outputs=False)[self._logits]
        return torch.from_numpy(logits)


def _import_openvino():
    try:
        import openvino
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "openvino":
            raise
        from .errors import MissingDependencyError
        raise MissingDependencyError("the openvino backend needs the openvino package: pip install "
                                     "'jpegnet[openvino]' (or pip install openvino)") from None
    return openvino


_OPENVINO_CORE = None
_OPENVINO_CORE_LOCK = threading.Lock()


def _openvino_core(ov):
    """The process's one OpenVINO Core, made on first use and kept until exit.

    Each Core loads its own CPU plugin, and each plugin swaps in an alternate signal stack of its own on the thread
    that makes it, restoring the stack it found when it is destroyed. Two Cores destroyed in the order they were
    made leave the thread on the first plugin's freed stack, and the next Python signal handler (CPython installs
    them all with SA_ONSTACK: a SIGCHLD from any child process will do) kills the process with SIGSEGV. One Core
    that outlives every backend makes that order impossible; compile_model is thread-safe on a shared Core."""
    global _OPENVINO_CORE
    with _OPENVINO_CORE_LOCK:
        if _OPENVINO_CORE is None:
            _OPENVINO_CORE = ov.Core()
        return _OPENVINO_CORE


def _first_message(exc: Exception) -> str:
    """The informative line of an OpenVINO exception (they start with 'Exception from src/...' lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from ")]
    return (useful or lines or [type(exc).__name__])[0]


def _export(model: torch.nn.Module, class_names, model_name, input_size) -> bytes:
    from .export import export_onnx

    return export_onnx(model.cpu(), class_names=class_names, model_name=model_name, input_size=input_size)


def backend_from_model(backend: str, model: torch.nn.Module, *, class_names=None, model_name: str | None = None,
                       input_size=None, threads: int | None = None, device: str | None = None):
    """An ONNX backend ('onnxruntime' or 'openvino') over `model` exported in memory; ConfigError for another
    name."""
    from .errors import ConfigError

    kinds = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
    if backend not in kinds:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "openvino":
        _import_openvino()  # before the export: a missing package is the one thing to say
    return kinds[backend].from_model(model, class_names=class_names, model_name=model_name, input_size=input_size,
                                     threads=threads, device=device)


def _outputs(model: torch.nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if not n:
        raise ValueError("the model has no classifier (num_classes 0): nothing to label")
    return int(n)


def default_onnx_backend() -> str:
    """The backend an ONNX file is served on when none is named: openvino where its package is installed, else
    onnxruntime. Chosen by measurement (README, "Under load": on the 2-core x86-64 VM, serving EfficientNet-Lite0,
    its DCT twin and its converted model, fp32 and int8, OpenVINO was faster in 36 of 48 runs, 1.09x the images/s
    of ONNX Runtime in geometric mean); onnxruntime stays the fallback because the `serve` extra installs it."""
    import importlib.util

    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def load_backend(backend: str = "torch", *, checkpoint: str | os.PathLike | None = None,
                 onnx: str | os.PathLike | None = None, device: str | None = None, precision: str | None = None,
                 threads: int | None = None):
    """A backend over a jpegnet checkpoint or an exported ONNX file (exactly one of them).

    checkpoint + 'torch': the module; checkpoint + 'onnxruntime' / 'openvino': the model exported in memory, then
    a session; onnx + 'onnxruntime' / 'openvino': the file (fp32 or int8; an ONNX file cannot run on the torch
    backend). threads: ONNX Runtime's intra-op threads or OpenVINO's inference threads (torch: set
    torch.set_num_threads yourself).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give exactly one of a checkpoint and an ONNX file")
    if onnx is not None:
        if backend not in ONNX_BACKENDS:
            raise ValueError("an ONNX file runs on the onnxruntime backend or the openvino one (--backend "
                             "onnxruntime)")
        if not os.path.isfile(onnx):
            raise FileNotFoundError(f"ONNX file not found: {onnx}")
        if backend == "openvino":
            return OpenVinoBackend(onnx, threads=threads, device=device)
        return OnnxRuntimeBackend(onnx, threads=threads, device=device)
    from .checkpoint import load_checkpoint, model_from_checkpoint

    if backend == "openvino":
        _import_openvino()
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, str(checkpoint))
    names, name = state.get("class_names"), state["model_name"]
    if backend == "torch":
        runner = TorchBackend(model, class_names=names, model_name=name, device=device, precision=precision)
    else:
        runner = backend_from_model(backend, model, class_names=names, model_name=name, threads=threads,
                                    device=device)
    runner.exif_orientation = bool(state.get("train_config", {}).get("exif_orientation", True))
    return runner
