"""`jpegnet convert`: a pretrained pixel CNN → a DCT-input model that agrees with it, from unlabeled JPEGs.

    convert("timm:tf_efficientnet_lite0", data="photos/", out_dir="runs/lite0-dct", weights="lite0.pth")

Phase 1 (OUT/): the teacher's front up to its last stride-8 stage (or `cut`) is replaced by a fresh DCT entry,
its remainder takes the teacher's weights and stays frozen, and the entry learns the teacher's features and
logits (jpegnet.engine.distill). Phase 2 (OUT/finetune/, only with finetune_epochs > 0): the whole student,
started from phase 1's best weights, learns the teacher's soft labels end to end (the remainder's BatchNorm
statistics stay the teacher's). Each phase is an ordinary `jpegnet train` run (TrainingRun with a teacher):
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
    # Starting points, not validated recipes: no conversion has yet reached useful agreement (README,
    # "Converting a pretrained CNN": on 2 loaded cores one epoch of the feature-only objective at 160 px took
    # ~50 min and left a relative feature error of 0.89). The gpu profile is untested.
    "cpu": dict(epochs=4, batch_size=32, optimizer="adamw", lr=2e-3, weight_decay=1e-4, warmup_epochs=0.2,
                min_lr_factor=0.02, precision="fp32", save_every_minutes=5.0, label_smoothing=0.0),
    "gpu": dict(epochs=30, batch_size=256, optimizer="adamw", lr=4e-3, weight_decay=1e-4, warmup_epochs=1.0,
                min_lr_factor=0.01, precision="bf16", save_every_minutes=10.0, label_smoothing=0.0),
}
FINETUNE_LR_FACTOR = 0.1  # phase 2 moves pretrained layers: a tenth of the entry's learning rate
ENTRY_KWARGS = ("entry_width", "entry_depth", "entry_kernel")


def conversion_configs(teacher: str, data: str, out_dir: str, *, weights: str | None = None,
                       val_data: str | None = None, cut: str | None = None, profile: str = "cpu",
                       finetune_epochs: int = 0, model_kwargs: dict | None = None, **overrides):
    """The TrainConfig of phase 1 and (finetune_epochs > 0) phase 2, from a profile and overrides."""
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
    entry = TrainConfig(**dict(base, out_dir=str(out_dir)))
    entry.validate()
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ConfigError(f"finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    if not finetune_epochs:
        return entry, None
    finetune = TrainConfig(**dict(base, out_dir=str(Path(out_dir) / "finetune"), epochs=finetune_epochs,
                                  train_remainder=True, init_from=str(Path(out_dir) / "best.pt"),
                                  lr=entry.resolved_lr() * FINETUNE_LR_FACTOR, warmup_epochs=0.0))
    finetune.validate()
    return entry, finetune


def convert(teacher: str, data: str, out_dir: str, *, resume: bool = False, **options) -> dict:
    """Run the conversion (see the module docstring; options: conversion_configs' keywords). resume: go on
    from the phases' last.pt where they exist. Returns {'entry': summary, 'finetune': summary or None,
    'checkpoint': the final best.pt}."""
    from .trainer import train

    entry, finetune = conversion_configs(teacher, data, out_dir, **options)
    summaries = {"entry": None, "finetune": None}
    for phase, config in (("entry", entry), ("finetune", finetune)):
        if config is None:
            continue
        last = Path(config.out_dir) / "last.pt"
        summaries[phase] = train(config, resume=str(last) if resume and last.is_file() else None)
    final = finetune if finetune is not None else entry
    summaries["checkpoint"] = str(Path(final.out_dir) / "best.pt")
    return summaries


__all__ = ["PROFILES", "conversion_configs", "convert"]
