"""Using a trained checkpoint: `jpegnet eval` on a folder and `jpegnet predict` on files."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint, model_from_checkpoint
from .device import resolve_device, resolve_precision
from .errors import ConfigError
from .evaluate import evaluate, plot_confusion
from .folders import scan_checked_folder
from .shards import check_shards_exist, eval_shards, shard_classes


def evaluate_checkpoint(data: str | Path, checkpoint: str | Path | None = None, batch_size: int = 64,
                        device: str | None = None, precision: str | None = None, num_threads: int | None = None,
                        confusion_png: str | Path | None = None, backend: str = "torch",
                        rgb_decode: str = "fast", *, model_name: str | None = None, weights: str | Path | None = None,
                        model_kwargs: dict | None = None, labels_from: str = "folders", teacher: str | None = None,
                        teacher_weights: str | None = None) -> dict:
    """Top-1 / top-5 / loss / images/s of a checkpoint on DATA/val, DATA's class folders, or tar shards, run on
    the `torch`, `onnxruntime` or `openvino` backend (jpegnet.engine.backends).

    Instead of a checkpoint: a registered `model_name` with a `weights` file (any format `create_model`'s
    checkpoint_path takes: jpegnet, torchvision, timm, efficientnet_pytorch; loaded strictly) and its builder's
    `model_kwargs`, evaluated with the model's own input config; ImageNet weights give it the ImageNet-1k
    classes (jpegnet.imagenet).
    labels_from: 'folders' or 'filenames' (jpegnet.engine.labels: how an image's label is found, and how an
    ImageNet model maps wnids to its outputs).

    The loss is the one the training log calls val_loss: cross-entropy with the run's label smoothing
    (`loss_kind` says which). The confusion-matrix PNG is written only when confusion_png is given (over the
    folder's classes). rgb_decode: an RGB model's decode, 'fast' (what `jpegnet serve` runs) or 'plain'
    (torchvision's, which is timm's evaluation transform; jpegnet.data.rgb).
    teacher / teacher_weights (a DCT checkpoint, e.g. from `jpegnet convert`): also `agreement`, the top-1
    agreement (%) with that RGB teacher shown the pixels rebuilt from the same coefficients, and
    `teacher_top1`, the teacher's own top-1 on them; teacher defaults to a converted model's own teacher."""
    from ..data import JpegFolder, create_loader, is_shard_spec
    from ..data.rgb import check_rgb_decode
    from .labels import LABEL_SOURCES, files_labelled_by_name, folder_targets

    if labels_from not in LABEL_SOURCES:
        raise ConfigError(f"labels_from must be one of {', '.join(LABEL_SOURCES)}, got {labels_from!r}")
    if (checkpoint is None) == (weights is None and model_name is None):
        raise ConfigError("evaluate a checkpoint, or a model name with a weights file: exactly one of them")
    if checkpoint is None and (model_name is None or weights is None):
        raise ConfigError("a weights file needs the model name it is for (--model NAME --weights FILE)")
    check_rgb_decode(rgb_decode)
    shards = is_shard_spec(data)
    if shards and labels_from != "folders":
        raise ConfigError("tar shards carry their labels; --labels-from filenames is for a folder of files")
    if shards:
        check_shards_exist(data)
    elif labels_from == "folders":  # the folder is checked before any model is built
        data = Path(data)
        folder = data / "val" if (data / "val").is_dir() else data
        folder = scan_checked_folder(folder, "evaluation")  # the dataset below reuses this scan
    model, state, who = _model_to_evaluate(checkpoint, model_name, weights, model_kwargs)
    names, num_classes = state.get("class_names"), state["num_classes"]
    remap = None
    if shards:  # shards without classes.json (another tool's): labels are indexes into the model's classes
        folder = str(data)
        classes = shard_classes(data, default=names or [str(i) for i in range(num_classes)])
        if folder_targets(classes, names, num_classes, folder, who) is not None:
            raise ConfigError(f"{folder}: tar shards are labelled by their own class list; for an ImageNet model "
                              f"evaluate the folder of images, or write the shards with the model's 1000 classes")
    elif labels_from == "filenames":
        folder = Path(data)
        files, targets = files_labelled_by_name(folder, names)
        classes = list(names)
    else:
        classes = folder.classes
        remap = folder_targets(classes, names, num_classes, str(folder), who)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model = model.to(dev)
    cfg = model.input_config
    if backend != "torch":
        model, dev = _exported_backend(backend, model, state, device)
    exif = bool(state.get("train_config", {}).get("exif_orientation", True))
    options = dict(on_error="skip", exif_orientation=exif, rgb_decode=rgb_decode)
    if shards:
        dataset = eval_shards(data, cfg, classes)
        dataset.exif_orientation = exif
        dataset.rgb_decode = rgb_decode
    elif labels_from == "filenames":
        dataset = JpegFolder.for_model(files, cfg, train=False, **options)
        dataset.samples = list(zip(files, targets))
        dataset.targets = list(targets)
    else:
        dataset = JpegFolder.for_model(folder, cfg, train=False, **options)
    if remap is not None:  # folder classes -> the model's class indices (an ImageNet model and its wnids)
        dataset.samples = [(path, remap[t]) for path, t in dataset.samples]
        dataset.targets = [remap[t] for t in dataset.targets]
    loader = create_loader(dataset, batch_size, device=dev, num_threads=num_threads)
    smoothing = float(state.get("train_config", {}).get("label_smoothing", 0.0))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    result = evaluate(model, loader, dev, precision=precision, num_classes=num_classes, criterion=criterion)
    if teacher is not None or teacher_weights is not None:
        result.update(_teacher_agreement(model, state, loader, cfg, teacher, teacher_weights, dev, precision))
    result.update(model=state["model_name"], folder=str(folder), skipped=list(getattr(loader, "skipped", [])),
                  loss_kind=(f"cross-entropy with label smoothing {smoothing:g}" if smoothing
                             else "cross-entropy without label smoothing"))
    if confusion_png is not None:
        confusion, shown = result["confusion"], classes
        if remap is not None or labels_from == "filenames":  # only the classes the folder has
            used = sorted(set(dataset.targets))
            confusion, shown = confusion[used][:, used], [list(names)[i] for i in used]
        result["confusion_png"] = str(plot_confusion(confusion, shown, confusion_png,
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


def _model_to_evaluate(checkpoint, model_name: str | None, weights,
                       model_kwargs: dict | None = None) -> tuple[torch.nn.Module, dict, str]:
    """(model in eval mode on the CPU, its checkpoint-like state: model_name, num_classes, class_names and, for a
    checkpoint, train_config; how to name it in messages)."""
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        return model_from_checkpoint(state, str(checkpoint)), state, str(checkpoint)
    from .zoo import build_model, check_option_kwargs
    from ..models.pretrained import load_pretrained

    kwargs = check_option_kwargs(model_kwargs or {})
    # 1000 classes: --weights is for a zoo's ImageNet weights (a run of ours has its checkpoint)
    model = build_model(model_name, 1000, kwargs)
    model = load_pretrained(model, model_name, False, str(weights), kwargs).eval()
    state = {"model_name": model_name, "num_classes": model.num_classes,
             "class_names": getattr(model, "class_names", None)}
    return model, state, f"{model_name} with {weights}"


def _exported_backend(backend: str, model, state: dict, device: str | None):
    """(the model exported and run by ONNX Runtime or OpenVINO, the device its inputs go to)."""
    from .backends import backend_from_model

    runner = backend_from_model(backend, model, class_names=state.get("class_names"),
                                model_name=state["model_name"], device=device)
    return runner, runner.device


def input_batches(files, input_config, device: torch.device | str = "cpu", num_threads: int | None = None,
                  batch_size: int = 32, exif_orientation: bool = True, rgb_decode: str = "fast"):
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
                                           exif_orientation=exif_orientation, rgb_decode=rgb_decode)
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
                  exif_orientation: bool | None = None, rgb_decode: str = "fast") -> list[dict]:
    """[{'file', 'top': [(class name, probability), ...]} or {'file', 'error'}] for each input, in order, run
    on the `torch`, `onnxruntime` or `openvino` backend (jpegnet.engine.backends).

    files: paths or JPEG bytes (named '<bytes i>' in the results). Decoded in batches of batch_size and run
    through the model a batch at a time; a bad input costs only its own result. exif_orientation: default,
    what the run was trained with. rgb_decode: an RGB model's decode, 'fast' (what `jpegnet serve` runs) or
    'plain' (jpegnet.data.rgb)."""
    from .backends import load_backend

    runner = load_backend(backend, checkpoint=checkpoint, device=device)
    if exif_orientation is None:
        exif_orientation = runner.exif_orientation
    names = runner.class_names
    k = min(topk, len(names))
    results = []
    for chunk_names, inputs, errors in input_batches(files, runner.input_config, runner.device,
                                                     batch_size=batch_size, exif_orientation=exif_orientation,
                                                     rgb_decode=rgb_decode):
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
