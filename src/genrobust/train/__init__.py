"""Training: the paper's classifiers (standard, augmented, PGD, distillation) and GANs, resumable."""

from .classifier import ClassifierRecipe, TrainResult, pgd_linf, train_classifier
from .gan import GANRecipe, train_gan

__all__ = ["ClassifierRecipe", "GANRecipe", "TrainResult", "pgd_linf", "train_classifier", "train_gan"]
