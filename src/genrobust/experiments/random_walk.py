"""The paper's random-walk experiment (assumption 3: a generator maps nearby latents to nearby images), measured.

A walk z₀ ~ N(0, I), z_{i+1} = z_i + step · N(0, I) shows how G(z_i) and the classifier's probabilities drift (a GIF
and a plot). The *continuity* measure answers the question a verifier's user has to settle: which latent ε
corresponds to how much change in pixels? For many centres z ~ N(0, I) per class and each ε, a point z′ drawn
uniformly in the box ‖z′ − z‖∞ ≤ ε (the set global robustness quantifies over) and one at a random corner (its
farthest points), we record the pixel change ‖G(z′) − G(z)‖ (RMS over pixels, and the largest single pixel)
and report its quantiles per class, together with the share of z′ that the classifier labels differently.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import GenrobustError
from ..models.generators import GeneratorFamily, module_device
from ..runtime import eval_mode, sub_seed

QUANTILES = (0.1, 0.5, 0.9, 0.99)


def random_walk(latent_dim: int, *, steps: int, step: float, seed: int = 0) -> torch.Tensor:
    """(steps + 1, d) latents: z₀ ~ N(0, I), then z_{i+1} = z_i + step · N(0, I), from an explicit seed."""
    if not isinstance(steps, int) or steps < 1:
        raise GenrobustError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise GenrobustError(f"step must be a positive number, got {step!r}")
    g = torch.Generator().manual_seed(sub_seed(seed, 7001))
    z0 = torch.randn(1, latent_dim, generator=g)
    moves = torch.randn(steps, latent_dim, generator=g) * step
    return torch.cat([z0, z0 + torch.cumsum(moves, 0)])


@torch.no_grad()
def walk(classifier: nn.Module, generators: GeneratorFamily, cls: int, *, steps: int, step: float, seed: int = 0):
    """The walk's latents, images (as people see them) and the classifier's class probabilities (float64)."""
    z = random_walk(generators.latent_dim, steps=steps, step=step, seed=seed)
    g = generators[cls]
    with eval_mode(classifier, g):
        x = g(z.to(module_device(g)))
        probs = torch.softmax(classifier(x).double(), 1).cpu()
    return z, generators.display(x).cpu(), probs


@dataclass
class EpsContinuity:
    """One class at one ε: quantiles (at :data:`QUANTILES`) of the pixel change, and label flips."""

    eps: float
    rms_uniform: list[float]  # RMS pixel change for z′ uniform in the box
    rms_corner: list[float]  # ... for z′ at a random corner
    max_corner: list[float]  # largest single-pixel change at a corner
    flipped_uniform: float  # share of uniform z′ labelled differently from z
    flipped_corner: float


@dataclass
class ContinuityResult:
    n: int
    seed: int
    class_names: list[str]
    eps: list[float]
    classes: dict[int, list[EpsContinuity]] = field(default_factory=dict)
    quantiles: tuple[float, ...] = QUANTILES

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "eps": self.eps, "quantiles": list(self.quantiles),
                "class_names": self.class_names,
                "classes": {str(c): [asdict(r) for r in rows] for c, rows in self.classes.items()}}  # fmt: skip

    def table(self) -> str:
        """Per ε, pooled over classes: median and 90% quantile of the RMS change, and the flips."""
        lines = ["ε        RMS change: uniform z′ (median / 90%)   corner z′ (median / 90%)   max pixel at a corner "
                 "(median)   label flips: uniform / corner"]  # fmt: skip
        for e, eps in enumerate(self.eps):
            rows = [per_class[e] for per_class in self.classes.values()]

            def med(key: str, q: int, rows: list[EpsContinuity] = rows) -> float:
                return float(np.median([getattr(r, key)[q] for r in rows]))

            lines.append(f"{eps:<8g} {med('rms_uniform', 1):.4f} / {med('rms_uniform', 2):.4f}"
                         f"{'':24}{med('rms_corner', 1):.4f} / {med('rms_corner', 2):.4f}"
                         f"{'':15}{med('max_corner', 1):.3f}"
                         f"{'':22}{100 * np.mean([r.flipped_uniform for r in rows]):.1f}% / "
                         f"{100 * np.mean([r.flipped_corner for r in rows]):.1f}%")  # fmt: skip
        return "\n".join(lines)


@torch.no_grad()
def continuity(
    generators: GeneratorFamily,
    *,
    eps: float | Sequence[float],
    n: int = 500,
    seed: int = 0,
    classifier: nn.Module | None = None,
    classes: Sequence[int] | None = None,
    batch_size: int = 500,
) -> ContinuityResult:
    """Pixel change between G(z) and G(z′) for z′ uniform in, and at a corner of, the ε-box around n centres per
    class (medians over classes are printed by :meth:`ContinuityResult.table`)."""
    eps_values = sorted(float(e) for e in ([eps] if isinstance(eps, (int, float)) else eps))
    if not eps_values or any(not (math.isfinite(e) and e > 0) for e in eps_values):
        raise GenrobustError(f"every ε must be a positive number, got {eps!r}")
    if not isinstance(n, int) or n < 2:
        raise GenrobustError(f"n must be an integer ≥ 2, got {n!r}")
    wanted = list(range(len(generators))) if classes is None else list(classes)
    res = ContinuityResult(n, seed, list(generators.class_names), eps_values)
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    with eval_mode(generators, classifier):  # the caller's models keep their modes
        for c in wanted:
            g = generators[c]
            dev = module_device(g)
            rng = torch.Generator().manual_seed(sub_seed(seed, c, 7002))
            z = torch.randn(n, generators.latent_dim, generator=rng)
            centre = [g(z[i : i + batch_size].to(dev)) for i in range(0, n, batch_size)]  # drawn once per class
            centre_label = [classifier(a).argmax(1) for a in centre] if classifier is not None else []
            rows = []
            for eps_e in eps_values:
                uni = z + (torch.rand(z.shape, generator=rng) * 2 - 1) * eps_e
                corner = z + torch.where(torch.rand(z.shape, generator=rng) < 0.5, -eps_e, eps_e)
                stats: dict[str, Any] = {}
                for name, zz in (("uniform", uni), ("corner", corner)):
                    diffs, flips = [], []
                    for j, i in enumerate(range(0, n, batch_size)):
                        a, b = centre[j], g(zz[i : i + batch_size].to(dev))
                        diff = (generators.display(b) - generators.display(a)).flatten(1).double()
                        diffs.append(torch.stack([diff.pow(2).mean(1).sqrt(), diff.abs().amax(1)], 1).cpu())
                        if classifier is not None:
                            flips.append((centre_label[j] != classifier(b).argmax(1)).cpu())
                    d = torch.cat(diffs)
                    stats[name] = (torch.quantile(d[:, 0], q).tolist(), torch.quantile(d[:, 1], q).tolist(),
                                   float(torch.cat(flips).double().mean()) if flips else math.nan)  # fmt: skip
                rows.append(EpsContinuity(eps_e, stats["uniform"][0], stats["corner"][0], stats["corner"][1],
                                          stats["uniform"][2], stats["corner"][2]))  # fmt: skip
            res.classes[c] = rows
    return res


# --------------------------------------------------------------------------------------------------- pictures
def save_walk_gif(images: torch.Tensor, probs: torch.Tensor, path: str | os.PathLike[str], *,
                  class_names: Sequence[str], scale: int = 6, ms_per_frame: int = 150) -> str:  # fmt: skip
    """The walk's images as an animated GIF, each frame captioned with its step and the classifier's label."""
    from PIL import Image, ImageDraw

    from ..report.adversarial import _tile

    frames = []
    for k in range(len(images)):
        tile = _tile(images[k], scale)
        canvas = Image.new("RGB", (tile.width, tile.height + 18), color=(255, 255, 255))
        canvas.paste(tile, (0, 0))
        p, label = probs[k].max(0)
        text = f"step {k}: {class_names[int(label)]} ({float(p):.2f})"
        ImageDraw.Draw(canvas).text((4, tile.height + 3), text, fill=(0, 0, 0))
        frames.append(canvas.convert("P"))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return str(path)


def save_walk_plot(probs: torch.Tensor, path: str | os.PathLike[str], *, class_names: Sequence[str], cls: int,
                   images: torch.Tensor | None = None) -> str:  # fmt: skip
    """The classifier's probability of every class along the walk (the walk's class in bold), with a strip of
    every few images above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(len(probs))
    fig = plt.figure(figsize=(8, 4.2 if images is not None else 3.2), dpi=120)
    if images is not None:
        strip = fig.add_axes((0.07, 0.72, 0.9, 0.26))
        idx = np.linspace(0, len(images) - 1, min(16, len(images))).round().astype(int)
        shown = images[idx].clamp(0, 1)
        row = torch.cat(list(shown.permute(0, 2, 3, 1)), 1).numpy()
        strip.imshow(row[..., 0] if row.shape[-1] == 1 else row, cmap="gray", vmin=0, vmax=1)
        strip.set_axis_off()
        ax = fig.add_axes((0.07, 0.12, 0.9, 0.55))
    else:
        ax = fig.add_subplot()
    for j in range(probs.shape[1]):
        ax.plot(steps, probs[:, j], lw=2.2 if j == cls else 0.9, label=class_names[j],
                color="black" if j == cls else None)  # fmt: skip
    ax.set_xlabel("step of the walk")
    ax.set_ylabel("class probability")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6, ncol=min(10, probs.shape[1]), loc="lower left")
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def save_continuity_plot(result: ContinuityResult, path: str | os.PathLike[str]) -> str:
    """Per class: the median and 10–90% band of the RMS pixel change against ε (uniform z′ and corners)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=120)
    eps = np.array(result.eps)
    for c, rows in result.classes.items():
        med = [r.rms_corner[1] for r in rows]
        line = ax.plot(eps, med, "o-", ms=3, lw=1, label=result.class_names[c])[0]
        ax.fill_between(eps, [r.rms_corner[0] for r in rows], [r.rms_corner[2] for r in rows], alpha=0.08,
                        color=line.get_color())  # fmt: skip
        ax.plot(eps, [r.rms_uniform[1] for r in rows], ":", lw=1, color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ε (latent, ∞-norm)")
    ax.set_ylabel("RMS pixel change")
    ax.set_title("Continuity: corners (solid, 10–90% band) and uniform points (dotted) of the ε-box", fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def save_json(result: ContinuityResult, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
