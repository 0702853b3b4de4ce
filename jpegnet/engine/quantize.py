"""int8 static quantization of an exported model (`jpegnet export --int8 --calibration SRC`).

The fp32 file `export_onnx` writes is quantized by ONNX Runtime's static quantizer, with activation ranges
measured on real inputs, and keeps its preprocessing metadata plus `precision: "int8"` and `quantization` (how it
was calibrated), so `jpegnet serve --onnx` runs it like any exported file, on onnxruntime or openvino.

The choices, and why:
- QDQ format (QuantizeLinear / DequantizeLinear pairs around float ops): the format ONNX Runtime's CPU kernels are
  tuned for (its graph optimizer fuses each pair-wrapped Conv / MatMul / Add... into an integer kernel) and the one
  OpenVINO reads as int8 too, so one file serves both backends.
- Weights int8, symmetric, one scale per output channel: a depthwise convolution has one filter per channel and
  their ranges differ by orders of magnitude, so a single per-tensor scale would round the small filters to zero.
- Activations uint8, asymmetric (ONNX Runtime's "U8S8"): its x86 kernels multiply unsigned activations by signed
  weights (VPDPBUSD with AVX512-VNNI / AVX-VNNI, VPMADDUBSW on AVX2), and ReLU / ReLU6 outputs use the whole
  unsigned range. On an AVX2 CPU without VNNI, VPMADDUBSW's 16-bit pair sums can saturate: `reduce_range=True`
  (7-bit weights) avoids that at a small cost in precision. The default (None) decides from the CPU that
  quantizes (`reduced_range_needed`: x86 without AVX512-VNNI / AVX-VNNI): full range on VNNI CPUs, 7 bits
  elsewhere on x86. Measured on an AVX2-only VM (2026-12-07): a small trained model lost 9 points of top-1 and
  24 % of its fp32 answers with full-range weights; a file made on a VNNI machine and served on an AVX2 one
  wants `reduce_range=True` given explicitly.
- The inputs arrive unit-variance per coefficient: the export folds a DCT model's input BatchNorms into its input
  normalization (jpegnet.engine.input_fold), so the graph input's one scale no longer spans DC's thousands beside
  AC's units. Measured on a converted EfficientNet-Lite0 (AVX2 VM, 7-bit weights): 83.0 % int8 top-1 against
  85.7 % fp32 without the fold, 84.4 % (ONNX Runtime) / 84.9 % (OpenVINO) with it.
- Calibration inputs come from the model's own evaluation preprocessing (`input_batches`: `JpegFolder.for_model`
  + `build_batch_from`, what `jpegnet predict` and the server run; `JpegShards.for_model` for shards), so the
  ranges are those of the inputs the file will see. Images are taken evenly spread over the sorted files (every
  class of a class-folder tree), or the first ones of shards (written shuffled).
- Calibration methods: "minmax" (each tensor's range over the images), "percentile" (99.999th percentile of
  |x|, clipping rare outliers) and "entropy" (the default: the range that keeps the KL divergence of the
  histogram smallest). Entropy kept the most top-1 on every real model measured: the RGB EfficientNet-Lite0
  (88.4 % against minmax 88.1 %) and two learned-entry conversions of it, where minmax lost 1.3-3.5 points to
  fp32 and entropy at most 1.0 (README, "On an AMX CPU"); it calibrates about 3x slower than minmax.
  Ranges are collected one batch at a time (ONNX Runtime keeps every intermediate tensor
  of what it was given in memory otherwise: gigabytes for a few hundred 224x224 images).
- Shape arithmetic stays fp32: nodes that compute only from Shape / Size outputs and constants (e.g. the pads
  of a TensorFlow-"SAME" convolution worked out from the input's size at run time, as timm's `Conv2dSame`
  exports them) are excluded from quantization. Left to the quantizer, their Add / Mul / Div get uint8 Q/DQ pairs,
  the pad sizes come out rounded wrong and every such convolution samples shifted: timm's tf_efficientnet_lite0
  lost 3.1 points of top-1 that way (88.2% fp32, 85.1% int8; 87.7% with those nodes excluded). jpegnet's own
  models export constant pads, so for them the list is empty. The excluded nodes are named in the metadata.
- `quant_pre_process` first: ONNX Runtime's basic graph optimizations (constant folding, BatchNormalization
  folded into the convolution before it where the exporter left one) and ONNX shape inference, so the quantizer
  sees fused ops and known shapes. Its symbolic shape inference is skipped: it gives up on the DCT models' graph
  ("Incomplete symbolic shape inference") and the shapes are static except the batch dimension.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import CalibrationError, ConfigError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATION_METHOD = "entropy"
DEFAULT_CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 8  # images per calibration run: bounds the intermediate tensors held at once
#: /proc/cpuinfo flags of the x86 integer dot-product instructions that do not saturate in U8S8 kernels.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def reduced_range_needed(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether int8 weights should use 7 bits on this CPU: an x86 CPU without VNNI (its U8S8 kernels sum pairs
    in 16 bits, which full-range weights can overflow). `cpuinfo` (the text of /proc/cpuinfo) and `machine`
    (platform.machine()) default to this machine's; an x86 CPU whose flags cannot be read counts as one
    without VNNI (7 bits cost little; saturation costs a lot). Other architectures: False."""
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return not any(f in flags for f in VNNI_FLAGS)


