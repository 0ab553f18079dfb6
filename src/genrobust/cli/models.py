"""``genrobust models``: the built-in model zoo: list, info, samples."""

from __future__ import annotations

import json

import click

from .app import DATA_DIR_OPTION, DEVICE_OPTION, friendly_errors, main


@main.group()
def models() -> None:
    """The built-in model zoo and model files."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly_errors
def models_list(as_json: bool) -> None:
    """List the built-in models with their dataset, training data and test accuracy."""
    from ..models.io import read_metadata
    from ..models.zoo import ZOO

    rows = []
    for entry in ZOO.values():
        meta = read_metadata(entry.path()) if entry.path().is_file() else {}
        size = entry.path().stat().st_size if entry.path().is_file() else None
        rows.append({**entry.to_dict(), "test_accuracy": meta.get("test_accuracy"), "bytes": size})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<24} {'role':<11} {'dataset':<14} {'arch':<22} {'data':<10} {'test acc':>8} {'MB':>6}")
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        mb = "missing" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f}"
        click.echo(
            f"{r['name']:<24} {r['role']:<11} {r['dataset']:<14} {r['arch']:<22} {r['data']:<10} {acc:>8} {mb:>6}"
        )


@models.command("info")
@click.argument("name_or_path")
@friendly_errors
def models_info(name_or_path: str) -> None:
    """Print the metadata of a built-in model, a .safetensors model file (recipe, command, accuracy) or an .onnx
    file (inputs, outputs, operators, and any genrobust cannot import)."""
    from ..models.zoo import model_info

    meta = model_info(name_or_path)
    meta.pop("history", None)
    click.echo(json.dumps(meta, indent=2, sort_keys=True))


@models.command("sample")
@click.argument("generators")
@click.option("--per-class", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@DATA_DIR_OPTION
@DEVICE_OPTION
@friendly_errors
def models_sample(generators: str, per_class: int, seed: int, out: str, data_dir: str | None, device: str) -> None:
    """Write a PNG grid of generated images: one row per class (GENERATORS: a name or a file). For an
    image-conditional generator (mnist-variation), one test image per class: the image, its thumbnail, the
    reconstruction from its latent mean, then PER_CLASS − 3 variations drawn around that mean."""
    import torch

    from ..models.zoo import load_generators, load_variation, model_info
    from ..report import save_grid
    from ..runtime import resolve_device

    if per_class < 1:
        raise click.BadParameter("must be at least 1", param_hint="--per-class")
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same images whatever the device
    if not generators.lower().endswith(".onnx") and model_info(generators).get("role") == "variation":
        from ..data import load_dataset

        var = load_variation(generators).to(dev)  # the command's own model
        test = load_dataset(model_info(generators).get("dataset", "mnist"), "test", data_dir=data_dir)
        pick = [int(torch.nonzero(torch.from_numpy(test.labels) == c)[0]) for c in range(test.num_classes)]
        x = (torch.from_numpy(test.images[pick]).unsqueeze(1).float() / 255).to(dev)
        with torch.no_grad():
            side, pool = var.config.image_size, var.config.pool
            thumb = var.thumbnail(x).reshape(-1, 1, side // pool, side // pool).repeat_interleave(pool, 2)
            rec = var.generate(var.thumbnail(x), var.encode(x))[:, None]
            more = var.variations(x, max(0, per_class - 3), generator=g)
        rows = torch.cat([x[:, None], thumb.repeat_interleave(pool, 3)[:, None], rec, more], 1).cpu()
        save_grid(rows.flatten(0, 1), out, ncol=rows.shape[1], row_labels=list(test.class_names))
        click.echo(f"wrote {out}")
        return
    family = load_generators(generators).to(dev)  # the command's own model: sample draws where it is
    images = family.display(torch.cat([family.sample(c, per_class, generator=g)[1] for c in range(len(family))]))
    images = images.cpu()
    save_grid(images, out, ncol=per_class, row_labels=list(family.class_names))
    click.echo(f"wrote {out}")
