"""Training the paper's GANs: one per class (the paper) or one class-conditional GAN.

Adam (lr 2e-4, β1 = 0.5) for both networks, one-sided label smoothing (real target 0.9) as in the paper's
code, the non-saturating generator loss. Checkpoints every ``checkpoint_every`` steps; every block of steps
takes its batches, noise and dropout from seeds derived from (seed, class, block), so a resumed run ends
with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..errors import GenrobustError
from ..models.generators import GeneratorFamily, MLPDiscriminator, MLPGANConfig, MLPGenerator
from ..models.io import load_model, save_model
from .checkpoint import load_checkpoint, save_checkpoint
from .common import DATA_VARIANTS, progress, resolve_device, sub_seed, training_data


@dataclass(frozen=True)
class GANRecipe:
    dataset: str = "mnist"
    data: str = "standard"  # standard | augmented | half-a | half-b
    conditional: bool = False
    steps: int = 6000  # per class (per-class GANs) or in all (conditional)
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    real_label: float = 0.9  # one-sided label smoothing
    latent_dim: int = 10
    seed: int = 0
    checkpoint_every: int = 500
    #: Seed of the disjoint halves (``half-a``/``half-b``); ``None``: ``seed``. Fixing it lets GANs of several
    #: training seeds share one half (the generator-dependence study tells data from training noise so).
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if self.data not in DATA_VARIANTS:
            raise GenrobustError(f"unknown GAN training data {self.data!r}; choose one of {', '.join(DATA_VARIANTS)}")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.latent_dim < 1:
            raise GenrobustError("steps, batch_size, checkpoint_every and latent_dim must be ≥ 1")
        if not 0 < self.real_label <= 1:
            raise GenrobustError("real_label must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def command(self, out: str | os.PathLike[str]) -> str:
        args = ["genrobust", "train", "gan", "--dataset", self.dataset, "--data", self.data]
        args += ["--conditional"] if self.conditional else []
        args += ["--steps", str(self.steps), "--batch-size", str(self.batch_size), "--lr", str(self.lr)]
        args += ["--latent-dim", str(self.latent_dim), "--seed", str(self.seed)]
        args += ["--split-seed", str(self.split_seed)] if self.split_seed is not None else []
        return shlex.join([*args, "--out", str(out)])


def _train_block(
    g: MLPGenerator,
    d: MLPDiscriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x_u8: torch.Tensor,
    labels: torch.Tensor | None,
    recipe: GANRecipe,
    steps: int,
    seed: int,
    device: torch.device,
    bar,
) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(sub_seed(seed, 1))  # dropout in the discriminator
    n, b, k = x_u8.shape[0], recipe.batch_size, g.config.num_classes
    sum_d = sum_g = 0.0
    for _ in range(steps):
        idx = torch.randint(0, n, (b,), generator=gen)
        real = x_u8[idx].to(device=device, dtype=torch.float32).div_(255.0)
        z = torch.randn(b, recipe.latent_dim, generator=gen).to(device)
        if labels is not None:
            onehot_real = F.one_hot(labels[idx], k).float().to(device)
            onehot_fake = F.one_hot(torch.randint(0, k, (b,), generator=gen), k).float().to(device)
        else:
            onehot_real = onehot_fake = None
        fake = g(z, onehot_fake)
        d_real, d_fake = d(real, onehot_real), d(fake.detach(), onehot_fake)
        loss_d = F.binary_cross_entropy_with_logits(
            d_real, torch.full_like(d_real, recipe.real_label)
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d_gen = d(fake, onehot_fake)
        loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        sum_d += loss_d.item()
        sum_g += loss_g.item()
        bar.update(1)
    return {"loss_d": sum_d / steps, "loss_g": sum_g / steps}


def _train_one(
    recipe: GANRecipe,
    x_u8: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    cls: int,
    num_classes: int,
    device: torch.device,
    ckpt: Path,
    show_progress: bool,
) -> tuple[MLPGenerator, list[dict[str, float]]]:
    cfg = MLPGANConfig(latent_dim=recipe.latent_dim, num_classes=num_classes)
    torch.manual_seed(sub_seed(recipe.seed, cls, 0))
    g = MLPGenerator(cfg, conditional=recipe.conditional).to(device)
    d = MLPDiscriminator(cfg, conditional=recipe.conditional).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=recipe.lr, betas=(recipe.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=recipe.lr, betas=(recipe.beta1, 0.999))
    done, history = 0, []
    if ckpt.is_file():
        state = load_checkpoint(ckpt, {"g": g, "d": d}, {"g": opt_g, "d": opt_d})
        if state.get("recipe") != recipe.to_dict() or state.get("class") != cls:
            raise GenrobustError(f"{ckpt} belongs to another recipe or class; use another --out or delete it")
        done, history = int(state["step"]), list(state["history"])
    desc = "conditional GAN" if recipe.conditional else f"GAN class {cls}"
    bar = progress(recipe.steps, desc, show_progress, initial=done)
    while done < recipe.steps:
        block = min(recipe.checkpoint_every, recipe.steps - done)
        t0 = time.perf_counter()
        stats = _train_block(
            g,
            d,
            opt_g,
            opt_d,
            x_u8,
            labels,
            recipe,
            block,
            sub_seed(recipe.seed, cls, 1 + done // recipe.checkpoint_every),
            device,
            bar,
        )
        done += block
        stats.update(step=done, steps_per_second=block / (time.perf_counter() - t0))
        history.append(stats)
        bar.set_postfix(loss_d=f"{stats['loss_d']:.3f}", loss_g=f"{stats['loss_g']:.3f}")
        save_checkpoint(
            ckpt,
            {"g": g, "d": d},
            {"g": opt_g, "d": opt_d},
            {"recipe": recipe.to_dict(), "class": cls, "step": done, "history": history},
        )
    bar.close()
    return g.eval(), history


def train_gan(
    recipe: GANRecipe,
    *,
    out: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    half: bool = False,
    classes: list[int] | None = None,
    train_data: Dataset | None = None,
) -> tuple[GeneratorFamily, Path]:
    """Train a generator family by ``recipe`` into folder ``out`` (resumable) and write
    ``out/generators.safetensors``. ``classes`` restricts per-class training (the file needs all of them)."""
    dev = resolve_device(device)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    split = recipe.seed if recipe.split_seed is None else recipe.split_seed
    data = train_data or training_data(recipe.dataset, recipe.data, seed=split, data_dir=data_dir)
    x_u8 = torch.from_numpy(data.images).unsqueeze(1)
    y = torch.from_numpy(data.labels)
    k = data.num_classes
    history: dict[str, Any] = {}
    if recipe.conditional:
        g, hist = _train_one(
            recipe,
            x_u8,
            y,
            cls=0,
            num_classes=k,
            device=dev,
            ckpt=outdir / "conditional.ckpt.safetensors",
            show_progress=show_progress,
        )
        family = GeneratorFamily(conditional=g, class_names=data.class_names)
        history["conditional"] = hist
    else:
        wanted = list(range(k)) if classes is None else classes
        gens: dict[int, MLPGenerator] = {}
        for c in wanted:
            done_file = outdir / f"class{c}.safetensors"
            if done_file.is_file():
                fam, meta = load_model(done_file, expect_role="generators")
                gens[c] = fam[0]
                history[str(c)] = meta.get("history")
                continue
            mask = y == c
            if not bool(mask.any()):
                raise GenrobustError(f"no training images of class {c} in {recipe.dataset} ({recipe.data})")
            g, hist = _train_one(
                recipe,
                x_u8[mask],
                None,
                cls=c,
                num_classes=k,
                device=dev,
                ckpt=outdir / f"class{c}.ckpt.safetensors",
                show_progress=show_progress,
            )
            save_model(done_file, GeneratorFamily(per_class=[g]), info={"history": hist, "class": c})
            gens[c] = g
            history[str(c)] = hist
        if sorted(gens) != list(range(k)):
            return GeneratorFamily(per_class=[gens[c] for c in sorted(gens)]), outdir  # partial: no family file
        family = GeneratorFamily(per_class=[gens[c] for c in range(k)], class_names=data.class_names)
    info = {
        "dataset": recipe.dataset,
        "data": recipe.data,
        "output_range": [0.0, 1.0],
        "latent_distribution": "standard normal N(0, I)",
        "recipe": recipe.to_dict(),
        "command": recipe.command(outdir),
        "training_images": len(data),
        "history": history,
    }
    path = outdir / "generators.safetensors"
    save_model(path, family.cpu(), info=info, half=half)
    return family, path
