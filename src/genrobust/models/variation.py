"""An image-conditional generator: an image's thumbnail ⊕ a latent → a full image (a conditional VAE).

The competition's generator benchmarks (VNN-COMP's cGAN family) verify a different shape of question than
genrobust's per-class GANs: a generator that takes part of its input from a real image (here its thumbnail,
the image averaged over ``pool`` × ``pool`` blocks) and the rest from a latent, before a classifier. In a
VNN-LIB instance the thumbnail's inputs are fixed (lower = upper) and only the latent moves, in a box whose
sides follow how far each latent dimension actually varies (``latent_std``): a box that is not a cube.

The decoder is what the instances verify: ``forward`` takes the flat input ``[thumbnail, z]`` (N, P + k) and is
a pure chain of modules (ReLU MLP, sigmoid, unflatten), so the bound engine and the ONNX exporter read it as
they read any classifier. The encoder only places the instances' centres: z = the encoder's mean for a real
test image, so that the generated image is that image's reconstruction and the latent box is its neighbourhood.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import GenrobustError


@dataclass(frozen=True)
class VariationConfig:
    """Sizes of the image-conditional VAE (decoder: thumbnail ⊕ latent → hidden ReLU layers → sigmoid image)."""

    image_size: int = 28
    pool: int = 4  # the thumbnail averages pool × pool blocks: 7 × 7 = 49 fixed inputs for MNIST
    latent_dim: int = 8
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if self.image_size % self.pool or self.latent_dim < 1 or not self.hidden or min(self.hidden) < 1:
            raise GenrobustError(f"invalid variation generator sizes: {self}")

    @property
    def thumb_numel(self) -> int:
        return (self.image_size // self.pool) ** 2

    @property
    def input_dim(self) -> int:
        return self.thumb_numel + self.latent_dim

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @staticmethod
    def from_dict(d: dict) -> VariationConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (256, 256)))
        return VariationConfig(**d)


def _relu_mlp(sizes: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, o in itertools.pairwise(sizes):
        layers += [nn.Linear(i, o), nn.ReLU()]
    return layers


class VariationGenerator(nn.Module):
    """``forward([thumbnail, z])`` (N, P + k) → image (N, 1, S, S) in (0, 1); ``encode`` and ``thumbnail`` give
    a real image's latent mean and condition. ``latent_std`` (k,): the spread of the encoder's means over the
    training images, per dimension (the widths of the instances' latent boxes, in these units)."""

    def __init__(self, config: VariationConfig = VariationConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.decoder = nn.Sequential(
            *_relu_mlp([c.input_dim, *c.hidden]),
            nn.Linear(c.hidden[-1], c.image_size**2),
            nn.Sigmoid(),
            nn.Unflatten(1, (1, c.image_size, c.image_size)),
        )
        self.encoder = nn.Sequential(*_relu_mlp([c.image_size**2 + c.thumb_numel, *reversed(c.hidden)]))
        self.to_latent = nn.Linear(c.hidden[0], 2 * c.latent_dim)  # mean and log-variance
        self.register_buffer("latent_std", torch.ones(c.latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    def thumbnail(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) images in [0, 1] → (N, P) block averages, the generator's fixed condition."""
        s, p = self.config.image_size, self.config.pool
        if images.shape[1:] != (1, s, s):
            raise GenrobustError(f"the variation generator takes images of shape (N, 1, {s}, {s}), got "
                                 f"{tuple(images.shape)}")  # fmt: skip
        return nn.functional.avg_pool2d(images.float(), p).flatten(1)

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's mean and log-variance of z given the images (and their thumbnails)."""
        h = self.encoder(torch.cat([images.float().flatten(1), self.thumbnail(images)], 1))
        mean, logvar = self.to_latent(h).chunk(2, dim=1)
        return mean, logvar.clamp(-12, 8)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.posterior(images)[0]

    def generate(self, thumbs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([thumbs, z.to(thumbs.dtype)], 1))

    def variations(self, images: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, k, 1, S, S): k images per input from its thumbnail and latents drawn around its latent mean
        (mean + ``latent_std`` · N(0, I)): what the generator makes of one image's neighbourhood."""
        thumbs, mean = self.thumbnail(images), self.encode(images)
        n, d = mean.shape
        z = mean[:, None] + self.latent_std * torch.randn(n, k, d, generator=generator).to(mean)
        out = self.generate(thumbs.repeat_interleave(k, 0), z.reshape(n * k, d))
        return out.reshape(n, k, *out.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise GenrobustError(f"the variation generator takes (N, {self.input_dim}) inputs (thumbnail ⊕ latent), "
                                 f"got {tuple(x.shape)}")  # fmt: skip
        return self.decoder(x)

    def as_chain(self) -> nn.Sequential:
        """The decoder alone (the module VNN-LIB instances verify): flat [thumbnail, z] → image."""
        return self.decoder


class VariationModel(nn.Sequential):
    """classifier ∘ decoder as one chain: flat [thumbnail, z] (N, P + k) → logits (the instances' network)."""

    def __init__(self, classifier: nn.Module, generator: VariationGenerator) -> None:
        super().__init__(generator.as_chain(), classifier)
