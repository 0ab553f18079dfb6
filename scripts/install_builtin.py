"""Copy trained built-in models from a runs folder into the package and write the zoo registry.

    python scripts/install_builtin.py ~/genrobust-runs

Reads RUNS/<name>/{classifier,generators}.safetensors (made by scripts/train_builtin.sh), copies them to
src/genrobust/weights/<name>.safetensors.gz (gzip, deterministic: the same weights give the same bytes) and
records each file's SHA-256 in src/genrobust/weights/zoo.json.
Entries it does not install (the variation generator, models not retrained) are kept, and so is a family's
measured coverage while its weights are unchanged (a retrained family needs `reproduce generator-quality`).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from genrobust.models.io import file_sha256, read_metadata

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "genrobust" / "weights"

BUILTIN = {
    "mnist-small": "The paper's small classifier (conv 32-32-64-64, dense 200-200) trained on MNIST.",
    "mnist-gan": "Ten per-class GANs (the paper's MLP GAN, latent dimension 10) trained on MNIST.",
    "mnist-gan-aug": "Ten per-class GANs trained on the augmented MNIST training set.",
    "fashion-mnist-small": "The paper's small classifier trained on Fashion-MNIST.",
    "fashion-mnist-cgan": "One class-conditional GAN (the paper's MLP GAN + one-hot class) trained on Fashion-MNIST.",
    "fashion-mnist-cgan-aug": "One class-conditional GAN trained on the augmented Fashion-MNIST training set.",
    "mnist-cgan": "One class-conditional generator (the paper's MLP, latent dimension 10) trained on MNIST for "
    "coverage: hinge loss, spectrally normalised projection discriminator, weight average (genrobust train "
    "generator).",
    "fashion-mnist-cgan2": "One class-conditional generator (the paper's MLP, latent dimension 10) trained on "
    "Fashion-MNIST for coverage, as mnist-cgan (125,000 steps).",
}


def main(runs: Path) -> None:
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    registry = WEIGHTS / "zoo.json"
    old = {e["name"]: e for e in json.loads(registry.read_text())} if registry.is_file() else {}
    entries = []
    for name, description in BUILTIN.items():
        src = next(
            (
                runs / name / f
                for f in ("classifier.safetensors", "generators.safetensors")
                if (runs / name / f).is_file()
            ),
            None,
        )
        if src is None:
            if name in old:
                entries.append(old[name])
            print(f"skip {name}: not trained yet" if name not in old else f"keep {name}: no new run")
            continue
        meta = read_metadata(src)
        dest = WEIGHTS / f"{name}.safetensors.gz"
        dest.write_bytes(gzip.compress(src.read_bytes(), compresslevel=9, mtime=0))
        (WEIGHTS / f"{name}.safetensors").unlink(missing_ok=True)  # the uncompressed file of an older install
        arch = meta["recipe"]["arch"] if meta["role"] == "classifier" else meta["arch"]
        data = meta["recipe"].get("data", "standard")
        entries.append(
            {
                "name": name,
                "role": meta["role"],
                "dataset": meta["dataset"],
                "arch": arch,
                "data": data,
                "filename": dest.name,
                "sha256": file_sha256(dest),
                "description": description,
            }
        )
        kept = old.get(name, {})
        if kept.get("sha256") == entries[-1]["sha256"] and kept.get("coverage"):
            entries[-1]["coverage"] = kept["coverage"]  # measured on these very weights
        elif meta.get("coverage"):  # measured by `genrobust train generator` after training
            entries[-1]["coverage"] = meta["coverage"]
        print(f"{name:<24} {dest.stat().st_size / 1e6:6.1f} MB  {meta.get('test_accuracy', '')}")
    entries += [e for n, e in old.items() if n not in BUILTIN]  # models installed by other scripts
    registry.write_text(json.dumps(entries, indent=2) + "\n")
    total = sum((WEIGHTS / e["filename"]).stat().st_size for e in entries)
    print(f"{len(entries)} models, {total / 1e6:.1f} MB in {WEIGHTS}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).expanduser())
