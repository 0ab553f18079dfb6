"""Print the README's table of built-in models and draw docs/images/builtin-samples.png.

    python scripts/zoo_report.py [--data-dir ../shared/datasets] [--per-class 1000]

Classifiers: test accuracy on the real test set. Generator families: the share of generated images (seeded,
``--per-class`` per class) that the same dataset's built-in classifier assigns to the intended class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import genrobust as gr
from genrobust.models.zoo import ZOO
from genrobust.report import image_grid
from genrobust.train.common import accuracy

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--per-class", type=int, default=1000)
    args = parser.parse_args()
    print("| name | role | dataset | trained on | recipe | quality | size |")
    print("|---|---|---|---|---|---|---|")
    classifiers = {e.dataset: n for n, e in ZOO.items() if e.role == "classifier"}
    grids = []
    for name, entry in ZOO.items():
        size = f"{entry.path().stat().st_size / 1e6:.1f} MB"
        meta = gr.model_info(name)
        recipe = meta["recipe"]
        if entry.role == "classifier":
            model = gr.load_classifier(name)
            test = gr.load_dataset(entry.dataset, "test", data_dir=args.data_dir, download=False)
            acc = accuracy(model, *test.tensors())
            what = f"{recipe['epochs']} epochs, Adam {recipe['lr']}, {recipe.get('lr_schedule', 'constant')}"
            quality = f"test accuracy **{100 * acc:.2f}%**"
        else:
            family = gr.load_generators(name)
            clf = gr.load_classifier(classifiers[entry.dataset])
            g = torch.Generator().manual_seed(0)
            shares = []
            with torch.no_grad():
                for c in range(len(family)):
                    _, x = family.sample(c, args.per_class, generator=g)
                    shares.append(float((clf(x).argmax(1) == c).float().mean()))
            kind = "conditional GAN" if recipe["conditional"] else "per-class GANs"
            what = f"{kind}, {recipe['steps']} steps × batch {recipe['batch_size']}"
            quality = (
                f"{100 * np.mean(shares):.1f}% of samples classified as their class "
                f"(worst class {100 * min(shares):.1f}%)"
            )
            g = torch.Generator().manual_seed(1)
            imgs = torch.cat([family.sample(c, 10, generator=g)[1] for c in range(len(family))])
            if entry.dataset == "mnist":
                grids.append((name, imgs))
        print(f"| `{name}` | {entry.role} | {entry.dataset} | {entry.data} | {what} | {quality} | {size} |")
    if grids:
        tiles = [image_grid(imgs, ncol=10, row_labels=[str(c) for c in range(10)]) for _, imgs in grids]
        w = sum(t.width for t in tiles) + 12 * (len(tiles) - 1)
        canvas = Image.new("L", (w, max(t.height for t in tiles)), color=255)
        x = 0
        for t in tiles:
            canvas.paste(t, (x, 0))
            x += t.width + 12
        out = ROOT / "docs" / "images" / "builtin-samples.png"
        canvas.save(out)
        print(f"\n(left to right: {', '.join(n for n, _ in grids)}; wrote {out.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
