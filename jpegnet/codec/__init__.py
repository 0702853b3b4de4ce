"""bytes → JpegCoefficients: the C extension over libjpeg-turbo and its thin Python face."""
from .errors import JpegError, JpegWarning
from .reader import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, JpegCoefficients, JpegHeader, decode_pixels,
                     read_coefficients, read_coefficients_batch, read_header, read_headers_batch)

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "JpegCoefficients", "JpegError", "JpegHeader", "JpegWarning",
           "decode_pixels", "read_coefficients", "read_coefficients_batch", "read_header", "read_headers_batch"]
