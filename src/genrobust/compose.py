"""C∘G_c: a classifier wired behind the generator of one class, as one module from latents to logits."""

from __future__ import annotations

import torch
from torch import nn

from .errors import GenrobustError
from .models.generators import GeneratorFamily


class Composed(nn.Module):
    """latent z (N, d) → image G_c(z) → logits C(G_c(z)) (N, K)."""

    def __init__(self, classifier: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.generator(z))


def check_compatible(classifier: nn.Module, family: GeneratorFamily, device: torch.device | str = "cpu") -> int:
    """Run one latent through every class and check shapes, logit count and finiteness; return K."""
    with torch.no_grad():
        z = torch.zeros(2, family.latent_dim, device=device)
        for c in range(len(family)):
            images = family[c](z)
            if not torch.isfinite(images).all():
                raise GenrobustError(f"generator of class {c} produced NaN or infinite pixels")
            try:
                logits = classifier(images)
            except RuntimeError as exc:
                raise GenrobustError(
                    f"the classifier cannot take the generator's images of shape {tuple(images.shape[1:])}: {exc}"
                ) from None
            if logits.ndim != 2 or logits.shape[0] != 2:
                raise GenrobustError(f"the classifier must return logits of shape (N, K), got {tuple(logits.shape)}")
            if logits.shape[1] != len(family):
                raise GenrobustError(
                    f"the classifier returns {logits.shape[1]} logits but the generator family "
                    f"has {len(family)} classes"
                )
            if not torch.isfinite(logits).all():
                raise GenrobustError(f"the classifier returned NaN or infinite logits on class {c}")
    return len(family)
