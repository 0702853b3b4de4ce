"""Training and evaluation engine: train / evaluate / predict loops, checkpoints, ONNX export and the inference
backends (torch, onnxruntime, openvino), int8 quantization, device resolution, distributed setup, logging, benchmarks.

Uses `jpegnet.data` (JPEG folders to batches) and `jpegnet.models` (the registry); the `jpegnet` command
(`jpegnet.cli`) is a thin layer over the functions here.
"""
from .bench import run_bench
from .checkpoint import (atomic_write, capture_rng_state, load_checkpoint, model_from_checkpoint,
                         restore_rng_state, save_checkpoint)
from .distributed import DistInfo, ShardSampler, cleanup_distributed, init_distributed
from .device import autocast_context, resolve_channels_last, resolve_device, resolve_precision
from .errors import (CheckpointError, ConfigError, DataFolderError, DeviceError, EngineError, OutOfMemoryError,
                     TrainingError)
from .evaluate import evaluate, plot_confusion
from .folders import check_image_folder, check_train_val_folder
from .inference import evaluate_checkpoint, predict_files
from .metrics import confusion_matrix, topk_correct
from .plot import pareto_front, plot_pareto
from ..profile import profile_model
from .schedule import WarmupCosineLR, warmup_cosine_factor
from .shards import write_split_shards
from .dct_stats_file import dataset_dct_stats
from .trainer import TrainConfig, TrainingRun, train
from .visualize_command import visualize
from .zoo import build_model, model_table

__all__ = ["CheckpointError", "ConfigError", "DataFolderError", "DeviceError", "DistInfo", "EngineError",
           "OutOfMemoryError", "ShardSampler", "TrainConfig", "TrainingError", "TrainingRun", "WarmupCosineLR",
           "atomic_write", "autocast_context", "build_model", "capture_rng_state", "check_image_folder",
           "check_train_val_folder", "cleanup_distributed", "confusion_matrix", "dataset_dct_stats", "evaluate",
           "evaluate_checkpoint", "init_distributed", "load_checkpoint", "model_from_checkpoint", "model_table",
           "pareto_front", "plot_confusion", "plot_pareto", "predict_files", "profile_model",
           "resolve_channels_last", "resolve_device", "resolve_precision", "restore_rng_state", "run_bench",
           "save_checkpoint", "topk_correct", "train", "visualize", "warmup_cosine_factor", "write_split_shards"]
