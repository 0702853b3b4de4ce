"""Folders of JPEG files, or tar shards of them (JpegShards), → training and evaluation batches (DCT
coefficients, or RGB for baselines).

    ds = JpegFolder.for_model(root, model.input_config, train=True)   # or JpegFolder(root, 'dct', train=True, ...)
    loader = create_loader(ds, 256, shuffle=True, device='cuda')
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for (y, cbcr), target in loader: ...
"""
from .augment import center_crop_windows, random_resized_crop_windows, uniforms
from .batch import build_batch, build_batch_from
from .dct_resample import DEFAULT_DCT_SCALE, UnsupportedImage, build_dct_batch, decode_crops, image_planes
from .dct_stats import NoReadableImage, compute_dct_stats
from .folder import JPEG_EXTENSIONS, JpegFolder
from .loader import JpegLoader, create_loader
from .scan import FolderScan
from .shard_format import PipeCommandError, ShardError, ShardNotFoundError, expand_braces, is_shard_spec
from .shard_labels import ShardLabelError
from .shard_writer import write_shards
from .shards import JpegShards, ShardLoader

__all__ = ["DEFAULT_DCT_SCALE", "FolderScan", "JPEG_EXTENSIONS", "JpegFolder", "JpegLoader", "JpegShards",
           "NoReadableImage", "PipeCommandError",
           "ShardError", "ShardLabelError", "ShardLoader", "ShardNotFoundError", "UnsupportedImage", "build_batch",
           "build_batch_from",
           "build_dct_batch", "center_crop_windows", "compute_dct_stats", "create_loader", "decode_crops",
           "expand_braces", "image_planes", "is_shard_spec", "random_resized_crop_windows", "uniforms",
           "write_shards"]
