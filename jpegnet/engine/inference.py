"""Using a trained checkpoint: `jpegnet eval` on a folder and `jpegnet predict` on files."""
from __future__ import annotations

import os
import tempfile
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
    """Top-1 / top-5 / loss / images/s of a checkpoint on DATA/val (or DATA's class folders)."""
    from ..data import JpegFolder, create_loader

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
    dataset = JpegFolder(folder, representation=cfg.representation, train=False, input_size=cfg.input_size,
                         on_error="skip")
    loader = create_loader(dataset, batch_size, device=dev, num_threads=num_threads, input_config=cfg)
    result = evaluate(model, loader, dev, precision=precision, num_classes=len(classes))
    result.update(model=state["model_name"], folder=str(folder), skipped=list(getattr(loader, "skipped", [])))
    if confusion_png is not None:
        result["confusion_png"] = str(plot_confusion(result["confusion"], classes, confusion_png,
                                                     title=f"{state['model_name']}: top-1 {result['top1']:.1f}%"))
    return result


def file_inputs(files, input_config, device: torch.device | str = "cpu", num_threads: int | None = None):
    """Yield (path, inputs or None, error or None) for JPEG files, through the evaluation transform of
    `jpegnet.data` (the very transform `jpegnet eval` applies), one file at a time so that a bad file costs
    only its own result.

    The files are linked into a throw-away one-class folder, so single files take exactly the JpegFolder path.
    """
    from ..data import JpegFolder, create_loader

    with tempfile.TemporaryDirectory(prefix="jpegnet-predict-") as tmp:
        class_dir = Path(tmp) / "files"
        class_dir.mkdir()
        for i, path in enumerate(files):
            path = Path(path)
            if not path.is_file():
                yield str(path), None, "no such file"
                continue
            link = class_dir / f"{i:06d}.jpg"
            os.symlink(path.resolve(), link)
            try:
                dataset = JpegFolder(tmp, representation=input_config.representation, train=False,
                                     input_size=input_config.input_size, on_error="raise")
                loader = create_loader(dataset, 1, device=device, num_threads=num_threads,
                                       input_config=input_config)
                inputs, _ = next(iter(loader))
            except Exception as exc:  # JpegError, OSError...: this file only
                yield str(path), None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            else:
                yield str(path), inputs, None
            finally:
                link.unlink()


@torch.no_grad()
def predict_files(files, checkpoint: str | Path, topk: int = 5, device: str | None = None) -> list[dict]:
    """[{'file', 'top': [(class name, probability), ...]} or {'file', 'error'}] for each file."""
    state = load_checkpoint(checkpoint)
    dev = _device(device)
    model = model_from_checkpoint(state, str(checkpoint)).to(dev)
    names = state.get("class_names") or [str(i) for i in range(state["num_classes"])]
    k = min(topk, len(names))
    results = []
    for path, inputs, error in file_inputs(files, model.input_config, dev):
        if error is not None:
            results.append({"file": path, "error": error})
            continue
        with autocast_context(dev, "bf16" if dev.type == "cuda" else "fp32"):
            logits = model(*inputs)
        probs = logits.float().softmax(1)[0]
        top = probs.topk(k)
        results.append({"file": path, "top": [(names[i], float(p)) for p, i in zip(top.values, top.indices)]})
    return results
