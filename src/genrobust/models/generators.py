"""The paper's GAN networks and the generator *family* every check works with.

A family answers three questions whatever its inside: the latent dimension, the latent distribution
(N(0, I)), and ``family[c]``, a module from latents (N, d) to images (N, 1, 28, 28) in [0, 1]. Inside is
either one generator per class (the paper) or one class-conditional generator.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import GenrobustError
from .layers import Affine, ConcatConstant


@dataclass(frozen=True)
class MLPGANConfig:
    """Sizes of the paper's fully connected GAN (Keras-GAN style)."""

    latent_dim: int = 10
    hidden: tuple[int, ...] = (256, 512, 1024)
    image_size: int = 28
    negative_slope: float = 0.2
    disc_dropout: float = 0.3
    num_classes: int = 10

    @property
    def image_numel(self) -> int:
        return self.image_size * self.image_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @staticmethod
    def from_dict(d: dict) -> MLPGANConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (256, 512, 1024)))
        return MLPGANConfig(**d)


def _mlp(sizes: list[int], slope: float, dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, o in itertools.pairwise(sizes):
        layers += [nn.Linear(i, o), nn.LeakyReLU(slope)]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return layers


class MLPGenerator(nn.Module):
    """z (N, d) → 256 → 512 → 1024 → 784 (LeakyReLU 0.2, tanh) → image (N, 1, 28, 28) in [0, 1].

    With ``conditional=True`` the input is z concatenated with a one-hot class vector.
    """

    def __init__(self, config: MLPGANConfig = MLPGANConfig(), conditional: bool = False) -> None:
        super().__init__()
        self.config = config
        self.conditional = conditional
        d_in = config.latent_dim + (config.num_classes if conditional else 0)
        self.net = nn.Sequential(
            *_mlp([d_in, *config.hidden], config.negative_slope),
            nn.Linear(config.hidden[-1], config.image_numel),
            nn.Tanh(),
        )
        # tanh's (−1, 1) mapped affinely to the [0, 1] range of the classifiers' inputs, then the image shape.
        # Parameter-free modules: the state dict (and so every saved file) is unchanged.
        self.to_image = nn.Sequential(Affine(0.5, 0.5), nn.Unflatten(1, (1, config.image_size, config.image_size)))

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            if onehot is None:
                raise GenrobustError("a conditional generator needs the class (one-hot) beside z")
            z = torch.cat([z, onehot.to(z.dtype)], dim=1)
        return self.to_image(self.net(z))


class MLPDiscriminator(nn.Module):
    """image → 1024 → 512 → 256 → 1 logit (LeakyReLU 0.2, dropout 0.3); conditional on a one-hot if asked."""

    def __init__(self, config: MLPGANConfig = MLPGANConfig(), conditional: bool = False) -> None:
        super().__init__()
        self.config = config
        self.conditional = conditional
        d_in = config.image_numel + (config.num_classes if conditional else 0)
        hidden = list(reversed(config.hidden))
        self.net = nn.Sequential(
            *_mlp([d_in, *hidden], config.negative_slope, config.disc_dropout), nn.Linear(hidden[-1], 1)
        )

    def forward(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1) * 2 - 1  # the discriminator sees the generator's tanh range
        if self.conditional:
            if onehot is None:
                raise GenrobustError("a conditional discriminator needs the class (one-hot) beside x")
            h = torch.cat([h, onehot.to(h.dtype)], dim=1)
        return self.net(h).squeeze(1)


class ClassGenerator(nn.Module):
    """A conditional generator with its class fixed: latents (N, d) → images of that class."""

    def __init__(self, generator: MLPGenerator, cls: int) -> None:
        super().__init__()
        self.generator = generator
        self.cls = cls
        self.append_class = ConcatConstant(nn.functional.one_hot(torch.tensor(cls), generator.config.num_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # A pure chain: [z, onehot(c)] → the conditional generator's layers → image.
        return self.generator.to_image(self.generator.net(self.append_class(z)))


class GeneratorFamily(nn.Module):
    """Generators of every class behind one interface.

    ``family[c]`` is an ``nn.Module`` from latents (N, latent_dim) to images (N, 1, 28, 28) in [0, 1];
    ``family.sample(c, n, generator=g)`` draws z ~ N(0, I) from an explicit ``torch.Generator``.
    """

    def __init__(
        self,
        per_class: list[MLPGenerator] | None = None,
        conditional: MLPGenerator | None = None,
        class_names: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        if (per_class is None) == (conditional is None):
            raise GenrobustError("a generator family is either per_class generators or one conditional generator")
        if per_class is not None:
            if not per_class:
                raise GenrobustError("a per-class generator family needs at least one generator")
            self.per_class = nn.ModuleList(per_class)
            cfg = per_class[0].config
            if any(g.config.latent_dim != cfg.latent_dim for g in per_class):
                raise GenrobustError("all generators of a family must share one latent dimension")
            self.num_classes = len(per_class)
            self.conditional = None
        else:
            assert conditional is not None
            if not conditional.conditional:
                raise GenrobustError("the conditional generator was built with conditional=False")
            self.conditional = conditional
            self.per_class = None
            cfg = conditional.config
            self.num_classes = cfg.num_classes
        self.config = cfg
        self.latent_dim = cfg.latent_dim
        self.class_names = class_names or tuple(str(i) for i in range(self.num_classes))
        self._slices = (
            nn.ModuleList([ClassGenerator(conditional, c) for c in range(self.num_classes)])
            if conditional is not None
            else None
        )

    @property
    def kind(self) -> str:
        return "per-class" if self.per_class is not None else "conditional"

    def __len__(self) -> int:
        return self.num_classes

    def __getitem__(self, c: int) -> nn.Module:
        if not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise GenrobustError(f"class {c!r} out of range: this family has classes 0..{self.num_classes - 1}")
        if self.per_class is not None:
            return self.per_class[c]
        assert self._slices is not None
        return self._slices[c]

    def sample_latents(self, n: int, *, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """n latents from N(0, I), drawn on the CPU so the stream does not depend on the device."""
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    @torch.no_grad()
    def sample(
        self, c: int, n: int, *, generator: torch.Generator, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, images) for n latents of class c."""
        module = self[c]
        dev = device if device is not None else next(module.parameters()).device
        z = self.sample_latents(n, generator=generator, device=dev)
        return z, module(z)

    def forward(self, z: torch.Tensor, c: int) -> torch.Tensor:
        return self[c](z)
