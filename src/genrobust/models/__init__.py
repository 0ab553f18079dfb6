"""Networks (the paper's classifiers and GANs), safetensors I/O, and the built-in model zoo."""

from .classifiers import CLASSIFIER_ARCHS, ConvClassifier, ConvClassifierConfig, build_classifier
from .generators import GeneratorFamily, MLPDiscriminator, MLPGANConfig, MLPGenerator
from .io import ModelFileError, load_model, read_metadata, save_model
from .layers import ImageAdapter
from .zoo import (
    ZOO,
    ZooEntry,
    list_models,
    load_classifier,
    load_generators,
    load_variation,
    model_info,
    save_classifier,
    save_generators,
)

__all__ = [
    "CLASSIFIER_ARCHS",
    "ZOO",
    "ConvClassifier",
    "ConvClassifierConfig",
    "GeneratorFamily",
    "ImageAdapter",
    "MLPDiscriminator",
    "MLPGANConfig",
    "MLPGenerator",
    "ModelFileError",
    "ZooEntry",
    "build_classifier",
    "list_models",
    "load_classifier",
    "load_generators",
    "load_model",
    "load_variation",
    "model_info",
    "read_metadata",
    "save_classifier",
    "save_generators",
    "save_model",
]
