"""Folders of JPEG files → training and evaluation batches (DCT coefficients, or RGB for baselines).

    ds = JpegFolder(root, 'dct', train=True, input_size=224)
    loader = create_loader(ds, 256, shuffle=True, device='cuda', input_config=model.input_config)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for (y, cbcr), target in loader: ...
"""
from .augment import center_crop_windows, random_resized_crop_windows, uniforms
from .dct_batch import DEFAULT_DCT_SCALE, UnsupportedImage, build_dct_batch, decode_crops, image_planes
from .folder import JPEG_EXTENSIONS, JpegFolder
from .loader import JpegLoader, build_batch, create_loader
from .stats import compute_dct_stats

__all__ = ["DEFAULT_DCT_SCALE", "JPEG_EXTENSIONS", "JpegFolder", "JpegLoader", "UnsupportedImage",
           "build_batch", "build_dct_batch", "center_crop_windows", "compute_dct_stats", "create_loader",
           "decode_crops",
           "image_planes", "random_resized_crop_windows", "uniforms"]
