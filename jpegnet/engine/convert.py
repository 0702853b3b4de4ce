"""`jpegnet convert`: a pretrained pixel CNN → a DCT-input model that agrees with it.

    convert("timm:tf_efficientnet_lite0", None, "runs/lite0-dct", weights="lite0.pth", entry="pixels")
    convert("timm:tf_efficientnet_lite0", data="photos/", out_dir="runs/lite0-dct", weights="lite0.pth")

entry="pixels" (`convert_exact`): no training and no data. The `converted` model with the exact entry
(jpegnet.models.converted.PixelEntry: the coefficients rebuilt into the teacher's normalized pixels) takes the
teacher's full weights and is written as OUT/best.pt (and OUT/best.safetensors) at once: the teacher itself,
on coefficients. To fine-tune it, `jpegnet train --init-from OUT/best.pt`.

entry="learned" (the default), from unlabeled JPEGs:

Phase 1 (OUT/): the teacher's front up to its last stride-8 stage (or `cut`) is replaced by a fresh DCT entry,
its remainder takes the teacher's weights and stays frozen, and the entry learns the teacher's features at
the cut (the profiles' distill_kl 0; a distill_kl given adds its logits: jpegnet.engine.distill). Phase 2
(OUT/finetune/, only with finetune_epochs > 0): the whole student, started from phase 1's best weights (or, with
epochs=0, from init_from: an earlier conversion fine-tuned without a new entry phase), learns
the teacher's features and soft labels end to end (distill_kl FINETUNE_KL unless given; the remainder's
BatchNorm statistics stay the teacher's). Each phase is an ordinary `jpegnet train` run (TrainingRun with a teacher):
progress, log.csv, checkpoints every N minutes, exact resume, DDP. Top-1 in its log is agreement with the
teacher. The result, OUT/best.pt (or OUT/finetune/best.pt), is a checkpoint of the registered model
`converted` with the teacher's class names: eval, predict, serve, export and train --init-from take it.

Profiles: the recipes below, for a CPU (a few cores, small batches, short) and a GPU; any TrainConfig field
passed as an override replaces the profile's value.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .errors import ConfigError

PROFILES = {
    # Phase 1 learns the teacher's features alone (distill_kl 0): a class-agnostic target, so the entry learns
    # what every image needs, not what the unlabeled photos' classes need. Measured on the 2-core VM, one core
    # each (README, "Results"): EfficientNet-Lite0, imagenette's 9,469 photos, this cpu profile, 5 epochs:
    # the default stride-8 cut in 26 minutes, 83.8 % top-1 agreement with the teacher on the 1,000 ImageNet
    # sample images (77.8 % top-1 against the teacher's 87.9 %); cut at stride 4 (`cut="blocks.1"`,
    # entry_depth 2) in 19 minutes, 84.6 % (79.6 %). With the KL term in phase 1
    # (1 epoch, batch 32, the earlier profile) a stride-8 entry agreed on 30 % of imagenette photos but 4.5 % of
    # ImageNet's: the logits' target taught it imagenette's 10 classes. The gpu profile is untested.
    # fp32 by default on the CPU: where the CPU has native bf16 (AMX, AVX512-BF16), --precision bf16 trained 1.4x
    # faster at about the same agreement (85.4 % against 86.3 %, 10 epochs, one seed each); elsewhere it is emulated.
    "cpu": dict(epochs=5, batch_size=16, optimizer="adamw", lr=2e-3, weight_decay=1e-4, warmup_epochs=0.2,
                min_lr_factor=0.02, precision="fp32", save_every_minutes=5.0, label_smoothing=0.0, distill_kl=0.0),
    "gpu": dict(epochs=30, batch_size=256, optimizer="adamw", lr=4e-3, weight_decay=1e-4, warmup_epochs=1.0,
                min_lr_factor=0.01, precision="bf16", save_every_minutes=10.0, label_smoothing=0.0, distill_kl=0.0),
}
FINETUNE_LR_FACTOR = 0.1  # phase 2 moves pretrained layers: a tenth of the entry's learning rate
FINETUNE_KL = 1.0  # phase 2 learns the teacher's soft labels (its default objective: features + KL)
ENTRY_KWARGS = ("entry_width", "entry_depth", "entry_kernel", "entry_expand", "entry_stride")
#: Options an exact (pixels) conversion takes no notice of: they only steer a training run's machinery.
EXACT_IGNORED = ("profile", "device", "precision", "num_threads", "progress", "tensorboard", "log_every",
                 "save_every_minutes", "seed")


def conversion_configs(teacher: str, data: str, out_dir: str, *, weights: str | None = None,
                       val_data: str | None = None, cut: str | None = None, profile: str = "cpu",
                       finetune_epochs: int = 0, model_kwargs: dict | None = None, **overrides):
    """The TrainConfig of phase 1 and (finetune_epochs > 0) phase 2, from a profile and overrides. With
    epochs=0 (and init_from, finetune_epochs >= 1) phase 1 is None: phase 2 alone starts from init_from."""
    from .trainer import TrainConfig

    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"convert takes no option {unknown[0]!r}")
    kwargs = {"teacher": teacher, **({"cut": cut} if cut is not None else {}), **(model_kwargs or {})}
    base = dict(PROFILES[profile], data=data, val_data=val_data, model="converted", model_kwargs=kwargs,
                teacher=teacher, teacher_weights=weights)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ConfigError(f"finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    # epochs=0: no entry phase; phase 2 alone fine-tunes an earlier conversion (init_from). The entry's config
    # is still built (with one epoch) so that every option is checked and phase 2's learning rate derives from it.
    skip_entry = base["epochs"] == 0 and not isinstance(base["epochs"], bool)
    if skip_entry and (base.get("init_from") is None or not finetune_epochs):
        raise ConfigError("epochs=0 skips the entry phase: it fine-tunes an earlier conversion, so give init_from "
                          "(its best.pt) and finetune_epochs >= 1")
    entry = TrainConfig(**dict(base, out_dir=str(out_dir), epochs=1 if skip_entry else base["epochs"]))
    entry.validate()
    if not finetune_epochs:
        return entry, None
    kl = overrides.get("distill_kl")  # given: both phases use it; else phase 2 adds the KL term
    start = base["init_from"] if skip_entry else str(Path(out_dir) / "best.pt")
    finetune = TrainConfig(**dict(base, out_dir=str(Path(out_dir) / "finetune"), epochs=finetune_epochs,
                                  train_remainder=True, init_from=start,
                                  lr=entry.resolved_lr() * FINETUNE_LR_FACTOR, warmup_epochs=0.0,
                                  distill_kl=FINETUNE_KL if kl is None else kl))
    finetune.validate()
    return (None if skip_entry else entry), finetune


def convert(teacher: str, data: str | None, out_dir: str, *, resume: bool = False, entry: str = "learned",
            **options) -> dict:
    """Run the conversion (see the module docstring; options: conversion_configs' keywords). resume: go on
    from the phases' last.pt where they exist. Returns {'entry': summary, 'finetune': summary or None,
    'checkpoint': the final best.pt}; entry="pixels": `convert_exact`'s summary (no training, data unused)."""
    from .trainer import train

    if entry == "pixels":
        return convert_exact(teacher, out_dir, **options)
    if entry != "learned":
        raise ConfigError(f"entry must be 'learned' or 'pixels', got {entry!r}")
    if data is None:
        raise ConfigError("a learned entry is trained on JPEGs: give data (a folder or tar shards)")
    entry_config, finetune = conversion_configs(teacher, data, out_dir, **options)
    summaries = {"entry": None, "finetune": None}
    for phase, config in (("entry", entry_config), ("finetune", finetune)):
        if config is None:
            continue
        last = Path(config.out_dir) / "last.pt"
        summaries[phase] = train(config, resume=str(last) if resume and last.is_file() else None)
    final = finetune if finetune is not None else entry_config
    summaries["checkpoint"] = str(Path(final.out_dir) / "best.pt")
    return summaries


