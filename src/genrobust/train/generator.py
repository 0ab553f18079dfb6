"""Training generators that cover their classes: one class-conditional MLP generator (the paper's network, so
verification handles it as it handles ``mnist-gan``) trained by a recipe chosen for variety, not only realism.

The paper's GAN (binary cross-entropy, one GAN per class) draws realistic digits but few kinds of them: its
recall is 0.13–0.32 per class (docs/generator-quality.md), so a verdict on it covers a slice of each class.
Two recipes measured against it (docs/generator-coverage.md):

* ``hinge-cgan``: the hinge loss, a discriminator with spectral normalisation on every layer and a projection
  of the class embedding onto its features (Miyato & Koyama 2018), Adam with β1 = 0 as in those papers, and the
  exponential moving average of the generator's weights as the result (EMA; it averages out the oscillation
  that drops modes);
* ``cvae``: a conditional VAE; its decoder, fed z ~ N(0, I), is the generator (the encoder covers every
  training image by construction; the price is blur).

``smooth`` > 0 adds to the generator's loss a penalty on how far its images move per unit of latent: λ·‖J v‖²,
the squared Jacobian-vector product for a random direction v ~ N(0, I) (so its mean is ‖J‖²_F, summed over
pixels), by a forward difference of step ``SMOOTH_STEP``. A generator that moves less per unit of latent leaves
fewer of the verifier's relaxations unstable in an ε-box, so its balls are cheaper to decide (issue 28's
verification cost); the price is paid in recall, and that trade is measured (docs/generator-coverage.md).

Every block of ``checkpoint_every`` steps takes its batches and noise from a seed derived from (seed, block), and
a checkpoint holds every network, optimiser and the EMA, so a killed run resumes to exactly the weights of an
uninterrupted one. A loss that turns NaN or infinite stops the run and keeps the last good checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import GenrobustError
from ..models.generators import GeneratorFamily, MLPGANConfig, MLPGenerator
from ..models.io import save_model
from .checkpoint import load_checkpoint, save_checkpoint
from .common import DATA_VARIANTS, progress, resolve_device, sub_seed, training_data

METHODS = ("hinge-cgan", "cvae")
#: the forward difference's step for the smoothness penalty (in latent units: small beside N(0, I)'s spread)
SMOOTH_STEP = 0.05
#: the built-in classifier whose features measure a family's coverage, per dataset
FEATURES = {"mnist": "mnist-small", "fashion-mnist": "fashion-mnist-small"}


@dataclass(frozen=True)
class GeneratorRecipe:
    dataset: str = "mnist"
    data: str = "standard"
    method: str = "hinge-cgan"
    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 512, 1024)
    steps: int = 20_000
    batch_size: int = 128
    lr: float = 2e-4  # hinge-cgan: the generator's (the discriminator takes twice this); cvae: Adam's
    ema: float = 0.999  # hinge-cgan: the weight average's decay per step
    beta: float = 1.0  # cvae: weight of the KL term
    smooth: float = 0.0  # hinge-cgan: weight of the penalty on the images' change per unit of latent, ‖J v‖²
    seed: int = 0
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise GenrobustError(f"unknown generator recipe {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.data not in DATA_VARIANTS:
            raise GenrobustError(f"unknown training data {self.data!r}; choose one of {', '.join(DATA_VARIANTS)}")
        if min(self.steps, self.batch_size, self.checkpoint_every, self.latent_dim, *self.hidden) < 1:
            raise GenrobustError("steps, batch_size, checkpoint_every, latent_dim and hidden sizes must be ≥ 1")
        if not (self.lr > 0 and 0 <= self.ema < 1 and self.beta > 0):
            raise GenrobustError(f"need lr > 0, 0 ≤ ema < 1 and beta > 0, got {self.lr}, {self.ema}, {self.beta}")
        if not (math.isfinite(self.smooth) and self.smooth >= 0):
            raise GenrobustError(f"smooth must be a finite weight ≥ 0, got {self.smooth}")
        if self.smooth and self.method != "hinge-cgan":
            raise GenrobustError("smooth applies to the hinge-cgan recipe (a VAE's decoder is smooth by its loss)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if not self.smooth:  # recipes from before the penalty existed read the same
            del d["smooth"]
        return d

    def command(self, out: str | os.PathLike[str]) -> str:
        args = ["genrobust", "train", "generator", "--recipe", self.method, "--dataset", self.dataset, "--data",
                self.data, "--latent-dim", str(self.latent_dim), "--hidden", ",".join(map(str, self.hidden)),
                "--steps", str(self.steps), "--batch-size", str(self.batch_size), "--lr", str(self.lr), "--ema",
                str(self.ema), "--beta", str(self.beta), "--seed", str(self.seed)]  # fmt: skip
        if self.smooth:
            args += ["--smooth", str(self.smooth)]
        return shlex.join([*args, "--out", str(out)])


def _same_run(saved: dict[str, Any] | None, recipe: dict[str, Any], done: int) -> bool:
    """Whether a checkpoint at step ``done`` can go on as ``recipe``: every setting equal, except that ``steps`` may
    grow past ``done`` (a finished run extended; each block's batches and noise depend only on (seed, block), so
    the extended run is the run that asked for more steps from the start)."""
    if saved is None:
        return False
    return {**saved, "steps": 0} == {**recipe, "steps": 0} and recipe["steps"] >= done


def _sn(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer)


class ProjectionDiscriminator(nn.Module):
    """An MLP critic with spectral normalisation on every layer and a projection of the class embedding onto its
    last features: D(x, y) = w·h(x) + embed(y)·h(x)."""

    def __init__(self, image_numel: int, num_classes: int, hidden: tuple[int, ...] = (1024, 512, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, o in zip((image_numel, *hidden[:-1]), hidden, strict=True):
            layers += [_sn(nn.Linear(i, o)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.out = _sn(nn.Linear(hidden[-1], 1))
        self.embed = _sn(nn.Embedding(num_classes, hidden[-1]))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(images.reshape(len(images), -1) * 2 - 1)  # in the generator's tanh range
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)


class Encoder(nn.Module):
    """The conditional VAE's encoder: (image, one-hot class) → the posterior's mean and log-variance."""

    def __init__(self, image_numel: int, num_classes: int, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(image_numel + num_classes, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 512),
                                 nn.LeakyReLU(0.2), nn.Linear(512, 2 * latent_dim))  # fmt: skip

    def forward(self, images: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(torch.cat([images.reshape(len(images), -1) * 2 - 1, onehot], 1)).chunk(2, 1)
        return mu, logvar


def _pixels(g: MLPGenerator, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """The generator's images as flat pixels in [0, 1] (its tanh mapped as ``to_image`` does)."""
    return (g.net(torch.cat([z, onehot], 1)) + 1) / 2


