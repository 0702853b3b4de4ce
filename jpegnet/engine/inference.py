"""Using a trained checkpoint: `jpegnet eval` on a folder and `jpegnet predict` on files."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint, model_from_checkpoint
from .errors import CheckpointError, DataFolderError
from .evaluate import evaluate, plot_confusion
from .folders import check_image_folder
from .shards import eval_shards, shard_classes


def _device(device: str | None) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible")
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def evaluate_checkpoint(data: str | Path, checkpoint: str | Path, batch_size: int = 64, device: str | None = None,
                        precision: str | None = None, num_threads: int | None = None,
                        confusion_png: str | Path | None = None, backend: str = "torch") -> dict:
    """Top-1 / top-5 / loss / images/s of a checkpoint on DATA/val, DATA's class folders, or tar shards, run on
    the `torch` or the `onnxruntime` backend (jpegnet.serve.backends)."""
    from ..data import JpegFolder, create_loader, is_shard_spec

    shards = is_shard_spec(data)
    if shards:
        folder, classes = str(data), shard_classes(data)
    else:
        data = Path(data)
        folder = data / "val" if (data / "val").is_dir() else data
        classes = check_image_folder(folder, "evaluation")
    state = load_checkpoint(checkpoint)
    names = state.get("class_names")
    if names is not None and list(names) != classes:
        raise CheckpointError(f"{checkpoint} was trained on classes {names[:4]}... but {folder} has "
                              f"{classes[:4]}... ({len(names)} vs {len(classes)} classes)")
    if len(classes) != state["num_classes"]:
        raise CheckpointError(f"{checkpoint} predicts {state['num_classes']} classes but {folder} has "
                              f"{len(classes)}")
    dev = _device(device)
    precision = precision or ("bf16" if dev.type == "cuda" else "fp32")
    model = model_from_checkpoint(state, str(checkpoint)).to(dev)
    cfg = model.input_config
    if backend != "torch":
        model, dev = _onnxruntime_backend(backend, model, state, device)
    dataset = eval_shards(data, cfg) if shards else JpegFolder(
        folder, representation=cfg.representation, train=False, input_size=cfg.input_size, crop_pct=cfg.crop_pct,
        on_error="skip")
    loader = create_loader(dataset, batch_size, device=dev, num_threads=num_threads, input_config=cfg)
    result = evaluate(model, loader, dev, precision=precision, num_classes=len(classes))
    result.update(model=state["model_name"], folder=str(folder), skipped=list(getattr(loader, "skipped", [])))
    if confusion_png is not None:
        result["confusion_png"] = str(plot_confusion(result["confusion"], classes, confusion_png,
                                                     title=f"{state['model_name']}: top-1 {result['top1']:.1f}%"))
    return result


def _onnxruntime_backend(backend: str, model, state: dict, device: str | None):
    """(the model exported and run by ONNX Runtime, the device its inputs go to)."""
    from ..serve.backends import BACKENDS, OnnxRuntimeBackend

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    runner = OnnxRuntimeBackend.from_model(model, class_names=state.get("class_names"),
                                           model_name=state["model_name"], device=device)
    return runner, runner.device


def file_inputs(files, input_config, device: torch.device | str = "cpu", num_threads: int | None = None,
                batch_size: int = 32):
    """Yield (path, inputs or None, error or None) for JPEG files, in order, through the evaluation transform
    of `jpegnet.data` (the very transform `jpegnet eval` applies: `JpegFolder.from_files`), decoded in
    batches; a bad file costs only its own result."""
    from ..data import JpegFolder
    from ..data.loader import build_batch

    files = [str(f) for f in files]
    present = [i for i, f in enumerate(files) if Path(f).is_file()]
    dataset = JpegFolder.from_files([files[i] for i in present], representation=input_config.representation,
                                    train=False, input_size=input_config.input_size,
                                    crop_pct=input_config.crop_pct, on_error="skip")
    done: dict[int, tuple] = {i: (None, "no such file") for i in range(len(files)) if i not in set(present)}
    next_out = 0
    for start in range(0, len(present), batch_size):
        rows = list(range(start, min(start + batch_size, len(present))))  # dataset indices
        batch, bad = build_batch(dataset, rows, seed=0, epoch=0, device=device, input_config=input_config,
                                 num_threads=num_threads)
        reasons = {path: reason for path, reason, _ in bad}
        good = 0
        for row in rows:
            path = files[present[row]]
            if path in reasons:
                done[present[row]] = (None, reasons[path].splitlines()[0] if reasons[path] else "unreadable")
            else:
                done[present[row]] = (tuple(x[good:good + 1] for x in batch[0]), None)
                good += 1
        while next_out in done:  # hand out, in input order, everything known so far
            yield (files[next_out], *done.pop(next_out))
            next_out += 1
    while next_out in done:
        yield (files[next_out], *done.pop(next_out))
        next_out += 1


@torch.no_grad()
def predict_files(files, checkpoint: str | Path, topk: int = 5, device: str | None = None,
                  backend: str = "torch") -> list[dict]:
    """[{'file', 'top': [(class name, probability), ...]} or {'file', 'error'}] for each file, run on the
    `torch` or the `onnxruntime` backend (jpegnet.serve.backends)."""
    from ..serve.backends import load_backend

    if device is not None:
        _device(device)  # a clear error when CUDA is asked for and absent
    runner = load_backend(backend, checkpoint=checkpoint, device=device)
    names = runner.class_names
    k = min(topk, len(names))
    results = []
    for path, inputs, error in file_inputs(files, runner.input_config, runner.device):
        if error is not None:
            results.append({"file": path, "error": error})
            continue
        logits = runner(*inputs)
        probs = logits.float().softmax(1)[0]
        top = probs.topk(k)
        results.append({"file": path, "top": [(names[i], float(p)) for p, i in zip(top.values, top.indices)]})
    return results
