"""The paper's GAN networks and the generator *family* every check works with.

A family answers three questions whatever its inside: the latent dimension, the latent distribution
(N(0, I)), and ``family[c]``, a module from latents (N, d) to the classifier's input images. Inside is
either one generator per class (the paper) or one class-conditional generator: the paper's MLP GAN, or any
``nn.Module`` of yours (a VAE decoder, a GAN, a diffusion model's deterministic decoder).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import GenrobustError
from .coverage import Coverage
from .layers import Affine, ConcatConstant, ImageAdapter


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


CONDITIONS = ("onehot", "index")


class ClassGenerator(nn.Module):
    """A conditional generator with its class fixed: latents (N, d) → images of that class.

    The built-in network becomes the pure chain [z, onehot(c)] → its layers → image. Any other module is
    called as ``generator(z, label)``, the label a constant one-hot row (``condition="onehot"``) or class
    index (``"index"``) per latent; the bound engine folds that constant into its graph.
    """

    def __init__(self, generator: nn.Module, cls: int, num_classes: int, condition: str = "onehot") -> None:
        super().__init__()
        self.generator = generator
        self.cls = cls
        self.builtin = isinstance(generator, MLPGenerator)
        self.onehot = condition == "onehot"
        onehot = nn.functional.one_hot(torch.tensor(cls), num_classes)
        if self.builtin:
            self.append_class = ConcatConstant(onehot)
        else:
            label = onehot.float().reshape(1, -1) if self.onehot else torch.tensor([cls])
            self.register_buffer("label", label, persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.builtin:  # a pure chain: [z, onehot(c)] → the conditional generator's layers → image
            return self.generator.to_image(self.generator.net(self.append_class(z)))
        if self.onehot:  # (no branching on tensors here: the bound engine traces this forward)
            return self.generator(z, self.label.to(z.dtype).expand(z.shape[0], -1))
        return self.generator(z, self.label.expand(z.shape[0]))


class AdaptedGenerator(nn.Module):
    """A class's generator followed by the family's :class:`ImageAdapter`: latents → the classifier's inputs."""

    def __init__(self, generator: nn.Module, adapter: ImageAdapter) -> None:
        super().__init__()
        self.generator = generator
        self.adapter = adapter

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.generator(z))


