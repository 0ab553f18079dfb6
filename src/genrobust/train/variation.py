"""Training the image-conditional generator (``models.variation``): a conditional VAE on thumbnail → image.

The evidence lower bound with the binary cross-entropy of the pixels and the Gaussian KL term, Adam. One
checkpoint per epoch; every epoch draws its order and noise from a seed derived from (seed, epoch), so a
resumed run ends with exactly the weights of an uninterrupted one. After training, ``latent_std`` is set to the
spread of the encoder's means over the training images (the widths of the instances' latent boxes).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Dataset, load_dataset
from ..errors import GenrobustError
from ..models.io import save_model
from ..models.variation import VariationConfig, VariationGenerator
from .checkpoint import load_checkpoint, save_checkpoint
from .common import progress, resolve_device, sub_seed


@dataclass(frozen=True)
class VariationRecipe:
    dataset: str = "mnist"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    latent_dim: int = 8
    pool: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.latent_dim, self.pool) < 1 or not self.lr > 0:
            raise GenrobustError("epochs, batch_size, latent_dim and pool must be ≥ 1 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def command(self, out: str | os.PathLike[str]) -> str:
        args = ["genrobust", "train", "variation", "--dataset", self.dataset, "--epochs", str(self.epochs)]
        args += ["--batch-size", str(self.batch_size), "--lr", str(self.lr), "--latent-dim", str(self.latent_dim)]
        args += ["--pool", str(self.pool), "--seed", str(self.seed)]
        return shlex.join([*args, "--out", str(out)])


def elbo_terms(model: VariationGenerator, images: torch.Tensor, gen: torch.Generator | None = None):
    """Per image: the pixels' binary cross-entropy (summed) and the KL divergence to N(0, I) (summed)."""
    mean, logvar = model.posterior(images)
    eps = torch.randn(mean.shape, generator=gen).to(mean)
    z = mean + eps * (0.5 * logvar).exp()
    logits = model.decoder[:-2](torch.cat([model.thumbnail(images), z], 1))  # before the sigmoid
    bce = F.binary_cross_entropy_with_logits(logits, images.flatten(1), reduction="none").sum(1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return bce, kl


@torch.no_grad()
def _latent_spread(model: VariationGenerator, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    means = torch.cat([model.encode(images[i : i + 2048].to(device)) for i in range(0, len(images), 2048)])
    return means.std(0).cpu()


@torch.no_grad()
def _evaluate(model: VariationGenerator, images: torch.Tensor, device: torch.device) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    bce = kl = 0.0
    for i in range(0, len(images), 2048):
        b, k = elbo_terms(model, images[i : i + 2048].to(device), gen)
        bce, kl = bce + float(b.sum()), kl + float(k.sum())
    return {"bce": bce / len(images), "kl": kl / len(images)}


def train_variation(
    recipe: VariationRecipe,
    *,
    out: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    train_data: Dataset | None = None,
    test_data: Dataset | None = None,
) -> tuple[VariationGenerator, Path]:
    """Train by ``recipe`` into folder ``out`` (resumable) and write ``out/variation.safetensors``
    (``train_data``/``test_data``: other images than the recipe's dataset, e.g. a subset)."""
    dev = resolve_device(device)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    train = train_data or load_dataset(recipe.dataset, "train", data_dir=data_dir)
    test = test_data or load_dataset(recipe.dataset, "test", data_dir=data_dir)
    x = torch.from_numpy(train.images).unsqueeze(1).float() / 255.0
    x_test = torch.from_numpy(test.images).unsqueeze(1).float() / 255.0
    size = x.shape[-1]
    torch.manual_seed(sub_seed(recipe.seed, 0))
    model = VariationGenerator(VariationConfig(image_size=size, pool=recipe.pool, latent_dim=recipe.latent_dim))
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    ckpt = outdir / "variation.ckpt.safetensors"
    done, history = 0, []
    if ckpt.is_file():
        state = load_checkpoint(ckpt, {"model": model}, {"model": opt})
        if state.get("recipe") != recipe.to_dict():
            raise GenrobustError(f"{ckpt}: a checkpoint of another recipe; delete it or use another --out")
        done, history = int(state["epoch"]), list(state["history"])
    steps = (len(x) + recipe.batch_size - 1) // recipe.batch_size
    bar = progress(total=recipe.epochs * steps, initial=done * steps, desc="variation VAE", enabled=show_progress)
    for epoch in range(done, recipe.epochs):
        gen = torch.Generator().manual_seed(sub_seed(recipe.seed, 1, epoch))
        order = torch.randperm(len(x), generator=gen)
        model.train()
        total = 0.0
        for i in range(steps):
            batch = x[order[i * recipe.batch_size : (i + 1) * recipe.batch_size]].to(dev)
            bce, kl = elbo_terms(model, batch, gen)
            loss = (bce + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
            bar.update(1)
        model.eval()
        history.append({"epoch": epoch + 1, "loss": total / len(x), **_evaluate(model, x_test, dev)})
        save_checkpoint(ckpt, {"model": model}, {"model": opt},
                        {"recipe": recipe.to_dict(), "epoch": epoch + 1, "history": history})  # fmt: skip
    bar.close()
    model.eval()
    model.latent_std.copy_(_latent_spread(model, x, dev))
    info = {
        "dataset": recipe.dataset,
        "output_range": [0.0, 1.0],
        "recipe": recipe.to_dict(),
        "command": recipe.command(outdir),
        "training_images": len(x),
        "test": history[-1] if history else {},
        "history": history,
    }
    path = outdir / "variation.safetensors"
    save_model(path, model.cpu(), info=info)
    return model, path