def calibration_files(source: str | os.PathLike) -> list[str]:
    """The JPEG files under a calibration folder (class folders or a flat folder, any depth; hidden entries
    skipped), sorted; CalibrationError when the folder is missing or holds none."""
    from ..data.scan import JPEG_EXTENSIONS, list_class_files

    folder = Path(source)
    if not folder.exists():
        raise CalibrationError(f"calibration folder not found: {folder}")
    if not folder.is_dir():
        raise CalibrationError(f"calibration source {folder} is neither a folder of JPEG files nor tar shards")
    files = list_class_files(folder)
    if not files:
        raise CalibrationError(f"calibration folder {folder} holds no JPEG files ({', '.join(JPEG_EXTENSIONS)})")
    return files


def evenly_spread(items: list, count: int) -> list:
    """`count` of `items` spread evenly from first to last (all of them when there are no more than count)."""
    if len(items) <= count:
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))
    return [items[i] for i in picks]


def calibration_batches(source, input_config, count: int = DEFAULT_CALIBRATION_IMAGES, *,
                        batch_size: int = CALIBRATION_BATCH, num_threads: int | None = None):
    """(batches, report): up to `count` images of `source` (a folder, or tar shards: a .tar path or pattern, a
    pipe: command) as the model with `input_config` sees them, in batches of input tuples ((y, cbcr) or (x,),
    float32 CPU tensors); report = {'images': used, 'unreadable': skipped, 'source': str}. Unreadable files are
    skipped; CalibrationError when none can be read."""
    from ..data import is_shard_spec

    if count < 1:
        raise ConfigError(f"the number of calibration images must be >= 1, got {count}")
    if is_shard_spec(source):
        batches, bad, first_error = _shard_batches(source, input_config, count, batch_size, num_threads)
        tried = "the shards' images"
    else:
        from .inference import input_batches

        files = evenly_spread(calibration_files(source), count)
        batches, bad, first_error = [], 0, None
        for names, inputs, errors in input_batches(files, input_config, "cpu", num_threads=num_threads,
                                                   batch_size=batch_size):
            failed = [(n, e) for n, e in zip(names, errors) if e is not None]
            bad += len(failed)
            if failed and first_error is None:
                first_error = f"{failed[0][0]}: {failed[0][1]}"
            if inputs is not None:
                batches.append(tuple(x.contiguous() for x in inputs))
        tried = f"the {len(files)} JPEG files picked"
    images = sum(int(b[0].shape[0]) for b in batches)
    if images == 0:
        raise CalibrationError(f"none of {tried} from {source} could be read" +
                               (f" (first: {first_error})" if first_error else ""))
    return batches, {"source": str(source), "images": images, "unreadable": bad}


