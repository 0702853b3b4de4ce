"""The training loop: one GPU, many GPUs (torchrun + DDP) or the CPU, resumable at any step.

What a run does, in order: check the data folder, build the model from the registry (its `input_config`
chooses the DCT or RGB pipeline), build the loaders of `jpegnet.data`, then train with SGD or AdamW under a
warmup + cosine schedule, evaluating top-1 / top-5 on `val/` after every epoch. Rank 0 writes `log.csv`,
TensorBoard events, `last.pt` (every epoch, every `save_every_minutes` and every `save_every_steps`) and
`best.pt` (best validation top-1).

Exact resume. A checkpoint holds the model, optimizer, scheduler, grad scaler, every RNG state, the position
in the epoch (epoch, batches done) and the running sums of the epoch's metrics. The data pipeline's
augmentation is a pure function of (seed, epoch, sample index) and `loader.set_epoch(epoch, start_batch)`
skips the batches already done, so a resumed run replays exactly the computation the killed run would have
done next: with `deterministic=True` on the CPU the final weights are bit-identical to an uninterrupted run.

Same result on any number of processes. Training always draws its order from a DistributedSampler (with
one replica when alone), whose rank-r share is every W-th index of one permutation; the W per-process
batches of a step therefore together hold exactly the samples of the single-process batch of the same global
size. DDP averages gradients, so up to float rounding (and BatchNorm statistics, which are per process unless
`sync_bn`) W processes compute what one process does.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batchnorm_size import batchnorm_values_per_image, smallest_trainable_batch
from .checkpoint import (capture_rng_state, check_checkpoint_model, load_checkpoint, load_model_state,
                         restore_rng_state, save_checkpoint)
from .distributed import DistInfo, ShardSampler, all_reduce_sum, cleanup_distributed, init_distributed
from .device import PRECISIONS, autocast_context, resolve_channels_last, resolve_precision
from .errors import CheckpointError, ConfigError, DataFolderError, EngineError, OutOfMemoryError, TrainingError
from .evaluate import evaluate
from .folders import check_train_val_folder
from .inputs import build_data, load_dct_stats_file, resolve_input_config
from .recipe import MixUpCutMix, ModelEma, soft_cross_entropy
from .runs import (check_run_folder, run_is_complete, write_best_weights, write_run_config, StepLogger,
                   train_logger)
from ..log import console_lines_through
from .logger import RunLogger
from .metrics import topk_correct
from .schedule import WarmupCosineLR
from .shards import TrainValShards
from .zoo import build_model, check_option_kwargs

OPTIMIZERS = ("sgd", "adamw")

# Above this share of unreadable training files in an epoch, a warning with the count is printed: a few bad
# files are normal in a scraped dataset, a large share usually means a broken copy or a wrong folder.
UNREADABLE_WARN_SHARE = 0.10


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints).

    batch_size is the global batch: with W processes each one takes batch_size / W.
    lr None: 0.1 * batch_size / 256 for SGD (the linear scaling rule), 1e-3 * batch_size / 1024 for AdamW.
    weight_decay None: 1e-4 for SGD, 0.05 for AdamW; it never applies to biases and normalization weights.
    precision None: bf16 autocast on CUDA, fp32 on the CPU. channels_last None: on for CUDA.
    warmup_epochs may be fractional. dct_stats: a JSON file from `jpegnet stats` (DCT mean/std).
    data: a folder with train/ and val/, or training tar shards ('shards/train-{000000..000146}.tar', pipe:
    commands; see jpegnet.data.shards) with val_data the validation shards.
    """

    data: str
    model: str
    model_kwargs: dict = field(default_factory=dict)
    out_dir: str = "runs/train"
    epochs: int = 90
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    warmup_epochs: float = 1.0
    min_lr_factor: float = 0.0
    label_smoothing: float = 0.1
    input_size: int | None = None
    dct_stats: str | None = None
    precision: str | None = None
    channels_last: bool | None = None
    compile: bool = False
    device: str | None = None
    seed: int = 0
    deterministic: bool = False
    num_threads: int | None = None
    save_every_minutes: float = 10.0
    save_every_steps: int = 0
    sync_bn: bool = False
    tensorboard: bool = True
    progress: bool | None = None
    log_every: int = 20
    val_data: str | None = None
    # -- pretrained starts and timm's recipe pieces (see jpegnet.engine.recipe, jpegnet.data.jitter) --
    init_from: str | None = None      # PATH | torchvision:NAME | timm:NAME (see jpegnet.models.pretrained)
    mixup: float = 0.0                # MixUp Beta alpha (0: off)
    cutmix: float = 0.0               # CutMix Beta alpha (0: off); whole 16x16 MCUs on DCT input
    ema_decay: float = 0.0            # model EMA decay, e.g. 0.9998 (0: off)
    clip_grad: float = 0.0            # max global gradient norm (0: off)
    grad_accum_steps: int = 1         # micro-batches per batch (same update, 1/N of the activation memory)
    brightness: float = 0.0           # colour jitter ranges, as torchvision's ColorJitter (0: off)
    contrast: float = 0.0
    saturation: float = 0.0
    exif_orientation: bool = True     # honour EXIF orientation tags (both pipelines)
    # -- distillation (`jpegnet convert`, jpegnet.engine.distill): the model is `converted`, the data unlabeled --
    teacher: str | None = None        # the teacher (model_kwargs['teacher'] of the converted model); None: off
    teacher_weights: str | None = None  # its weights file (None: the hub's; 'random': untrained, for tests)
    distill_features: float = 1.0     # weight of the per-channel normalized feature MSE at the cut
    distill_kl: float = 1.0           # weight of the KL divergence on the logits
    distill_temperature: float = 1.0
    distill_late: float = 0.0         # weight of the normalized MSE on the remainder's last feature map
    train_remainder: bool = False     # also train the teacher's later stages (soft labels); else only the entry
    holdout: int = 256                # distillation without val_data: this many training files validate

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("epochs", "batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        # Every float option must be a finite number: nan passes `x < 0` checks and inf passes `x > 0`, and
        # either one turns every weight into nan at the first step.
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "min_lr_factor", "label_smoothing",
                     "save_every_minutes"):
            value = getattr(self, name)
            if value is None and name in ("lr", "weight_decay"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.min_lr_factor <= 1.0:
            raise ConfigError(f"min_lr_factor must be in [0, 1], got {self.min_lr_factor}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.save_every_minutes < 0 or self.save_every_steps < 0:
            raise ConfigError("save_every_minutes and save_every_steps must be >= 0 (0 turns them off)")
        check_option_kwargs(self.model_kwargs, "model_kwargs")
        if self.input_size is not None and self.input_size < 8:
            raise ConfigError(f"input_size must be at least 8 pixels, got {self.input_size}")  # DCT: see _build
        self._validate_recipe()

    def _validate_recipe(self) -> None:
        for name in ("mixup", "cutmix", "clip_grad", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)}")
        if self.contrast > 1 or self.saturation > 1 or self.brightness > 1:
            raise ConfigError("brightness, contrast and saturation ranges must be <= 1")
        if not (self.ema_decay == 0 or 0 < self.ema_decay < 1):
            raise ConfigError(f"ema_decay must be in (0, 1) (or 0: off), got {self.ema_decay}")
        if isinstance(self.grad_accum_steps, bool) or not isinstance(self.grad_accum_steps, int) \
                or self.grad_accum_steps < 1:
            raise ConfigError(f"grad_accum_steps must be a positive integer, got {self.grad_accum_steps!r}")
        if self.teacher is not None:
            self._validate_distillation()
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by grad_accum_steps "
                             f"{self.grad_accum_steps} (each batch is split into that many micro-batches)")

    def _validate_distillation(self) -> None:
        if self.model != "converted":
            raise ConfigError(f"distillation from a teacher trains a `converted` model, not {self.model!r}")
        if self.model_kwargs.get("teacher") != self.teacher:
            raise ConfigError(f"the converted model's teacher {self.model_kwargs.get('teacher')!r} (model_kwargs) "
                              f"differs from the teacher {self.teacher!r}")
        for name in ("distill_features", "distill_kl", "distill_temperature", "distill_late"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.distill_temperature > 0:
            raise ConfigError(f"distill_temperature must be positive, got {self.distill_temperature}")
        if not (self.distill_features or self.distill_kl or self.distill_late):
            raise ConfigError("distill_features, distill_kl and distill_late are all 0: nothing to learn")
        if self.train_remainder and not (self.distill_kl or self.distill_late):
            raise ConfigError("train_remainder needs distill_kl or distill_late > 0: a feature-only objective never "
                              "reaches the remainder")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, int) or self.holdout < 1:
            raise ConfigError(f"holdout must be a positive integer, got {self.holdout!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 1e-3 * self.batch_size / 1024

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.optimizer == "sgd" else 0.05


# Options that may differ between a run and its resumption without breaking it.
_RESUME_FREE = {"out_dir", "save_every_minutes", "save_every_steps", "tensorboard", "progress", "log_every",
                "num_threads", "epochs", "data", "val_data", "compile", "device", "channels_last", "deterministic",
                "init_from"}  # the run's own weights replace the initial ones on resume


def train(config: TrainConfig, resume: str | os.PathLike | None = None) -> dict:
    """Run (or resume) a training run; returns a summary dict (best / final metrics, paths)."""
    config.validate()
    if config.dct_stats is not None:
        load_dct_stats(config.dct_stats)  # checked before anything runs
    check_out_dir(config.out_dir)
    from .runs import setup_console_logging
    setup_console_logging()
    info = init_distributed(config.device)
    try:
        return TrainingRun(config, info, resume).run()
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(f"out of GPU memory with {config.batch_size // info.world_size} images per "
                               f"process; lower --batch-size (or --input-size)") from None
    except RuntimeError as exc:
        if "can't allocate memory" in str(exc) or "not enough memory" in str(exc):
            raise OutOfMemoryError(f"out of memory with {config.batch_size // info.world_size} images per "
                                   f"process; lower --batch-size (or --input-size)") from None
        raise
    finally:
        cleanup_distributed()


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """The run folder must be writable before training starts, not when the first checkpoint is due."""
    import tempfile

    out = Path(out_dir)
    created = [p for p in (out, *out.parents) if not p.exists()]  # removed again: a failed run leaves nothing
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EngineError(f"cannot write to the run folder {out} (--out): {exc.strerror or exc}") from None
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Ask PyTorch for deterministic kernels (bit-identical reruns on the CPU; on CUDA as far as possible)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying biases and norm scales only hurts."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.resolved_weight_decay())
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.resolved_lr(), momentum=config.momentum, nesterov=False)
    return torch.optim.AdamW(groups, lr=config.resolved_lr(), betas=(0.9, 0.999))


