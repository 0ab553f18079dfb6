"""Pictures of realistic adversarial examples: pairs G(z) | G(z′) with their labels, and the straight path from
z to z′ as an animated GIF (every point of the segment lies in the ε-box, which is convex)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ..attacks import AdversarialExample
from ..errors import GenrobustError
from ..models.generators import module_device
from ..runtime import eval_mode


def _tile(image: torch.Tensor, scale: int) -> Image.Image:
    """One (1 or 3, H, W) image in [0, 1] as a greyscale picture, upscaled (colour is kept as RGB, then greyed
    only if the sheet is greyscale)."""
    arr = (image.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    pic = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
    return pic.resize((arr.shape[2] * scale, arr.shape[1] * scale), Image.NEAREST)


def _shown(images: torch.Tensor, display: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """The images as people should see them (``GeneratorFamily.display`` undoes an adapter's normalisation)."""
    return display(images) if display is not None else images


@torch.no_grad()
def _label(classifier: nn.Module, images: torch.Tensor) -> list[tuple[int, float]]:
    """Class and confidence in eval mode (no dropout); the classifier's own modes are restored."""
    with eval_mode(classifier):
        probs = torch.softmax(classifier(images).double(), 1)
    conf, pred = probs.max(1)
    return list(zip(pred.tolist(), conf.tolist(), strict=True))


def pairs_image(
    examples: Sequence[AdversarialExample],
    generator: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    scale: int = 3,
    ncol: int = 4,
    display: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Image.Image:
    """A sheet of pairs: G(z) and G(z′) side by side, captioned with class (confidence) and ε."""
    if not examples:
        raise GenrobustError("no adversarial examples to draw")
    names = class_names or [str(i) for i in range(1000)]
    with torch.no_grad(), eval_mode(generator):
        dev = module_device(generator)
        a = _shown(generator(torch.stack([ex.z for ex in examples]).to(dev)), display)
        b = _shown(generator(torch.stack([ex.z_adv for ex in examples]).to(dev)), display)
    side_h, side = a.shape[2] * scale, a.shape[3] * scale
    cell_w, cell_h = 2 * side + 18, side_h + 30
    nrow = -(-len(examples) // ncol)
    mode = "L" if a.shape[1] == 1 else "RGB"
    sheet = Image.new(mode, (ncol * cell_w + 8, nrow * cell_h + 8), color=255 if mode == "L" else (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, ex in enumerate(examples):
        r, c = divmod(k, ncol)
        x, y = 8 + c * cell_w, 8 + r * cell_h
        sheet.paste(_tile(a[k], scale), (x, y))
        sheet.paste(_tile(b[k], scale), (x + side + 4, y))
        ink, grey = (0, 90) if mode == "L" else ((0, 0, 0), (90, 90, 90))
        draw.text((x, y + side_h + 2), f"{names[ex.pred]} {ex.conf:.2f}", fill=ink)
        draw.text((x + side + 4, y + side_h + 2), f"{names[ex.pred_adv]} {ex.conf_adv:.2f}", fill=ink)
        draw.text((x, y + side_h + 14), f"|z-z'| = {ex.distance:.3f} <= {ex.eps:g}", fill=grey)
    return sheet


def save_pairs(examples: Sequence[AdversarialExample], generator: nn.Module, path: str | os.PathLike[str],
               **kwargs: object) -> str:  # fmt: skip
    pairs_image(examples, generator, **kwargs).save(path)  # type: ignore[arg-type]
    return str(path)


def save_path_gif(
    example: AdversarialExample,
    classifier: nn.Module,
    generator: nn.Module,
    path: str | os.PathLike[str],
    *,
    frames: int = 24,
    scale: int = 6,
    class_names: Sequence[str] | None = None,
    ms_per_frame: int = 120,
    display: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> str:
    """An animated GIF of G(z + t (z′ − z)) for t from 0 to 1, each frame captioned with C's label."""
    if frames < 2:
        raise GenrobustError("a path needs at least 2 frames")
    names = class_names or [str(i) for i in range(1000)]
    dev = module_device(generator)
    t = torch.linspace(0, 1, frames)[:, None]
    z = (example.z[None] + t * (example.z_adv - example.z)[None]).to(dev)
    z[-1] = example.z_adv.to(dev)  # the last frame is exactly the witness
    with torch.no_grad():
        images = generator(z)
    labels = _label(classifier, images)
    pictures = []
    for k in range(frames):
        tile = _tile(_shown(images[k : k + 1], display)[0], scale)
        canvas = Image.new(tile.mode, (tile.width, tile.height + 18), color=255 if tile.mode == "L" else (255,) * 3)
        canvas.paste(tile, (0, 0))
        pred, conf = labels[k]
        ImageDraw.Draw(canvas).text((4, tile.height + 3), f"t={t[k, 0]:.2f}  {names[pred]} ({conf:.2f})",
                                    fill=0 if tile.mode == "L" else (0, 0, 0))  # fmt: skip
        pictures.append(canvas.convert("P"))
    pictures += [pictures[-1]] * 6  # linger on the witness
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=ms_per_frame, loop=0)
    return str(path)