def _shard_batches(spec, input_config, count, batch_size, num_threads):
    """The first `count` readable images of tar shards (the evaluation loader `jpegnet eval` uses)."""
    from ..data import JpegShards, create_loader
    from .shards import shard_classes

    shard_classes(spec)  # a missing local shard is named before any work
    dataset = JpegShards.for_model(spec, input_config, train=False, on_error="skip")
    loader = create_loader(dataset, batch_size, device="cpu", num_threads=num_threads)
    batches, seen = [], 0
    for inputs, _ in loader:
        take = min(int(inputs[0].shape[0]), count - seen)
        batches.append(tuple(x[:take].contiguous() for x in inputs))
        seen += take
        if seen >= count:
            break
    skipped = len(getattr(loader, "skipped", []))
    return batches, skipped, None


class _BatchReader:
    """ONNX Runtime's CalibrationDataReader over prepared batches: one feed dict per get_next(); set_range /
    __len__ let quantize_static collect ranges one batch at a time ('CalibStridedMinMax': 1)."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self.set_range(0, len(feeds))

    def get_next(self):
        if self._next >= self._end:
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self.feeds))


@contextlib.contextmanager
def _quiet_onnxruntime():
    """ONNX Runtime's quantizer prints progress on stdout and logs advice through the root logger (e.g. per-channel
    axes it cannot use on a BatchNormalization left unfused, which it quantizes per tensor instead): neither
    belongs in a command's output."""
    class DropOnnxRuntime(logging.Filter):
        def filter(self, record):
            return "onnxruntime" not in record.pathname

    root = logging.getLogger()
    quiet = DropOnnxRuntime()
    root.addFilter(quiet)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(quiet)


SHAPE_SOURCES = ("Shape", "Size")


def shape_arithmetic_nodes(graph) -> list[str]:
    """Names of the nodes of an ONNX `graph` (topologically sorted, as ONNX requires) that compute only from
    Shape / Size outputs and constants: sizes, pads, slice bounds worked out at run time. Quantizing them would
    round integers (pad sizes, reshape targets) through uint8 Q/DQ pairs, so they are kept out of quantization."""
    constant = {t.name for t in graph.initializer}
    derived: set[str] = set()
    names = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant":
            constant.update(node.output)
            continue
        if node.op_type in SHAPE_SOURCES or (
                inputs and any(i in derived for i in inputs) and all(i in derived or i in constant for i in inputs)):
            derived.update(node.output)
            names.append(node.name)
    return names


def _name_nodes(graph) -> bool:
    """Give every unnamed node of `graph` a unique name (nodes_to_exclude matches names); True when any was."""
    taken = {n.name for n in graph.node if n.name}
    changed = False
    for index, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            changed = True
    return changed


