"""The paper's convolutional classifiers: four unpadded 3×3 convolutions, two dense layers, ten logits.

Input: images in [0, 1] of shape (N, 1, 28, 28). Output: logits (N, 10). The three sizes differ only in
widths (a, b, c): conv channels (a, a, b, b) and dense width c.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import GenrobustError


@dataclass(frozen=True)
class ConvClassifierConfig:
    """Widths of :class:`ConvClassifier`; stored beside the weights so a file rebuilds its own network."""

    a: int
    b: int
    c: int
    num_classes: int = 10
    image_size: int = 28
    in_channels: int = 1
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


CLASSIFIER_ARCHS: dict[str, ConvClassifierConfig] = {
    "small": ConvClassifierConfig(32, 64, 200),
    "medium": ConvClassifierConfig(64, 128, 256),
    "large": ConvClassifierConfig(64, 128, 512),
}


class ConvClassifier(nn.Module):
    """conv(a)–conv(a)–conv(b)–conv(b) (3×3, no padding, ReLU), flatten, 2 × dense(c)+ReLU+dropout, dense(10)."""

    def __init__(self, config: ConvClassifierConfig) -> None:
        super().__init__()
        self.config = config
        a, b, c = config.a, config.b, config.c
        side = config.image_size - 4 * 2
        if side < 1:
            raise GenrobustError(f"image_size {config.image_size} too small for four unpadded 3×3 convolutions")
        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, a, 3),
            nn.ReLU(),
            nn.Conv2d(a, a, 3),
            nn.ReLU(),
            nn.Conv2d(a, b, 3),
            nn.ReLU(),
            nn.Conv2d(b, b, 3),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(b * side * side, c),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(c, c),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(c, config.num_classes),
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(arch: str | ConvClassifierConfig) -> ConvClassifier:
    """A freshly initialised classifier of a named architecture (``small``, ``medium``, ``large``)."""
    if isinstance(arch, ConvClassifierConfig):
        return ConvClassifier(arch)
    try:
        return ConvClassifier(CLASSIFIER_ARCHS[arch])
    except KeyError:
        raise GenrobustError(
            f"unknown classifier architecture {arch!r}; choose one of {', '.join(CLASSIFIER_ARCHS)}"
        ) from None
