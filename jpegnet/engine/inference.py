"""Using a trained checkpoint: `jpegnet eval` on a folder and `jpegnet predict` on files."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint, model_from_checkpoint
from .device import resolve_device, resolve_precision
from .errors import CheckpointError, ConfigError
from .evaluate import evaluate, plot_confusion
from .folders import scan_checked_folder
from .shards import eval_shards, shard_classes


def evaluate_checkpoint(data: str | Path, checkpoint: str | Path, batch_size: int = 64, device: str | None = None,
                        precision: str | None = None, num_threads: int | None = None,
                        confusion_png: str | Path | None = None, backend: str = "torch",
                        teacher: str | None = None, teacher_weights: str | None = None) -> dict:
    """Top-1 / top-5 / loss / images/s of a checkpoint on DATA/val, DATA's class folders, or tar shards, run on
    the `torch` or the `onnxruntime` backend (jpegnet.engine.backends).

    The loss is the one the training log calls val_loss: cross-entropy with the run's label smoothing
    (`loss_kind` says which). The confusion-matrix PNG is written only when confusion_png is given.
    teacher / teacher_weights (a DCT checkpoint, e.g. from `jpegnet convert`): also `agreement`, the top-1
    agreement (%) with that RGB teacher shown the pixels rebuilt from the same coefficients, and
    `teacher_top1`, the teacher's own top-1 on them; teacher defaults to a converted model's own teacher."""
    from ..data import create_loader, is_shard_spec
    from .inputs import build_data

    shards = is_shard_spec(data)
    if shards:
        folder, classes = str(data), shard_classes(data)
    else:
        data = Path(data)
        folder = data / "val" if (data / "val").is_dir() else data
        folder = scan_checked_folder(folder, "evaluation")  # the dataset below reuses this scan
        classes = folder.classes
    state = load_checkpoint(checkpoint)
    names = state.get("class_names")
    if names is not None and list(names) != classes:
        raise CheckpointError(f"{checkpoint} was trained on classes {names[:4]}... but {folder} has "
                              f"{classes[:4]}... ({len(names)} vs {len(classes)} classes)")
    if len(classes) != state["num_classes"]:
        raise CheckpointError(f"{checkpoint} predicts {state['num_classes']} classes but {folder} has "
                              f"{len(classes)}")
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model = model_from_checkpoint(state, str(checkpoint)).to(dev)
    cfg = model.input_config
    if backend != "torch":
        model, dev = _onnxruntime_backend(backend, model, state, device)
    exif = bool(state.get("train_config", {}).get("exif_orientation", True))
    if shards:
        dataset = eval_shards(data, cfg)
        dataset.exif_orientation = exif
        loader = create_loader(dataset, batch_size, device=dev, num_threads=num_threads)
    else:
        _, loader = build_data(folder, cfg, train=False, batch_size=batch_size, device=dev,
                               num_threads=num_threads, exif_orientation=exif)
    smoothing = float(state.get("train_config", {}).get("label_smoothing", 0.0))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    result = evaluate(model, loader, dev, precision=precision, num_classes=len(classes), criterion=criterion)
    if teacher is not None or teacher_weights is not None:
        result.update(_teacher_agreement(model, state, loader, cfg, teacher, teacher_weights, dev, precision))
    result.update(model=state["model_name"], folder=str(folder), skipped=list(getattr(loader, "skipped", [])),
                  loss_kind=(f"cross-entropy with label smoothing {smoothing:g}" if smoothing
                             else "cross-entropy without label smoothing"))
    if confusion_png is not None:
        result["confusion_png"] = str(plot_confusion(result["confusion"], classes, confusion_png,
                                                     title=f"{state['model_name']}: top-1 {result['top1']:.1f}%"))
    return result


def _teacher_agreement(model, state: dict, loader, cfg, teacher, teacher_weights, dev, precision) -> dict:
    from ..models.cut import teacher_preprocessing
    from ..models.teacher import load_teacher
    from .distill import evaluate_agreement

    spec = teacher or (state.get("model_kwargs") or {}).get("teacher")
    if spec is None:
        raise ConfigError(f"{state['model_name']} has no teacher of its own; name one with --teacher")
    loaded = load_teacher(spec, teacher_weights, num_classes=state["num_classes"])
    prep = teacher_preprocessing(loaded.model)
    return evaluate_agreement(model, loaded.model, loader, cfg, prep["mean"], prep["std"], dev, precision)


def _onnxruntime_backend(backend: str, model, state: dict, device: str | None):
    """(the model exported and run by ONNX Runtime, the device its inputs go to)."""
    from .backends import BACKENDS, OnnxRuntimeBackend

    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    runner = OnnxRuntimeBackend.from_model(model, class_names=state.get("class_names"),
                                           model_name=state["model_name"], device=device)
    return runner, runner.device


def input_batches(files, input_config, device: torch.device | str = "cpu", num_threads: int | None = None,
                  batch_size: int = 32, exif_orientation: bool = True):
    """Yield (names, inputs or None, errors) for each chunk of up to batch_size inputs (JPEG paths or bytes), in
    order, through the evaluation transform of `jpegnet.data` (the very transform `jpegnet eval` applies:
    `JpegFolder.from_files`): errors[i] is None for a usable input, else why not; inputs holds the usable
    inputs' rows in order. A bad input costs only its own result."""
    from ..data import JpegFolder, build_batch_from

    items = [bytes(f) if isinstance(f, (bytearray, memoryview)) else f for f in files]
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        names = [_source_name(item, start + k) for k, item in enumerate(chunk)]
        errors = [None if isinstance(item, bytes) or Path(item).is_file() else "no such file" for item in chunk]
        present = [k for k, error in enumerate(errors) if error is None]
        inputs = None
        if present:
            dataset = JpegFolder.for_model([chunk[k] for k in present], input_config, train=False, on_error="skip",
                                           exif_orientation=exif_orientation)
            # positions as names: a bad item maps back to its place even when a path is given twice
            batch, bad = build_batch_from(dataset, [s for s, _ in dataset.samples], range(len(present)),
                                          [-1] * len(present), names=[str(k) for k in present], seed=0, epoch=0,
                                          device=device, num_threads=num_threads)
            for position, reason, _ in bad:
                errors[int(position)] = (reason.splitlines()[0] if reason else "") or "unreadable"
            inputs = batch[0] if batch is not None else None
        yield names, inputs, errors