def convert_exact(teacher: str, out_dir: str, *, weights: str | None = None, input_size: int | None = None,
                  model_kwargs: dict | None = None, cut: str | None = None, finetune_epochs: int = 0,
                  dct_stats: str | None = None, **options) -> dict:
    """entry="pixels": the `converted` model with the exact entry and the teacher's full weights (loaded as
    distillation loads its teacher: jpegnet.models.teacher.load_teacher), written as OUT/best.pt and
    OUT/best.safetensors; nothing is trained. input_size / dct_stats: as `jpegnet train` takes them (default:
    the teacher's size, the default DCT scale). Returns {'entry': None, 'finetune': None, 'checkpoint': the
    best.pt, 'exact': {teacher, weights, num_classes, input_size, parameters}}."""
    from ..models import create_model
    from ..models.teacher import load_teacher
    from .checkpoint import save_checkpoint
    from .inputs import resolve_input_config
    from .runs import write_best_weights

    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ConfigError(f"finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    if finetune_epochs:
        raise ConfigError(f"entry='pixels' trains nothing: convert first, then fine-tune with `jpegnet train "
                          f"--init-from {Path(out_dir) / 'best.pt'}`")
    if cut is not None or model_kwargs:
        given = "cut" if cut is not None else sorted(model_kwargs)[0]
        raise ConfigError(f"entry='pixels' runs the whole teacher after an exact entry: {given!r} belongs to the "
                          f"learned entry")
    training = sorted(k for k, v in options.items() if v is not None and k not in EXACT_IGNORED)
    if training:
        raise ConfigError(f"entry='pixels' trains nothing: the training option {training[0]!r} does not apply "
                          f"(fine-tune with `jpegnet train --init-from OUT/best.pt`)")
    loaded = load_teacher(teacher, weights)
    kwargs = {"teacher": teacher, "entry": "pixels"}
    num_classes = len(loaded.class_names)
    model = create_model("converted", num_classes=num_classes, **kwargs)
    own, theirs = model.remainder.state_dict(), loaded.model.state_dict()
    if list(own) != list(theirs) or any(own[k].shape != theirs[k].shape for k in own):
        raise ConfigError(f"the teacher {teacher} loaded from {weights} does not match the converted model's "
                          f"copy of it")
    model.remainder.load_state_dict(theirs)
    model.input_config = resolve_input_config(model.input_config, input_size, dct_stats)
    model.eval()
    state = {"model_name": "converted", "model_kwargs": kwargs, "num_classes": num_classes,
             "class_names": list(loaded.class_names), "input_config": model.input_config.to_dict(),
             "model": model.state_dict()}
    out = Path(out_dir)
    save_checkpoint(state, out / "best.pt")
    write_best_weights(out / "best.safetensors", state["model"], model_name="converted", model_kwargs=kwargs,
                       class_names=state["class_names"], input_config=state["input_config"])
    exact = {"teacher": teacher, "weights": weights, "num_classes": num_classes,
             "input_size": tuple(model.input_config.input_size),
             "parameters": sum(p.numel() for p in model.parameters())}
    return {"entry": None, "finetune": None, "checkpoint": str(out / "best.pt"), "exact": exact}


__all__ = ["PROFILES", "conversion_configs", "convert", "convert_exact"]