class _Trainer:
    """The networks, optimisers and one block of steps of a recipe."""

    def __init__(self, recipe: GeneratorRecipe, num_classes: int, device: torch.device) -> None:
        self.recipe, self.k, self.device = recipe, num_classes, device
        torch.manual_seed(sub_seed(recipe.seed, 0))
        cfg = MLPGANConfig(latent_dim=recipe.latent_dim, hidden=recipe.hidden, num_classes=num_classes)
        self.g = MLPGenerator(cfg, conditional=True).to(device)
        if recipe.method == "hinge-cgan":
            self.other: nn.Module = ProjectionDiscriminator(cfg.image_numel, num_classes).to(device)
            self.ema = copy.deepcopy(self.g).requires_grad_(False)
            betas = (0.0, 0.9)
            self.opts = {"g": torch.optim.Adam(self.g.parameters(), lr=recipe.lr, betas=betas),
                         "d": torch.optim.Adam(self.other.parameters(), lr=2 * recipe.lr, betas=betas)}  # fmt: skip
        else:
            self.other = Encoder(cfg.image_numel, num_classes, recipe.latent_dim).to(device)
            self.ema = self.g  # the decoder itself is the result
            params = [*self.g.parameters(), *self.other.parameters()]
            self.opts = {"vae": torch.optim.Adam(params, lr=recipe.lr)}

    def modules(self) -> dict[str, nn.Module]:
        mods = {"g": self.g, "other": self.other}
        if self.ema is not self.g:
            mods["ema"] = self.ema
        return mods

    def block(self, x_u8: torch.Tensor, labels: torch.Tensor, steps: int, seed: int, bar) -> dict[str, float]:
        gen = torch.Generator().manual_seed(seed)
        r, dev, n = self.recipe, self.device, len(x_u8)
        sums = [0.0, 0.0]
        for _ in range(steps):
            idx = torch.randint(0, n, (r.batch_size,), generator=gen)
            real = x_u8[idx].to(device=dev, dtype=torch.float32).div_(255.0).reshape(r.batch_size, -1)
            y = labels[idx].to(dev)
            noise = torch.randn(r.batch_size, r.latent_dim, generator=gen).to(dev)
            if r.method == "hinge-cgan":
                y_fake = torch.randint(0, self.k, (r.batch_size,), generator=gen).to(dev)
                fake = _pixels(self.g, noise, F.one_hot(y_fake, self.k).float())
                loss_a = F.relu(1 - self.other(real, y)).mean() + F.relu(1 + self.other(fake.detach(), y_fake)).mean()
                self.opts["d"].zero_grad(set_to_none=True)
                loss_a.backward()
                self.opts["d"].step()
                loss_b = -self.other(fake, y_fake).mean()
                if r.smooth:  # drawn only then, so recipes without it keep their random streams
                    v = torch.randn(r.batch_size, r.latent_dim, generator=gen).to(dev)
                    moved = _pixels(self.g, noise + SMOOTH_STEP * v, F.one_hot(y_fake, self.k).float())
                    jvp = (moved - fake) / SMOOTH_STEP
                    loss_b = loss_b + r.smooth * jvp.square().sum(1).mean()
                self.opts["g"].zero_grad(set_to_none=True)
                loss_b.backward()
                self.opts["g"].step()
                with torch.no_grad():
                    for pe, p in zip(self.ema.parameters(), self.g.parameters(), strict=True):
                        pe.lerp_(p, 1 - r.ema)
            else:
                onehot = F.one_hot(y, self.k).float()
                mu, logvar = self.other(real, onehot)
                recon = _pixels(self.g, mu + noise * (0.5 * logvar).exp(), onehot).clamp(1e-6, 1 - 1e-6)
                # the cross-entropy by hand: torch's refuses NaN inputs with an error instead of a NaN loss
                loss_a = -(real * recon.log() + (1 - real) * (1 - recon).log()).sum() / r.batch_size
                loss_b = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum() / r.batch_size
                self.opts["vae"].zero_grad(set_to_none=True)
                (loss_a + r.beta * loss_b).backward()
                self.opts["vae"].step()
            a, b = float(loss_a.detach()), float(loss_b.detach())
            if not (math.isfinite(a) and math.isfinite(b)):
                raise _Diverged()
            sums[0] += a
            sums[1] += b
            bar.update(1)
        names = ("loss_d", "loss_g") if r.method == "hinge-cgan" else ("reconstruction", "kl")
        return {names[0]: sums[0] / steps, names[1]: sums[1] / steps}


