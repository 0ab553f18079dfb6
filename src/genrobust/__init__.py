"""genrobust: global correctness and robustness of image classifiers against generative models.

A generative model G_c draws realistic images of class c from Gaussian noise; a classifier C is judged on
the composition C∘G_c, with exact statistics and sound certificates.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .attacks import AdversarialExample, AttackResult, attack_latents, realistic_adversarial
from .bounds.engine import BoundOptions
from .data import (
    AugmentConfig,
    Dataset,
    augment_dataset,
    augment_images,
    disjoint_halves,
    list_datasets,
    load_dataset,
    split_halves,
)
from .errors import ChecksumError, DatasetError, DownloadError, GenrobustError, GenrobustWarning, IdxFormatError
from .estimate import CorrectnessResult, global_correctness
from .experiments.generator_quality import measure_coverage
from .models import (
    GeneratorFamily,
    ImageAdapter,
    ModelFileError,
    build_classifier,
    list_models,
    load_classifier,
    load_generators,
    load_variation,
    model_info,
    save_classifier,
    save_generators,
)
from .models.coverage import Coverage
from .rare import RareFailureResult, adaptive_splitting, rare_failure
from .results import load_result
from .stats import Proportion
from .train import ClassifierRecipe, GANRecipe, GeneratorRecipe, train_classifier, train_gan, train_generator
from .verify import LocalResult, RobustnessResult, VerifyOptions, global_robustness, verify_ball

__all__ = [
    "AdversarialExample",
    "AttackResult",
    "AugmentConfig",
    "BoundOptions",
    "ChecksumError",
    "ClassifierRecipe",
    "CorrectnessResult",
    "Coverage",
    "Dataset",
    "DatasetError",
    "DownloadError",
    "GANRecipe",
    "GeneratorFamily",
    "GeneratorRecipe",
    "GenrobustError",
    "GenrobustWarning",
    "IdxFormatError",
    "ImageAdapter",
    "LocalResult",
    "ModelFileError",
    "Proportion",
    "RareFailureResult",
    "RobustnessResult",
    "VerifyOptions",
    "__version__",
    "adaptive_splitting",
    "attack_latents",
    "augment_dataset",
    "augment_images",
    "build_classifier",
    "disjoint_halves",
    "global_correctness",
    "global_robustness",
    "list_datasets",
    "list_models",
    "load_classifier",
    "load_dataset",
    "load_generators",
    "load_result",
    "load_variation",
    "measure_coverage",
    "model_info",
    "rare_failure",
    "realistic_adversarial",
    "save_classifier",
    "save_generators",
    "split_halves",
    "train_classifier",
    "train_gan",
    "train_generator",
    "verify_ball",
]
