"""Model zoo: one module per family, all registered in `registry`.

Importing this package imports every family so that their models are registered.
"""
from .registry import (FeatureExtractor, InputConfig, JpegNetModel, UnknownModelError, example_inputs, is_model,
                       list_models, model_builder, register_model, register_variant)
from .factory import create_model
from . import resnet, dct_resnet, efficientnet, cspnet, vgnet, hetnet, octresnet, dct_adapter, converted  # noqa: F401  (registration)
from .scaling import compound_scale, scale_model
from .weights import import_weights

__all__ = ["FeatureExtractor", "InputConfig", "JpegNetModel", "UnknownModelError", "compound_scale", "create_model",
           "example_inputs", "import_weights", "is_model", "list_models", "model_builder", "register_model",
           "register_variant", "scale_model"]