class _Diverged(Exception):
    pass


def train_generator(
    recipe: GeneratorRecipe,
    *,
    out: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    half: bool = False,
    assess_n: int = 1000,
    train_data: Dataset | None = None,
) -> tuple[GeneratorFamily, Path]:
    """Train one conditional generator by ``recipe`` into folder ``out`` (resumable from its checkpoint) and write
    ``out/generators.safetensors``, with the family's coverage (precision / recall per class against ``assess_n``
    training images, in the dataset's built-in classifier's features) in its metadata, so every verdict on it
    shows how much of each class it draws. ``assess_n=0`` skips the measurement; ``train_data`` replaces the
    recipe's data (tests)."""
    dev = resolve_device(device)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    data = train_data or training_data(recipe.dataset, recipe.data, seed=recipe.seed, data_dir=data_dir)
    x_u8, labels = torch.from_numpy(data.images).unsqueeze(1), torch.from_numpy(data.labels)
    if x_u8.shape[-2:] != (28, 28):
        raise GenrobustError(f"the MLP generator draws 28×28 images; {recipe.dataset} has {tuple(x_u8.shape[-2:])}")
    t = _Trainer(recipe, data.num_classes, dev)
    ckpt = outdir / "generator.ckpt.safetensors"
    done, history = 0, []
    if ckpt.is_file():
        state = load_checkpoint(ckpt, t.modules(), t.opts)
        done, history = int(state["step"]), list(state["history"])
        if not _same_run(state.get("recipe"), recipe.to_dict(), done):
            raise GenrobustError(f"{ckpt} belongs to another recipe; use another --out or delete it")
    bar = progress(recipe.steps, f"{recipe.method} on {recipe.dataset}", show_progress, initial=done, unit=" steps")
    while done < recipe.steps:
        steps = min(recipe.checkpoint_every, recipe.steps - done)
        t0 = time.perf_counter()
        try:
            stats = t.block(x_u8, labels, steps, sub_seed(recipe.seed, 1 + done // recipe.checkpoint_every), bar)
        except _Diverged:
            bar.close()
            kept = f"the last good checkpoint (step {done}) is kept in {ckpt}" if done else "nothing was saved"
            raise GenrobustError(f"training diverged after step {done} (a NaN or infinite loss); {kept}; try a "
                                 "lower --lr") from None  # fmt: skip
        done += steps
        stats.update(step=done, steps_per_second=steps / (time.perf_counter() - t0))
        history.append(stats)
        save_checkpoint(ckpt, t.modules(), t.opts, {"recipe": recipe.to_dict(), "step": done, "history": history})
    bar.close()
    family = GeneratorFamily(conditional=t.ema.eval(), class_names=data.class_names)
    info: dict[str, Any] = {"dataset": recipe.dataset, "data": recipe.data, "output_range": [0.0, 1.0],
                            "latent_distribution": "standard normal N(0, I)", "recipe": recipe.to_dict(),
                            "command": recipe.command(outdir), "training_images": len(data),
                            "history": history}  # fmt: skip
    measured = None
    if assess_n and recipe.dataset in FEATURES:
        from ..experiments.generator_quality import measure_coverage
        from ..models.zoo import load_classifier

        name = FEATURES[recipe.dataset]
        measured = measure_coverage(load_classifier(name, device=str(dev)), family, recipe.dataset, n=assess_n,
                                    data_dir=data_dir, classifier_name=name, how="measured after training")  # fmt: skip
        info["coverage"] = measured.to_dict()
    path = outdir / "generators.safetensors"
    save_model(path, family.cpu(), info=info, half=half)
    family.coverage = measured  # as load_generators would attach it from the file
    return family, path
