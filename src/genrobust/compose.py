"""C∘G_c: a classifier wired behind the generator of one class, as one module from latents to logits."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .errors import GenrobustError, GenrobustWarning
from .models.generators import GeneratorFamily


class Composed(nn.Module):
    """latent z (N, d) → image G_c(z) → logits C(G_c(z)) (N, K)."""

    def __init__(self, classifier: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.generator(z))


#: Latents per class that :func:`check_compatible` runs (the origin and a fixed random draw).
PROBE = 16


def check_compatible(classifier: nn.Module, family: GeneratorFamily, device: torch.device | str = "cpu") -> int:
    """Run a few latents through every class and check shapes, logit count and finiteness; return K.

    Warns (:class:`GenrobustWarning`) when the classifier and the generators were trained on different datasets
    (their metadata says so) or when a generator's images leave the ``output_range`` its family declares: both
    make a verdict about "the classifier on realistic images" mean less than it seems.
    """
    _warn_datasets(classifier, family)
    lo, hi = family.output_range
    tol = 1e-3 * (hi - lo)
    with torch.no_grad():
        z = torch.randn(PROBE, family.latent_dim, generator=torch.Generator().manual_seed(0))
        z[0] = 0.0
        z = z.to(device)
        for c in range(len(family)):
            images = family[c](z)
            if not torch.isfinite(images).all():
                raise GenrobustError(f"generator of class {c} produced NaN or infinite pixels")
            own = family.display(images) * (hi - lo) + lo  # the generator's own images, before any adapter
            if float(own.min()) < lo - tol or float(own.max()) > hi + tol:
                warnings.warn(
                    f"the generator of class {c} draws pixels in [{float(own.min()):.3g}, {float(own.max()):.3g}], "
                    f"outside the output_range ({lo:g}, {hi:g}) its family declares: declare the range it really "
                    "has, or the adapter will feed the classifier inputs it was not trained on",
                    GenrobustWarning, stacklevel=3,
                )  # fmt: skip
            try:
                logits = classifier(images)
            except RuntimeError as exc:
                raise GenrobustError(
                    f"the classifier cannot take the generator's images of shape {tuple(images.shape[1:])}: {exc}"
                ) from None
            if logits.ndim != 2 or logits.shape[0] != len(z):
                raise GenrobustError(f"the classifier must return logits of shape (N, K), got {tuple(logits.shape)}")
            if logits.shape[1] != len(family):
                raise GenrobustError(
                    f"the classifier returns {logits.shape[1]} logits but the generator family "
                    f"has {len(family)} classes"
                )
            if not torch.isfinite(logits).all():
                raise GenrobustError(f"the classifier returned NaN or infinite logits on class {c}")
    return len(family)


def _warn_datasets(classifier: nn.Module, family: GeneratorFamily) -> None:
    a = (getattr(classifier, "genrobust_meta", None) or {}).get("dataset")
    b = (getattr(family, "genrobust_meta", None) or {}).get("dataset")
    if a and b and a != b:
        warnings.warn(
            f"the classifier was trained on {a} but the generators on {b}: its verdicts on their images say "
            "little about either dataset",
            GenrobustWarning, stacklevel=3,
        )  # fmt: skip
