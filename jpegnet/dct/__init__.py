"""Pure tensor maths on DCT coefficients: dequantize, block IDCT / DCT, exact block crop and mirror, chroma
subsampling to 4:2:0, and banded crop + resize + mirror operators (see transforms.py). Knows nothing of files
or models. `pixels` holds the numpy reference reconstruction used by tests."""
from .transforms import (BLOCK, CUBIC_A, INTERPOLATIONS, BandOperator, apply_resample, block_dct, block_idct,
                         check_interpolation, chroma_to_420, crop_blocks, dct_matrix, dequantize, frequencies_kept,
                         halve_blocks, hflip_blocks, low_frequency_index, resample_filter, resample_operator,
                         resample_support, scaled_block_idct, vflip_blocks)

__all__ = ["BLOCK", "BandOperator", "CUBIC_A", "INTERPOLATIONS", "apply_resample", "block_dct", "block_idct",
           "check_interpolation", "chroma_to_420", "crop_blocks", "dct_matrix", "dequantize", "frequencies_kept",
           "halve_blocks", "hflip_blocks", "low_frequency_index", "resample_filter", "resample_operator",
           "resample_support", "scaled_block_idct", "vflip_blocks"]
