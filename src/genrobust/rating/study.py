"""A rating study: a self-contained folder of generated images, their latents, and the raters' database.

The paper's "manual score" experiment (100 generated images, each rated by several people as near-perfect,
perturbed but clearly identifiable, hard to identify or rubbish, plus the digit it shows) as a folder anyone can
copy: ``study.json`` (what was drawn, from which generators, with which seed), ``latents.safetensors`` (to
regenerate any image), ``images/{id}.png`` (what the raters see) and ``ratings.sqlite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ..errors import GenrobustError
from ..models.generators import GeneratorFamily, module_device
from ..runtime import eval_mode, sub_seed

#: The paper's four categories, best first (stored by key).
CATEGORIES: dict[str, str] = {
    "perfect": "near-perfect",
    "perturbed": "perturbed but clearly identifiable",
    "hard": "hard to identify",
    "rubbish": "rubbish",
}
#: Keyboard shortcuts of the categories on the rating page (the class is its digit).
SHORTCUTS: dict[str, str] = {"perfect": "n", "perturbed": "p", "hard": "h", "rubbish": "r"}
FORMAT = "genrobust-rating-study/1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS ratings (
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    image_id INTEGER NOT NULL,
    category TEXT NOT NULL,
    label INTEGER NOT NULL,
    updated TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (rater_id, image_id)
);
"""


class StudyError(GenrobustError):
    """A study folder is missing, incomplete or not a genrobust study."""


@dataclass(frozen=True)
class Study:
    """An open study folder: its images' intended classes and where everything lives."""

    folder: Path
    meta: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @property
    def classes(self) -> list[int]:
        """The intended class of each image, by image id."""
        return [int(c) for c in self.meta["classes"]]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def db_path(self) -> Path:
        return self.folder / "ratings.sqlite"

    def image_path(self, image_id: int) -> Path:
        """The file of image ``image_id`` (an integer checked against the study's size: no request path is used)."""
        if not isinstance(image_id, int) or not 0 <= image_id < self.n:
            raise StudyError(f"no image {image_id!r} in this study (ids 0..{self.n - 1})")
        return self.folder / "images" / f"{image_id}.png"

    def images(self) -> torch.Tensor:
        """Every image as the raters saw it: float32 (n, C, H, W) in [0, 1]."""
        arrays = [np.asarray(Image.open(self.image_path(i))) for i in range(self.n)]
        x = torch.as_tensor(np.stack(arrays)).float() / 255.0
        return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)

    def latents(self) -> torch.Tensor:
        return load_file(str(self.folder / "latents.safetensors"))["z"]

    def connect(self) -> sqlite3.Connection:
        """A connection in WAL mode (readers never block the writer) that waits for locks instead of failing."""
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        return con


def create_study(
    folder: str | os.PathLike[str], generators: GeneratorFamily, *, n: int = 100, seed: int = 0, source: str = ""
) -> Study:
    """Draw ``n`` images, stratified over the classes (as equal as n allows, seeded), into a new study folder."""
    folder = Path(folder)
    if (folder / "study.json").exists():
        raise StudyError(f"{folder} already holds a study: open it instead of creating one")
    if not isinstance(n, int) or n < 1 or n > 100_000:
        raise GenrobustError(f"n must be an integer between 1 and 100,000, got {n!r}")
    k = len(generators)
    counts = [n // k + (1 if c < n % k else 0) for c in range(k)]
    rng = np.random.default_rng(sub_seed(seed, 9001))
    order = [c for c in rng.permutation(k).tolist() for _ in range(counts[c])]  # which classes get the extras
    classes = sorted(order)  # image ids grouped by class; raters see them shuffled
    z_all, images = [], []
    dev = module_device(generators)
    with torch.no_grad(), eval_mode(generators):
        for c in range(k):
            m = classes.count(c)
            if not m:
                continue
            g = torch.Generator().manual_seed(sub_seed(seed, c, 9002))
            z = generators.sample_latents(m, generator=g).to(dev)
            images.append(generators.display(generators[c](z)).clamp(0, 1).cpu())
            z_all.append(z.cpu())
    x = torch.cat(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise GenrobustError(f"rating studies show greyscale or RGB images, the generators draw {tuple(x.shape[1:])}")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    arr = (x.numpy() * 255).round().astype(np.uint8)
    for i, a in enumerate(arr):
        Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(folder / "images" / f"{i}.png")
    save_file({"z": torch.cat(z_all).contiguous()}, str(folder / "latents.safetensors"))
    meta = {"format": FORMAT, "n": n, "seed": seed, "generators": source, "classes": classes,
            "class_names": list(generators.class_names), "categories": CATEGORIES,
            "image_shape": list(x.shape[1:])}  # fmt: skip
    (folder / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    study = Study(folder, meta)
    with study.connect() as con:
        con.executescript(SCHEMA)
    return study


def open_study(folder: str | os.PathLike[str]) -> Study:
    folder = Path(folder)
    try:
        meta = json.loads((folder / "study.json").read_text())
    except FileNotFoundError:
        raise StudyError(f"{folder}: no study here (study.json is missing; create one with genrobust rate serve "
                         "--generators NAME --study FOLDER)") from None  # fmt: skip
    except ValueError:
        raise StudyError(f"{folder}/study.json is corrupt") from None
    if meta.get("format") != FORMAT:
        raise StudyError(f"{folder}: not a genrobust rating study ({meta.get('format')!r})")
    study = Study(folder, meta)
    missing = [i for i in range(study.n) if not study.image_path(i).is_file()]
    if missing:
        raise StudyError(f"{folder}: {len(missing)} images are missing (first: images/{missing[0]}.png)")
    con = study.connect()
    try:
        con.executescript(SCHEMA)
    finally:
        con.close()
    return study


def rater_order(study: Study, name: str) -> list[int]:
    """The images in the order this rater sees them: a shuffle seeded by the study and the rater's name."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng([int(study.meta["seed"]), digest])
    return rng.permutation(study.n).tolist()