def _range(r: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise GenrobustError(f"output_range must be (low, high), got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise GenrobustError(f"output_range must be finite with low < high, got {r!r}")
    return lo, hi


class GeneratorFamily(nn.Module):
    """Generators of every class behind one interface, built from the paper's GANs or from any modules.

    ``family[c]`` is an ``nn.Module`` from latents (N, latent_dim) to the classifier's inputs;
    ``family.sample(c, n, generator=g)`` draws z ~ N(0, I) from an explicit ``torch.Generator``.

    Inside is either one module per class (``per_class``: z → image) or one conditional module
    (``conditional``: (z, label) → image, the label one-hot or an index as ``condition`` says). For the
    built-in :class:`MLPGenerator` the latent size and class count come from its config; for your own
    modules declare ``latent_dim`` (and ``num_classes`` or ``class_names`` for a conditional one) and the
    ``output_range`` your generator's images live in. ``adapter`` (an :class:`ImageAdapter`) maps those
    images to what the classifier expects; :meth:`adapt` builds one from the classifier's input range and
    normalisation. Without an adapter the generator's images go to the classifier as they are.
    """

    def __init__(
        self,
        per_class: Sequence[nn.Module] | None = None,
        conditional: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        *,
        latent_dim: int | None = None,
        num_classes: int | None = None,
        condition: str = "onehot",
        output_range: tuple[float, float] = (0.0, 1.0),
        adapter: ImageAdapter | None = None,
    ) -> None:
        super().__init__()
        if (per_class is None) == (conditional is None):
            raise GenrobustError("a generator family is either per_class generators or one conditional generator")
        if condition not in CONDITIONS:
            raise GenrobustError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
        if adapter is not None and not isinstance(adapter, ImageAdapter):
            raise GenrobustError("adapter must be a genrobust ImageAdapter (see GeneratorFamily.adapt)")
        modules = list(per_class) if per_class is not None else [conditional]
        if not modules:
            raise GenrobustError("a per-class generator family needs at least one generator")
        for m in modules:
            if not isinstance(m, nn.Module):
                raise GenrobustError(f"generators must be torch nn.Modules, got {type(m).__name__}")
        builtin = [m for m in modules if isinstance(m, MLPGenerator)]
        self.config = builtin[0].config if len(builtin) == len(modules) else None  # the built-in GAN's sizes
        dims = {m.config.latent_dim for m in builtin}
        if latent_dim is not None:
            if not isinstance(latent_dim, int) or latent_dim < 1:
                raise GenrobustError(f"latent_dim must be a positive integer, got {latent_dim!r}")
            dims.add(latent_dim)
        if len(dims) > 1:
            raise GenrobustError(f"all generators of a family must share one latent dimension, got {sorted(dims)}")
        if not dims:
            raise GenrobustError("give latent_dim: the size of the latent vector your generators take")
        self.latent_dim = dims.pop()
        self.condition = condition
        self.output_range = _range(output_range)
        self.adapter = adapter
        if per_class is not None:
            self.per_class = nn.ModuleList(modules)
            self.conditional = None
            self.num_classes = len(modules)
        else:
            assert conditional is not None
            if isinstance(conditional, MLPGenerator):
                if not conditional.conditional:
                    raise GenrobustError("the conditional generator was built with conditional=False")
                k = conditional.config.num_classes
            else:
                k = num_classes if num_classes is not None else (len(class_names) if class_names else None)
                if not isinstance(k, int) or k < 1:
                    raise GenrobustError("a conditional generator of your own needs num_classes (or class_names)")
            if num_classes is not None and num_classes != k:
                raise GenrobustError(f"num_classes={num_classes} but the conditional generator has {k} classes")
            self.conditional = conditional
            self.per_class = None
            self.num_classes = k
        names = tuple(str(n) for n in class_names) if class_names else tuple(str(i) for i in range(self.num_classes))
        if len(names) != self.num_classes:
            raise GenrobustError(f"{len(names)} class names for {self.num_classes} classes")
        self.class_names = names
        #: How much of each class the family draws (:class:`~genrobust.models.coverage.Coverage`), when measured:
        #: the built-in families carry it, ``measure_coverage`` gives it to any family; estimates report it.
        self.coverage: Coverage | None = None
        slices = (
            [ClassGenerator(conditional, c, self.num_classes, condition) for c in range(self.num_classes)]
            if conditional is not None
            else None
        )
        self._slices = nn.ModuleList(slices) if slices is not None else None
        members = slices if slices is not None else modules
        self._members = nn.ModuleList([AdaptedGenerator(m, adapter) for m in members]) if adapter is not None else None

    @property
    def kind(self) -> str:
        return "per-class" if self.per_class is not None else "conditional"

    @property
    def builtin(self) -> bool:
        """Whether this is the paper's GAN (savable in genrobust's own format)."""
        return self.config is not None and self.adapter is None

    def adapt(
        self,
        input_range: tuple[float, float] = (0.0, 1.0),
        *,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> GeneratorFamily:
        """The same generators, their images mapped onto a classifier's ``input_range`` and then normalised
        per channel as (x − mean)/std: one :class:`ImageAdapter` behind every class."""
        adapter = ImageAdapter(self.output_range, input_range, tuple(mean) if isinstance(mean, Sequence) else mean,
                               tuple(std) if isinstance(std, Sequence) else std)  # fmt: skip
        kw = {"per_class": list(self.per_class)} if self.per_class is not None else {"conditional": self.conditional}
        return GeneratorFamily(**kw, class_names=self.class_names, latent_dim=self.latent_dim,
                               num_classes=self.num_classes, condition=self.condition,
                               output_range=self.output_range, adapter=adapter)  # fmt: skip

    def display(self, images: torch.Tensor) -> torch.Tensor:
        """Images as ``family[c]`` returns them → the generator's own images scaled to [0, 1], for pictures."""
        x = self.adapter.inverse(images) if self.adapter is not None else images
        lo, hi = self.output_range
        return (x - lo) / (hi - lo) if (lo, hi) != (0.0, 1.0) else x

    def __len__(self) -> int:
        return self.num_classes

    def __getitem__(self, c: int) -> nn.Module:
        if not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise GenrobustError(f"class {c!r} out of range: this family has classes 0..{self.num_classes - 1}")
        if self._members is not None:
            return self._members[c]
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
        dev = device if device is not None else module_device(module)
        z = self.sample_latents(n, generator=generator, device=dev)
        return z, module(z)

    def forward(self, z: torch.Tensor, c: int) -> torch.Tensor:
        return self[c](z)


def module_device(module: nn.Module) -> torch.device:
    """Where a module's tensors live (the CPU for a module without any)."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")
