"""Training: the paper's classifiers (standard, augmented, PGD, distillation) and GANs, resumable."""

from .classifier import ClassifierRecipe, TrainResult, pgd_linf, train_classifier
from .gan import GANRecipe, train_gan
from .generator import GeneratorRecipe, train_generator

__all__ = [
    "ClassifierRecipe",
    "GANRecipe",
    "GeneratorRecipe",
    "TrainResult",
    "pgd_linf",
    "train_classifier",
    "train_gan",
    "train_generator",
]
