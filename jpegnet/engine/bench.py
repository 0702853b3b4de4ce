"""End-to-end inference benchmark (`jpegnet bench`, `make demo`): JPEG bytes to logits, decode plus model.

For each model the same files go through the pipeline its `input_config` asks for (RGB: full decode, resize,
crop, normalize; DCT: coefficients only, no pixels), with the evaluation transform of `jpegnet.data`.
Three timings per model, each a full pass over the files:

- decode: the loader alone, from file bytes to normalized input tensors on the device;
- model: the model alone on those tensors (already decoded, already on the device);
- end to end: loader and model together, which is what a user of the model pays.

Weights are random (speed does not depend on them); one warm-up batch runs before timing; with repeat > 1
each timing is the best of that many passes. Milliseconds per image are wall time divided by images, at the
chosen batch size.
"""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch

from .checkpoint import atomic_write
from .device import autocast_context, resolve_channels_last, resolve_device, resolve_precision
from .errors import ConfigError, DataFolderError
from .folders import scan_checked_folder
from .trainer import loader_prefetch

DEFAULT_MODELS = ("resnet50", "dct_late_concat_rfa", "dct_late_concat_rfa_thinner", "dct_upsampling_rfa")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _exported(backend: str, model, name: str, size: int, threads: int, device: torch.device):
    from .backends import backend_from_model

    runner = backend_from_model(backend, model, model_name=name, input_size=size, threads=threads,
                                device=device.type)
    return runner, runner.device


def _timed_pass(loader, fn, device) -> tuple[float, int, list]:
    """Seconds for one pass of `fn(inputs)` over `loader`, images seen, and fn's returns."""
    outs, images = [], 0
    _sync(device)
    start = time.perf_counter()
    for inputs, targets in loader:
        outs.append(fn(inputs))
        images += targets.shape[0]
    _sync(device)
    return time.perf_counter() - start, images, outs


def run_bench(data: str | Path | None = None, models=None, batch_size: int = 8, size: int = 224,
              max_images: int | None = None, device: str | None = None, precision: str | None = None,
              num_threads: int | None = None, csv_path: str | Path | None = None, log=None,
              repeat: int = 1, backend: str = "torch", rgb_decode: str = "fast") -> dict:
    """Time decode, model and end to end for each model; returns {'rows': [...], ...} (see module doc).
    backend: 'torch' (eager), 'onnxruntime' (the model exported in memory, run on ONNX Runtime's CPU or CUDA
    execution provider; its inputs are built on the CPU) or 'openvino' (the same export on OpenVINO's CPU
    plugin). rgb_decode: RGB models' decode, 'fast' (what `jpegnet serve` runs) or 'plain' (torchvision's;
    jpegnet.data.rgb)."""
    from ..data import JpegFolder, create_loader
    from ..models import create_model
    from ..samples import SAMPLES_DIR

    folder = scan_checked_folder(Path(data) if data is not None else SAMPLES_DIR, "benchmark")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    if size % 16:
        raise ConfigError(f"size must be a multiple of 16 (DCT models), got {size}")
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    models = list(models or DEFAULT_MODELS)
    if num_threads is None:
        num_threads = torch.get_num_threads()
    log = log or (lambda message: None)

    rows = []
    for name in models:
        model = create_model(name).eval().to(device)
        if resolve_channels_last(None, device):
            model.to(memory_format=torch.channels_last)
        cfg = model.input_config.with_size(size)
        dev = device  # where the inputs go: the model's device, or the CPU for ONNX Runtime
        if backend != "torch":
            model, dev = _exported(backend, model, name, size, num_threads, device)
        dataset = JpegFolder.for_model(folder, cfg, train=False, on_error="skip", rgb_decode=rgb_decode)
        if max_images is not None and max_images < len(dataset):
            dataset.samples = dataset.samples[:max_images]
        loader = create_loader(dataset, batch_size, device=dev, num_threads=num_threads,
                               prefetch=loader_prefetch(dev))

        def forward(inputs):
            with torch.inference_mode(), autocast_context(dev, precision):
                return model(*inputs)

        # Warm-up: first calls allocate, pick kernels, fault pages in; not what steady state costs.
        first = next(iter(loader), None)
        if first is None:  # the loader leaves out batches whose files were all unreadable
            raise DataFolderError(f"no readable JPEG image in {folder} to benchmark with")
        first_inputs, _ = first
        forward(first_inputs)
        decode_s, model_s, e2e_s = math.inf, math.inf, math.inf
        for _ in range(repeat):  # best of `repeat`: other work on the machine only ever adds time
            seconds, images, batches = _timed_pass(loader, lambda inputs: inputs, dev)
            decode_s = min(decode_s, seconds)
            model_start = time.perf_counter()
            for inputs in batches:
                forward(inputs)
            _sync(dev)
            model_s = min(model_s, time.perf_counter() - model_start)
            del batches
            e2e_s = min(e2e_s, _timed_pass(loader, forward, dev)[0])
        row = {"model": name, "input": f"{cfg.representation} {size}x{size}", "images": images,
               "decode_ms": 1000 * decode_s / images, "model_ms": 1000 * model_s / images,
               "end_to_end_ms": 1000 * e2e_s / images, "images_per_s": images / e2e_s}
        rows.append(row)
        log(f"{name}: decode {row['decode_ms']:.2f} ms/img, model {row['model_ms']:.2f} ms/img, "
            f"end to end {row['images_per_s']:.1f} img/s")
        del model, loader
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speedup"] = row["images_per_s"] / base
    if csv_path is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        data_bytes = buf.getvalue().encode()
        atomic_write(csv_path, lambda f: f.write(data_bytes))
    return {"rows": rows, "folder": str(folder), "images": rows[0]["images"], "size": size, "backend": backend,
            "batch_size": batch_size, "device": str(device), "precision": precision, "threads": num_threads}