def _source_name(item, i: int) -> str:
    return f"<bytes {i}>" if isinstance(item, (bytes, bytearray, memoryview)) else str(item)


@torch.no_grad()
def predict_files(files, checkpoint: str | Path, topk: int = 5, device: str | None = None,
                  backend: str = "torch", batch_size: int = 32,
                  exif_orientation: bool | None = None) -> list[dict]:
    """[{'file', 'top': [(class name, probability), ...]} or {'file', 'error'}] for each input, in order, run
    on the `torch` or the `onnxruntime` backend (jpegnet.engine.backends).

    files: paths or JPEG bytes (named '<bytes i>' in the results). Decoded in batches of batch_size and run
    through the model a batch at a time; a bad input costs only its own result. exif_orientation: default,
    what the run was trained with."""
    from .backends import load_backend

    runner = load_backend(backend, checkpoint=checkpoint, device=device)
    if exif_orientation is None:
        exif_orientation = runner.exif_orientation
    names = runner.class_names
    k = min(topk, len(names))
    results = []
    for chunk_names, inputs, errors in input_batches(files, runner.input_config, runner.device,
                                                     batch_size=batch_size, exif_orientation=exif_orientation):
        if inputs is not None:
            top = runner(*inputs).float().softmax(1).topk(k, dim=1)
        row = 0
        for name, error in zip(chunk_names, errors):
            if error is not None:
                results.append({"file": name, "error": error})
                continue
            results.append({"file": name, "top": [(names[int(j)], float(p))
                                                  for p, j in zip(top.values[row], top.indices[row])]})
            row += 1
    return results