def load_dct_stats(path: str | os.PathLike) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of 192 values each from a `jpegnet stats` JSON file."""
    stats = load_dct_stats_file(path)
    return stats["mean"], stats["std"]


def loader_prefetch(device: torch.device) -> int:
    """Batches to prepare ahead on the loader's thread: overlap decoding with the step on a GPU; on a CPU with
    few cores the two compete for the same cores (each with its own intra-op thread team) and overlapping is
    slower than taking turns (measured 95 against 167 img/s on 2 cores), so only with cores to spare."""
    if device.type == "cuda":
        return 2
    return 2 if (os.cpu_count() or 1) >= 8 else 0


def _unlabeled_split(data: str, val_data: str | None, holdout: int) -> tuple[list[str], list[str]]:
    """(training files, validation files) for distillation: every JPEG under `data` (any layout; labels
    unused) and under `val_data`, or without it the last `holdout` files (at most a fifth) of a fixed
    shuffle of the training files."""
    from ..data.scan import list_class_files

    def files(folder: str, what: str) -> list[str]:
        if not Path(folder).is_dir():
            raise DataFolderError(f"{what} {folder} is not a folder of JPEG files")
        found = list_class_files(folder)
        if not found:
            raise DataFolderError(f"{what} {folder} holds no JPEG file (.jpg / .jpeg, at any depth)")
        return found

    train = files(data, "--data")
    if val_data is not None:
        return train, files(val_data, "--val-data")
    if len(train) < 2:
        raise DataFolderError(f"--data {data} holds one JPEG file: too few to hold some out for validation")
    order = np.random.default_rng(0).permutation(len(train))
    n_val = max(1, min(holdout, len(train) // 5))
    held = set(order[-n_val:].tolist())
    return ([f for i, f in enumerate(train) if i not in held], [f for i, f in enumerate(train) if i in held])


class TrainingRun:
    """One training run: `TrainingRun(config, dist_info, resume).run()` builds the model, data and optimizer,
    trains and evaluates epoch by epoch and returns the summary `train()` returns. The state between steps
    lives on this object, so checkpoints capture it and `resume` restores it. `train()` is the usual entry: it
    also validates the config, sets up (and tears down) the process group and turns out-of-memory into a
    one-line error."""

    distill = None  # the Distillation (jpegnet.engine.distill) of a run with a teacher; set by _build

    def __init__(self, config: TrainConfig, info: DistInfo, resume):
        self.info = info
        self.resume_state = None
        if info.is_main:
            check_run_folder(config.out_dir, resume)  # before anything is read or written
        if resume is not None:
            self.resume_state = load_checkpoint(resume)
            if "train_config" not in self.resume_state or "optimizer" not in self.resume_state:
                raise CheckpointError(f"{resume} holds weights only and cannot resume a run (no training state)")
            check_checkpoint_model(self.resume_state, str(resume))  # before anything is built from it
            self._check_resume_compatible(config, self.resume_state, str(resume))
        self.config = config
        self.device = info.device
        config = replace(config, precision=resolve_precision(config.precision, self.device, training=True),
                         channels_last=resolve_channels_last(config.channels_last, self.device))
        self.config = config

    @staticmethod
    def _check_resume_compatible(config: TrainConfig, state: dict, path: str) -> None:
        saved = state["train_config"]
        for key, value in config.to_dict().items():
            if key in _RESUME_FREE or key not in saved or value is None:  # None: "as before"
                continue
            if saved[key] != value:
                raise CheckpointError(f"{path} was trained with {key}={saved[key]!r} but this run asks for "
                                      f"{key}={value!r}; resume with the original setting")

    # --- setup -------------------------------------------------------------------------------------------

    def _build(self) -> None:
        from ..data import is_shard_spec

        cfg, info = self.config, self.info
        shards = TrainValShards(cfg.data, cfg.val_data) if is_shard_spec(cfg.data) else None
        self.teacher = self._load_teacher() if cfg.teacher is not None else None
        unlabeled = None
        if shards is not None:
            classes = shards.classes
        elif self.teacher is not None:  # distillation: any JPEGs, labels unused
            unlabeled = _unlabeled_split(cfg.data, cfg.val_data, cfg.holdout)
        elif cfg.val_data is not None:
            raise DataFolderError("--val-data goes with training shards; a data folder's validation set is DIR/val")
        else:
            train_dir, val_dir, classes = check_train_val_folder(cfg.data)
        if cfg.batch_size % info.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes")
        self.per_rank_batch = cfg.batch_size // info.world_size

        set_deterministic(cfg.deterministic)
        seed_everything(cfg.seed)  # same seed on every rank: identical initial weights before DDP's broadcast
        if self.teacher is not None:
            classes = list(self.teacher.class_names)  # the checkpoint's classes: the teacher's, not the data's
        model = build_model(cfg.model, len(classes), cfg.model_kwargs, "model_kwargs")
        self.init_report = None
        if cfg.init_from is not None and self.resume_state is None:
            from ..models.pretrained import init_from
            self.init_report = init_from(model, cfg.init_from, cfg.model, cfg.model_kwargs)
        input_config = resolve_input_config(model.input_config, cfg.input_size, cfg.dct_stats)
        model.input_config = input_config
        self.input_config = input_config
        self.classes = classes
        self.distill = None
        if self.teacher is not None:
            from .distill import Distillation
            self.distill = Distillation(self.teacher, cfg.model_kwargs.get("cut"), input_config, self.device,
                                        cfg.distill_features, cfg.distill_kl, cfg.distill_temperature,
                                        cfg.distill_late)
            if cfg.init_from is None:  # a resumed run's weights replace these
                self.distill.init_student(model, cfg.train_remainder)
            else:  # a later phase: the weights of the one before
                self.distill.freeze(model, cfg.train_remainder)
        if shards is not None:
            self._train_ds, self._val_ds, self.train_loader, self.val_loader = shards.loaders(
                input_config, info.rank, info.world_size, self.per_rank_batch, seed=cfg.seed, device=self.device,
                num_threads=cfg.num_threads, prefetch=loader_prefetch(self.device))
            for ds in (self._train_ds, self._val_ds):
                ds.exif_orientation = cfg.exif_orientation
        elif unlabeled is not None:
            self._build_data(*unlabeled)
        else:
            self._build_data(train_dir, val_dir)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise DataFolderError(f"{cfg.data} has {len(self._train_ds)} training images: fewer than one batch of "
                                  f"{cfg.batch_size}; lower --batch-size")
        self.num_train_images = len(self._train_ds)
        self.num_val_images = len(self._val_ds)

        model.to(self.device)
        if self.distill is not None and cfg.init_from is None and self.resume_state is None:
            # a fresh entry's output gets the teacher's feature statistics (held-out images), then keeps them
            self.distill.match_spread(model, self.val_loader)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model  # the plain module: what checkpoints store and evaluation runs
        train_model = model
        if info.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if cfg.compile:
            train_model = torch.compile(train_model)
        self.train_model = train_model
        self.eval_model = torch.compile(model) if cfg.compile else model

        self.optimizer = build_optimizer(model, cfg)
        total_steps = cfg.epochs * self.steps_per_epoch
        warmup_steps = min(total_steps, round(cfg.warmup_epochs * self.steps_per_epoch))
        self.scheduler = WarmupCosineLR(self.optimizer, total_steps, warmup_steps, cfg.min_lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self._build_recipe()

        # Position and running state; overwritten by a resumed checkpoint.
        self.epoch, self.batch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.best_top1 = -1.0
        self._reset_epoch_sums()
        self.epoch_seconds = 0.0
        self.skipped_batches = 0  # batches too small for BatchNorm after unreadable files were left out
        self.min_batch: int | None = None  # set from the first batch (see _batch_too_small)
        self.bn_values_per_image: int | None = None
        self.fewest_bn_values = math.inf  # fewest values per channel a BatchNorm normalized over in a step

    def _load_teacher(self):
        from ..models.teacher import load_teacher

        return load_teacher(self.config.teacher, self.config.teacher_weights)

    def _build_recipe(self) -> None:
        """MixUp / CutMix and model EMA (jpegnet.engine.recipe); None when off."""
        cfg = self.config
        self.mixer = MixUpCutMix(cfg.mixup, cfg.cutmix, len(self.classes), self.input_config.representation,
                                 smoothing=cfg.label_smoothing, seed=cfg.seed)
        if not self.mixer.enabled:
            self.mixer = None
        self.ema = ModelEma(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        if self.ema is not None and cfg.compile:
            self.eval_model = torch.compile(self.ema.module)
        elif self.ema is not None:
            self.eval_model = self.ema.module

    def _build_data(self, train_dir, val_dir) -> None:
        """Both loaders from the resolved input config (jpegnet.engine.inputs.build_data)."""
        cfg, info, input_config = self.config, self.info, self.input_config
        prefetch = loader_prefetch(self.device)
        common = dict(batch_size=self.per_rank_batch, device=self.device, num_threads=cfg.num_threads,
                      seed=cfg.seed, prefetch=prefetch, exif_orientation=cfg.exif_orientation)
        train_ds, self.train_loader = build_data(
            train_dir, input_config, train=True, drop_last=True, **common,
            sampler=lambda ds: torch.utils.data.DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank,
                                                                   shuffle=True, seed=cfg.seed, drop_last=True))
        self.train_sampler = self.train_loader.sampler
        val_ds, self.val_loader = build_data(val_dir, input_config, train=False, **common,
                                             sampler=lambda ds: ShardSampler(len(ds), info.rank, info.world_size))
        if self.teacher is None and (list(train_ds.classes) != self.classes or list(val_ds.classes) != self.classes):
            raise DataFolderError(f"the data pipeline found classes {list(train_ds.classes)[:5]}... that differ "
                                  f"from the folder check {self.classes[:5]}...")
        self._train_ds, self._val_ds = train_ds, val_ds

    def _reset_epoch_sums(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros(2, dtype=torch.int64, device=self.device)
        self.seen = torch.zeros((), dtype=torch.int64, device=self.device)

    def _restore(self, state: dict) -> None:
        load_model_state(self.model, state["model"], "resume checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch, self.global_step = state["epoch"], state["batch"], state["global_step"]
        if self.batch > self.steps_per_epoch:
            raise CheckpointError(f"checkpoint position (batch {self.batch}) is past the {self.steps_per_epoch} "
                                  f"batches of an epoch: the training set changed since it was written")
        sums = state["epoch_sums"]
        self.loss_sum = torch.tensor(sums["loss_sum"], dtype=torch.float64, device=self.device)
        self.correct = torch.tensor(sums["correct"], dtype=torch.int64, device=self.device)
        self.seen = torch.tensor(sums["seen"], dtype=torch.int64, device=self.device)
        self.epoch_seconds = float(sums.get("seconds", 0.0))
        self.history = [dict(row) for row in state.get("history", [])]
        self.best_top1 = float(state.get("best_top1", -1.0))
        self.skipped_batches = int(state.get("skipped_batches", 0))
        if state.get("class_names") != self.classes:
            raise CheckpointError("the checkpoint's classes differ from the data folder's classes")
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError("the checkpoint has no EMA weights; resume without --ema")
            self.ema.load_state_dict(state["ema"])

    # --- checkpoints ---------------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "model_name": self.config.model,
            "model_kwargs": dict(self.config.model_kwargs),
            "num_classes": len(self.classes),
            "class_names": list(self.classes),
            "input_config": self.input_config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "global_step": self.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.info.world_size,
            "epoch_sums": {"loss_sum": float(self.loss_sum), "correct": self.correct.tolist(),
                           "seen": int(self.seen), "seconds": self.epoch_seconds},
            "history": [dict(row) for row in self.history],
            "best_top1": self.best_top1,
            "skipped_batches": self.skipped_batches,
            "train_config": self.config.to_dict(),
            "rng": capture_rng_state(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def _save(self, name: str = "last.pt", state: dict | None = None) -> None:
        state = state if state is not None else self._state()
        self._check_finite(state)
        if self.info.is_main:
            save_checkpoint(state, Path(self.config.out_dir) / name)
        self._last_save = time.monotonic()
        self._last_saved_step = self.global_step

    def _check_finite(self, state: dict) -> None:
        """Never replace a good checkpoint with a diverged one: the weights, the optimizer's state and the
        epoch's summed loss (nan or inf in any step's loss stays in the sum) must all be finite."""
        tensors = [t for t in state["model"].values() if t.is_floating_point()]
        for slot in state["optimizer"].get("state", {}).values():
            tensors += [t for t in slot.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
        finite = all(bool(torch.isfinite(t).all()) for t in tensors)
        if finite and math.isfinite(state["epoch_sums"]["loss_sum"]):
            return
        kept = (f"last.pt from step {self._last_saved_step} is kept" if self._last_saved_step is not None
                else "no checkpoint was written")
        raise TrainingError(f"training diverged: the loss or the weights became nan/inf by step {self.global_step} "
                            f"(lr {self.config.resolved_lr():g}); {kept}. Lower --lr or --wd, or use --precision "
                            f"fp32")

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self) -> dict:
        self._build()
        cfg, info = self.config, self.info
        if self.resume_state is not None:
            self._restore(self.resume_state)
        if self.resume_state is not None and run_is_complete(self.epoch, cfg.epochs):
            train_logger.info("run complete: all %d epochs of %s are done; nothing to train (give --epochs N "
                              "above %d to train longer)", cfg.epochs, cfg.out_dir, cfg.epochs)
            last = self.history[-1] if self.history else {}
            return {"best_top1": self.best_top1, "final": last, "out_dir": str(cfg.out_dir),
                    "is_main": info.is_main, "checkpoint": str(Path(cfg.out_dir) / "last.pt"),
                    "history": self.history, "complete": True}
        self.logger = RunLogger(cfg.out_dir, is_main=info.is_main, tensorboard=cfg.tensorboard,
                                purge_step=self.global_step if self.resume_state is not None else None)
        self._print_header()
        if info.is_main:
            write_run_config(cfg.out_dir, self._resolved_config())
        if info.is_main:
            self._remove_stale_temporaries()
        if self.resume_state is not None:
            # Last, so nothing done while setting up (model init, loader construction) consumes these streams.
            restore_rng_state(self.resume_state["rng"])
            self.resume_state = None
        self._last_save = time.monotonic()
        self._last_saved_step = self.global_step if self.global_step else None
        try:
            while self.epoch < cfg.epochs:
                self._train_epoch()
                self._end_epoch()
        finally:
            self.logger.close()
        last = self.history[-1] if self.history else {}
        return {"best_top1": self.best_top1, "final": last, "out_dir": str(cfg.out_dir), "is_main": info.is_main,
                "checkpoint": str(Path(cfg.out_dir) / "last.pt"), "history": self.history,
                "skipped_batches": self.skipped_batches}

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes a killed run never finished (the real files are intact)."""
        out = Path(self.config.out_dir)
        for name in ("last.pt", "best.pt", "log.csv"):
            for tmp in out.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _print_header(self) -> None:
        cfg = self.config
        where = f"{self.info.world_size} processes" if self.info.distributed else str(self.device)
        self.logger.print(
            f"jpegnet train: {cfg.model} ({self.input_config.representation}, "
            f"{self.input_config.input_size[0]}x{self.input_config.input_size[1]}) on {where}, "
            f"{self.num_train_images} train / {self.num_val_images} val images, {len(self.classes)} classes, "
            f"{self.steps_per_epoch} steps/epoch of {cfg.batch_size}, {cfg.precision}")
        self.logger.print(f"optimizer {cfg.optimizer}: peak lr {cfg.resolved_lr():.4g}, weight decay "
                          f"{cfg.resolved_weight_decay():.4g}" + (f", momentum {cfg.momentum}"
                                                                  if cfg.optimizer == "sgd" else ""))
        if self.init_report is not None:
            self.logger.print(self.init_report.summary())
        if self.batch or self.epoch:
            self.logger.print(f"resuming at epoch {self.epoch + 1}, batch {self.batch}/{self.steps_per_epoch}")

    def _resolved_config(self) -> dict:
        """What config.json records: every option after defaults, the input config, the data, versions."""
        from .runs import versions

        cfg = self.config
        resolved = dict(cfg.to_dict(), lr=cfg.resolved_lr(), weight_decay=cfg.resolved_weight_decay())
        return {"model": cfg.model, "representation": self.input_config.representation,
                "train_config": resolved, "input_config": self.input_config.to_dict(),
                "classes": list(self.classes), "num_train_images": self.num_train_images,
                "num_val_images": self.num_val_images, "steps_per_epoch": self.steps_per_epoch,
                "world_size": self.info.world_size, "device": str(self.device),
                "init_from": self.init_report.to_dict() if self.init_report is not None else None,
                "versions": versions()}

    def _progress(self):
        from tqdm.auto import tqdm

        show = self.config.progress
        # tqdm's disable=None: shown on a terminal only, so logs of batch jobs stay free of bar redraws.
        disable = True if (not self.info.is_main or show is False) else (False if show else None)
        return tqdm(total=self.steps_per_epoch, initial=self.batch, desc=f"epoch {self.epoch + 1}/"
                    f"{self.config.epochs}", unit="step", leave=False, dynamic_ncols=True, disable=disable)

    def _train_epoch(self) -> None:
        cfg = self.config
        if self.batch >= self.steps_per_epoch:
            return  # killed during the end-of-epoch evaluation: only that remains to do
        self.train_model.train()
        start_batch = self.batch
        self.train_loader.set_epoch(self.epoch, start_batch=self.batch)
        bar = self._progress()
        # Without a bar (no terminal, or --no-progress) step lines go to the log every log_every steps.
        step_log = StepLogger(enabled=self.info.is_main and bool(bar.disable), epoch=self.epoch + 1,
                              epochs=cfg.epochs, steps=self.steps_per_epoch)
        window_start, window_images = time.perf_counter(), 0
        epoch_start = time.perf_counter() - self.epoch_seconds
        # While the bar is drawn, log lines (a skipped file's warning, the loader's epoch summary) go through its
        # writer: printed above the bar, which is then redrawn, instead of into it.
        lines = contextlib.ExitStack()
        if not bar.disable:
            lines.enter_context(console_lines_through(lambda line: bar.write(line, file=sys.stderr)))
        try:
            for inputs, targets in self.train_loader:
                if self._batch_too_small(inputs, targets.shape[0]):
                    # Not a step: global_step and the schedule stay put, as for a batch of unreadable files only.
                    self.batch = self.train_loader.position
                    self.skipped_batches += 1
                    bar.update(1)
                    continue
                loss, logits, targets = self._step(inputs, targets)
                with torch.no_grad():
                    n = inputs[0].shape[0]
                    self.loss_sum += loss.detach().double() * n
                    if logits is not None:  # None: a feature-only distillation step (no logits computed)
                        self.correct += torch.stack(topk_correct(logits.detach(), targets))
                    self.seen += n
                # The loader's position counts a left-out all-unreadable batch too, so a resume from a
                # checkpoint written after one starts exactly where this run goes on.
                self.batch = self.train_loader.position
                self.global_step += 1
                window_images += n * self.info.world_size
                bar.update(1)
                if self.global_step % cfg.log_every == 0 or self.batch == self.steps_per_epoch:
                    loss_value = float(loss.detach())
                    if not math.isfinite(loss_value):
                        kept = (f"last.pt from step {self._last_saved_step} is kept"
                                if self._last_saved_step is not None else "no checkpoint was written")
                        raise TrainingError(f"the training loss became {loss_value} at step {self.global_step} "
                                            f"(lr {cfg.resolved_lr():g}); {kept}. Lower --lr or --wd, or use "
                                            f"--precision fp32{self._batchnorm_hint()}")
                    now = time.perf_counter()
                    rate = window_images / max(now - window_start, 1e-9)
                    window_start, window_images = now, 0
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}")
                    step_log.step(self.batch, self.global_step, loss_value, lr, rate)
                    self.logger.scalars({"train/loss": loss_value, "train/lr": lr, "train/images_per_s": rate},
                                        self.global_step)
                self.epoch_seconds = time.perf_counter() - epoch_start
                if self._checkpoint_due():
                    self._save()
        finally:
            bar.close()
            lines.close()
        self._report_unreadable(start_batch)
        # The loader leaves out a batch whose files were all unreadable; the epoch is over all the same.
        self.batch = self.steps_per_epoch

    def _report_unreadable(self, start_batch: int) -> None:
        """A loud warning with the count when a large share of this process's training files could not be
        read this epoch (an epoch without any usable image is an error, raised at its end)."""
        skipped = self.train_loader.skipped
        tried = (self.steps_per_epoch - start_batch) * self.per_rank_batch
        if tried and len(skipped) > UNREADABLE_WARN_SHARE * tried:
            path, reason = skipped[0]
            self.logger.print(f"WARNING: epoch {self.epoch + 1}: {len(skipped)} of {tried} training files "
                              f"({100.0 * len(skipped) / tried:.0f}%) could not be read and were skipped "
                              f"(first: {path}: {reason.splitlines()[0] if reason else 'unreadable'})")

    def _batch_too_small(self, inputs: tuple[torch.Tensor, ...], n: int) -> bool:
        """Whether this batch, made smaller by skipped unreadable files, is too small for the model's
        BatchNorm (one image when a feature map is 1x1); warns once per such batch. With several processes
        every one must skip the same step (DDP's gradient all-reduce would wait forever for a missing rank),
        so they agree through an all-reduce, done only for models that can meet such a batch at all."""
        if self.min_batch is None:  # the first batch tells the feature-map sizes at this input size
            self.bn_values_per_image = batchnorm_values_per_image(self.model, inputs)
            self.min_batch = smallest_trainable_batch(self.bn_values_per_image)
            if self.per_rank_batch < self.min_batch:  # every batch would be skipped: say so before any
                size = self.input_config.input_size
                raise ConfigError(f"--batch-size {self.config.batch_size} gives {self.per_rank_batch} image per "
                                  f"process, and BatchNorm in {self.config.model} needs at least "
                                  f"{self.min_batch} at {size[0]}x{size[1]} (a feature map is 1x1): use a larger "
                                  f"--batch-size or --input-size")
        if self.min_batch <= 1:
            return False
        small = n < self.min_batch
        if self.info.distributed:
            small = bool(all_reduce_sum(torch.tensor([int(small)], dtype=torch.int64, device=self.device))[0])
        if small:
            size = self.input_config.input_size
            where = "a process's share" if self.info.distributed else "the batch"
            self.logger.print(
                f"WARNING: epoch {self.epoch + 1}: skipped batch {self.train_loader.position}/"
                f"{self.steps_per_epoch}: after unreadable files were left out, {where} held fewer than "
                f"{self.min_batch} images, and BatchNorm in {self.config.model} cannot train on that at "
                f"{size[0]}x{size[1]} (a feature map is 1x1); the run goes on with the next batch")
        return small

    def _batchnorm_hint(self) -> str:
        """For a diverged run: BatchNorm over 2 values per channel (2 images with 1x1 feature maps) outputs
        +-1 whatever the inputs, and its gradient grows as 1 / |difference of the two|: the weights blow up
        within a step or two, at any learning rate but a tiny one (seen at 32 px with batches of 2)."""
        if self.fewest_bn_values > 2:
            return ""
        size = self.input_config.input_size
        return (f"; or, more likely here: a BatchNorm layer of {self.config.model} normalized over only "
                f"{self.fewest_bn_values} values per channel in a step (1x1 feature maps at {size[0]}x{size[1]}), "
                f"which makes its gradients explode: use a larger --batch-size or --input-size")

    def _step(self, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor):
        cfg = self.config
        inputs = self._jitter(inputs)
        soft = None
        if self.mixer is not None and self.distill is not None:
            # unlabeled photos: the teacher's outputs on the mixed input are the targets (function matching)
            inputs, _, _ = self.mixer.mix_inputs(inputs, self.global_step)
        elif self.mixer is not None:
            inputs, soft, _ = self.mixer(inputs, targets, self.global_step)
        if cfg.channels_last:
            inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in inputs)
        self.optimizer.zero_grad(set_to_none=True)
        # Gradient accumulation: the batch in grad_accum_steps micro-batches, each loss weighted by its share
        # of the batch, so the summed gradient is the whole batch's (BatchNorm sees the micro-batches).
        n = targets.shape[0]
        # Never a micro-batch too small for BatchNorm (see _batch_too_small): such a batch (one that skipped
        # files made smaller) is split into fewer parts. Any split that worked before is unchanged.
        parts = max(1, min(cfg.grad_accum_steps, n // (self.min_batch or 1)))
        chunks = torch.arange(n, device=targets.device).tensor_split(parts)
        if self.bn_values_per_image is not None:
            self.fewest_bn_values = min(self.fewest_bn_values, (n // parts) * self.bn_values_per_image)
        loss_sum, logits_parts, target_parts = 0.0, [], []
        for rows in chunks:
            if self.distill is not None:  # the teacher's outputs are the targets; its top-1 counts as the label
                loss, logits, top = self.distill.step(self.train_model, tuple(x[rows] for x in inputs),
                                                      self.device, cfg.precision)
                if top is not None:
                    target_parts.append(top)
            else:
                with autocast_context(self.device, cfg.precision):
                    logits = self.train_model(*(x[rows] for x in inputs))
                    loss = (soft_cross_entropy(logits.float(), soft[rows]) if soft is not None
                            else self.criterion(logits.float(), targets[rows]))
            self.scaler.scale(loss * (len(rows) / n)).backward()
            loss_sum = loss_sum + loss.detach() * (len(rows) / n)
            if logits is not None:
                logits_parts.append(logits.detach())
        if cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        if not logits_parts:
            return loss_sum, None, None
        return loss_sum, torch.cat(logits_parts), (torch.cat(target_parts) if target_parts else targets)

    def _jitter(self, inputs):
        """Brightness / contrast / saturation jitter on the normalized batch (jpegnet.data.jitter)."""
        cfg = self.config
        if not (cfg.brightness or cfg.contrast or cfg.saturation):
            return inputs
        from ..data.jitter import draw_jitter, jitter_dct_normalized, jitter_rgb_normalized
        from ..input_config import normalization

        b, c, s = (t.to(inputs[0].device) for t in draw_jitter(cfg.seed, self.global_step, inputs[0].shape[0],
                                                                cfg.brightness, cfg.contrast, cfg.saturation))
        mean, std = normalization(self.input_config)
        if self.input_config.representation == "dct":
            return jitter_dct_normalized(*inputs, mean, std, b, c, s)
        return (jitter_rgb_normalized(inputs[0], mean, std, b, c, s),)

    def _checkpoint_due(self) -> bool:
        cfg = self.config
        if cfg.save_every_steps and self.global_step % cfg.save_every_steps == 0:
            return True
        if cfg.save_every_minutes and time.monotonic() - self._last_save >= 60.0 * cfg.save_every_minutes:
            # Only rank 0 writes, and every rank holds the same weights, so ranks need not agree on when.
            return True
        return False

    def _end_epoch(self) -> None:
        sums = all_reduce_sum(torch.cat([self.loss_sum.reshape(1), self.correct.double(),
                                         self.seen.double().reshape(1)]))
        if float(sums[3]) == 0 and self.skipped_batches:
            raise TrainingError(f"epoch {self.epoch + 1} trained on no batch: each one was unreadable or, after "
                                f"its unreadable files were left out, too small for BatchNorm (see the warnings "
                                f"above); nothing was saved")
        if float(sums[3]) == 0:
            raise TrainingError(f"epoch {self.epoch + 1} had no usable training image: all "
                                f"{self.num_train_images} files under {Path(self.config.data) / 'train'} "
                                f"could not be read (see the warnings above); nothing was trained or saved")
        seen = float(sums[3])
        val_log = StepLogger(enabled=self.info.is_main, epoch=self.epoch + 1, epochs=self.config.epochs,
                             steps=len(self.val_loader), what="validation")
        if self.distill is not None:
            from .distill import evaluate_distillation
            metrics = evaluate_distillation(self.eval_model, self.distill, self.val_loader, self.device,
                                            precision=self.config.precision,
                                            on_batch=lambda done: val_log.validation(done, self.config.log_every))
        else:
            metrics = evaluate(self.eval_model, self.val_loader, self.device, precision=self.config.precision,
                               num_classes=len(self.classes), criterion=self.criterion,
                               channels_last=self.config.channels_last,
                               on_batch=lambda done: val_log.validation(done, self.config.log_every))
        if metrics["images"] == 0:
            raise TrainingError(f"no validation image of {Path(self.config.data) / 'val'} could be read; "
                                f"nothing was saved for epoch {self.epoch + 1}")
        if not math.isfinite(metrics["loss"]):
            raise TrainingError(f"the validation loss became {metrics['loss']} after epoch {self.epoch + 1}; "
                                f"the checkpoints of earlier epochs are kept. Lower --lr or --wd, or use "
                                f"--precision fp32{self._batchnorm_hint()}")
        row = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(sums[0]) / seen,
            "train_top1": 100.0 * float(sums[1]) / seen,
            "train_top5": 100.0 * float(sums[2]) / seen,
            "val_loss": metrics["loss"],
            "val_top1": metrics["top1"],
            "val_top5": metrics["top5"],
            "train_images_per_s": float(sums[3]) / max(self.epoch_seconds, 1e-9),
            "val_images_per_s": metrics["images_per_s"],
            "epoch_seconds": self.epoch_seconds,
        }
        if self.distill is not None:  # top-1 is agreement with the teacher; the entry's error at the cut
            row["val_feature_error"] = metrics["feature_error"]
        self.history.append(row)
        improved = row["val_top1"] > self.best_top1
        if improved:
            self.best_top1 = row["val_top1"]
        self.logger.epoch(self.history, self.global_step)
        agree = " (agreement with the teacher)" if self.distill is not None else ""
        feature = (f" feature error {row['val_feature_error']:.3f}" if self.distill is not None else "")
        self.logger.print(f"epoch {row['epoch']}/{self.config.epochs}: train loss {row['train_loss']:.4f} "
                          f"top-1 {row['train_top1']:.2f}% | val loss {row['val_loss']:.4f} top-1 "
                          f"{row['val_top1']:.2f}%{agree} top-5 {row['val_top5']:.2f}%{feature} | "
                          f"{row['train_images_per_s']:.1f} train img/s")
        self.epoch += 1
        self.batch = 0
        self._reset_epoch_sums()
        self.epoch_seconds = 0.0
        state = self._state()
        if improved:
            self._save("best.pt", state)
            if self.info.is_main:
                self._save_best_weights()
        self._save("last.pt", state)

    def _save_best_weights(self) -> None:
        """best.safetensors: the evaluated weights (EMA when on) and what rebuilds the model, no training
        state; `create_model(name, checkpoint_path=...)` loads it."""
        weights = (self.ema.module if self.ema is not None else self.model).state_dict()
        write_best_weights(Path(self.config.out_dir) / "best.safetensors", weights, model_name=self.config.model,
                           model_kwargs=self.config.model_kwargs, class_names=self.classes,
                           input_config=self.input_config.to_dict())
