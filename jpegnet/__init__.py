"""jpegnet: convolutional networks straight from JPEG DCT coefficients.

The reader (`read_coefficients`, `read_coefficients_batch`, `JpegCoefficients`, `JpegError`) loads without
torch; the model API (`create_model`, `list_models`, `import_weights`) imports torch on first use.
"""
from .errors import JpegnetError
from .codec import (JpegCoefficients, JpegError, JpegHeader, read_coefficients, read_coefficients_batch,
                    read_header, read_headers_batch)

__version__ = "0.1.0"

_MODEL_API = {"create_model", "list_models", "import_weights", "InputConfig", "is_model", "compound_scale",
              "scale_model"}


def __getattr__(name):
    if name in _MODEL_API:
        from . import models
        return getattr(models, name)
    raise AttributeError(f"module 'jpegnet' has no attribute {name!r}")


__all__ = ["JpegCoefficients", "JpegError", "JpegnetError", "JpegHeader", "read_coefficients", "read_coefficients_batch",
           "read_header", "read_headers_batch",
           "create_model", "list_models", "import_weights", "InputConfig", "compound_scale", "scale_model",
           "__version__"]
