"""Using a trained checkpoint: `jpegnet eval` on a folder and `jpegnet predict` on files."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint, model_from_checkpoint
from .errors import CheckpointError, DataFolderError
from .evaluate import autocast_context, evaluate, plot_confusion
from .folders import check_image_folder


def _device(device: str | None) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible")
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def evaluate_checkpoint(data: str | Path, checkpoint: str | Path, batch_size: int = 64, device: str | None = None,
                        precision: str | None = None, num_threads: int | None = None,
                        confusion_png: str | Path | None = None) -> dict:
    """Top-1 / top-5 / loss / images/s of a checkpoint on DATA/val (or DATA's class folders).

    The loss is the one the training log calls val_loss: cross-entropy with the run's label smoothing
    (`loss_kind` says which). The confusion-matrix PNG is written only when confusion_png is given."""
    from .inputs import build_data

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
    exif = bool(state.get("train_config", {}).get("exif_orientation", True))
    _, loader = build_data(folder, cfg, train=False, batch_size=batch_size, device=dev, num_threads=num_threads,
                           exif_orientation=exif)
    smoothing = float(state.get("train_config", {}).get("label_smoothing", 0.0))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    result = evaluate(model, loader, dev, precision=precision, num_classes=len(classes), criterion=criterion)
    result.update(model=state["model_name"], folder=str(folder), skipped=list(getattr(loader, "skipped", [])),
                  loss_kind=(f"cross-entropy with label smoothing {smoothing:g}" if smoothing
                             else "cross-entropy without label smoothing"))
    if confusion_png is not None:
        result["confusion_png"] = str(plot_confusion(result["confusion"], classes, confusion_png,
                                                     title=f"{state['model_name']}: top-1 {result['top1']:.1f}%"))
    return result


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


def _source_name(item, i: int) -> str:
    return f"<bytes {i}>" if isinstance(item, (bytes, bytearray, memoryview)) else str(item)


@torch.no_grad()
def predict_files(files, checkpoint: str | Path, topk: int = 5, device: str | None = None,
                  batch_size: int = 32, exif_orientation: bool | None = None) -> list[dict]:
    """[{'file', 'top': [(class name, probability), ...]} or {'file', 'error'}] for each input, in order.

    files: paths or JPEG bytes (named '<bytes i>' in the results). Decoded in batches of batch_size and run
    through the model a batch at a time; a bad input costs only its own result."""
    from ..data import JpegFolder
    from ..data.loader import build_batch

    state = load_checkpoint(checkpoint)
    dev = _device(device)
    model = model_from_checkpoint(state, str(checkpoint)).to(dev)
    cfg = model.input_config
    if exif_orientation is None:
        exif_orientation = bool(state.get("train_config", {}).get("exif_orientation", True))
    names = state.get("class_names") or [str(i) for i in range(state["num_classes"])]
    k = min(topk, len(names))
    items = [bytes(f) if isinstance(f, (bytearray, memoryview)) else f for f in files]
    results = []
    for start in range(0, len(items), batch_size):
        chunk = list(range(start, min(start + batch_size, len(items))))
        out: dict[int, dict] = {}
        present = []
        for i in chunk:
            if isinstance(items[i], bytes) or Path(items[i]).is_file():
                present.append(i)
            else:
                out[i] = {"file": _source_name(items[i], i), "error": "no such file"}
        if present:
            dataset = JpegFolder.from_files([items[i] for i in present], representation=cfg.representation,
                                            train=False, input_size=cfg.input_size, crop_pct=cfg.crop_pct,
                                            on_error="skip", exif_orientation=exif_orientation)
            batch, bad = build_batch(dataset, range(len(present)), seed=0, epoch=0, device=dev, input_config=cfg)
            reasons = {id(path): reason for path, reason, _ in bad}
            reasons_by_value = {path: reason for path, reason, _ in bad}
            good = [i for row, i in enumerate(present)
                    if id(dataset.samples[row][0]) not in reasons and dataset.samples[row][0] not in reasons_by_value]
            for row, i in enumerate(present):
                path = dataset.samples[row][0]
                if i not in good:
                    reason = reasons.get(id(path)) or reasons_by_value.get(path) or "unreadable"
                    out[i] = {"file": _source_name(items[i], i), "error": reason.splitlines()[0] or "unreadable"}
            if good:
                with autocast_context(dev, "bf16" if dev.type == "cuda" else "fp32"):
                    logits = model(*batch[0])
                probs = logits.float().softmax(1)
                top = probs.topk(k, dim=1)
                for row, i in enumerate(good):
                    out[i] = {"file": _source_name(items[i], i),
                              "top": [(names[int(j)], float(p)) for p, j in zip(top.values[row], top.indices[row])]}
        results.extend(out[i] for i in chunk)
    return results