def quantize_onnx(fp32: bytes, batches, *, method: str = DEFAULT_CALIBRATION_METHOD,
                  reduce_range: bool | None = None, calibration: dict | None = None) -> bytes:
    """The int8 (QDQ) version of the exported file `fp32` (bytes), calibrated on `batches` (input tuples in the
    order of the file's inputs, as `calibration_batches` makes them). The metadata is the fp32 file's with
    precision "int8" and `quantization` (method, format, types, `fp32_nodes`: the nodes left unquantized, i.e.
    the shape arithmetic (see `shape_arithmetic_nodes`) and every node under the `int8_fp32_scopes` the export
    recorded for modules the model keeps in float (`model.int8_fp32_modules`, e.g. a converted model's exact
    entry), `fp32_scopes`, and `calibration`: where the images came from). reduce_range None: decided from this
    CPU (`reduced_range_needed`); the metadata records what was used."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .export import read_onnx_metadata, set_metadata

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if reduce_range is None:
        reduce_range = reduced_range_needed()
    source = onnx.load_from_string(fp32)
    info = read_onnx_metadata(fp32)
    if info.precision != "fp32":
        raise ConfigError(f"the file is already {info.precision}: quantize the fp32 export")
    meta = {p.key: json.loads(p.value) for p in source.metadata_props}
    feeds = [{name: x.detach().to("cpu").float().contiguous().numpy() for name, x in zip(info.input_names, batch)}
             for batch in batches]
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory(prefix="jpegnet-int8-") as tmp, _quiet_onnxruntime():
        fp32_path, prepared, int8_path = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(fp32_path).write_bytes(fp32)
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared)
        if _name_nodes(graph.graph):
            onnx.save(graph, prepared)
        keep_fp32 = shape_arithmetic_nodes(graph.graph)
        scopes = tuple(meta.get("int8_fp32_scopes") or ())  # modules the model asks to keep in float
        keep_fp32 += [n.name for n in graph.graph.node if scopes and n.name.startswith(scopes)
                      and n.name not in keep_fp32]
        quantize_static(prepared, int8_path, _BatchReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calibrate, nodes_to_exclude=keep_fp32,
                        extra_options={"CalibStridedMinMax": 1})
        quantized = onnx.load(int8_path)
    meta.update(precision="int8", quantization={
        "format": "QDQ", "weights": "int8 symmetric per channel", "activations": "uint8 asymmetric",
        "reduce_range": bool(reduce_range), "method": method, "fp32_nodes": keep_fp32,
        "fp32_scopes": list(meta.get("int8_fp32_scopes") or ()),
        "calibration": dict(calibration or {})})
    set_metadata(quantized, meta)
    return quantized.SerializeToString()


def keep_in_float(model, name: str, modules) -> None:
    """Add `modules` (dotted submodule names) to those `model` keeps in float in an int8 export; a name the model
    does not have is refused, with its top-level modules listed."""
    modules = tuple(modules or ())
    if not modules:
        return
    own = dict(model.named_modules())
    for module in modules:
        if not module or module not in own:
            children = ", ".join(n for n, _ in model.named_children())
            raise ConfigError(f"--keep-float {module!r}: {name} has no such module (its top-level modules: "
                              f"{children}; nested ones as dotted paths, e.g. entry.fuse)")
    kept = tuple(getattr(model, "int8_fp32_modules", ()))
    model.int8_fp32_modules = kept + tuple(m for m in modules if m not in kept)


def export_int8(checkpoint: str | os.PathLike, out: str | os.PathLike, model_name: str | None = None, *,
                calibration, calibration_images: int | None = None,
                calibration_method: str = DEFAULT_CALIBRATION_METHOD,
                reduce_range: bool | None = None, keep_float: tuple[str, ...] | list[str] = ()) -> dict:
    """`jpegnet export --int8`: the checkpoint's model exported (as `export_checkpoint` does) and quantized, with
    ranges calibrated on up to `calibration_images` (default 256) images of `calibration` (a folder of JPEG files
    or tar shards) by `calibration_method`. keep_float: submodules (dotted names, e.g. "entry") left in float
    beside those the model itself keeps (`int8_fp32_modules`): accuracy for speed, e.g. a converted model's learned
    entry (since the input fold: 0.2-0.7 point of top-1 gained, most of its speed-up lost). The calibration source is checked before the model is loaded, and
    nothing is written unless it all succeeds. Returns export_checkpoint's summary plus 'calibration'."""
    from ..data import is_shard_spec
    from .export import export_onnx, export_summary, model_for_export, write_onnx

    if calibration is None:
        raise ConfigError("--int8 needs --calibration SRC: a folder of JPEG files or tar shards, whose images "
                          "set the activation ranges")
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got "
                          f"{calibration_method!r}")
    if not is_shard_spec(calibration):
        calibration_files(calibration)  # a missing or empty folder fails before the model is built
    model, class_names, name = model_for_export(checkpoint, model_name)
    keep_in_float(model, name, keep_float)
    fp32 = export_onnx(model, class_names=class_names, model_name=name)
    batches, report = calibration_batches(calibration, model.input_config,
                                          calibration_images or DEFAULT_CALIBRATION_IMAGES)
    if reduce_range is None:
        reduce_range = reduced_range_needed()
    data = quantize_onnx(fp32, batches, method=calibration_method, reduce_range=reduce_range, calibration=report)
    write_onnx(out, data)
    return {**export_summary(out, data, name), "calibration": {**report, "method": calibration_method},
            "reduce_range": reduce_range}


__all__ = ["CALIBRATION_METHODS", "DEFAULT_CALIBRATION_IMAGES", "DEFAULT_CALIBRATION_METHOD", "calibration_batches",
           "calibration_files", "export_int8", "keep_in_float", "quantize_onnx", "reduced_range_needed",
           "shape_arithmetic_nodes"]
