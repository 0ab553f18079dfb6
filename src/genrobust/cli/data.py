"""``genrobust data``: the datasets: where they are, fetching them, previews."""

from __future__ import annotations

import json

import click

from .app import DATA_DIR_OPTION, friendly_errors, main


@main.group()
def data() -> None:
    """Datasets: where they are, whether they verify, and downloading them."""


@data.command("info")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@friendly_errors
def data_info(data_dir: str | None, as_json: bool) -> None:
    """Show each dataset: present or not, where, verified or not, and its image counts."""
    from ..data.registry import list_datasets
    from ..data.store import inspect_dataset

    rows = [row for name in list_datasets() for row in inspect_dataset(name, data_dir)]
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    header = f"{'dataset':<15} {'split':<6} {'status':<11} {'images':>8}  location"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        count = "-" if r.images is None else f"{r.images:,}"
        if r.images is not None and r.images != r.expected:
            count += f" (expected {r.expected:,})"
        where = r.location or f"not found (genrobust data fetch {r.dataset})"
        click.echo(f"{r.dataset:<15} {r.split:<6} {r.state:<11} {count:>8}  {where}")
        if r.state not in ("verified", "missing") and r.detail:
            click.echo(f"{'':<15}   {r.detail}")


@data.command("fetch")
@click.argument("name")
@DATA_DIR_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def data_fetch(name: str, data_dir: str | None, quiet: bool) -> None:
    """Download dataset NAME (mnist, fashion-mnist, emnist-digits, emnist-mnist) and verify its checksums."""
    from ..data.store import fetch

    checks = fetch(name, data_dir=data_dir, progress=not quiet)
    for c in checks.values():
        click.echo(f"{c.state:<10} {c.path}  ({c.detail})")


@data.command("preview")
@click.argument("name")
@DATA_DIR_OPTION
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--per-class", type=int, default=8, show_default=True, help="Images shown of each class.")
@click.option("--augmented", is_flag=True, help="Show each image beside its rotated, sheared, shifted copies.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the augmentation.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@friendly_errors
def data_preview(
    name: str, data_dir: str | None, split: str, per_class: int, augmented: bool, seed: int, out: str
) -> None:
    """Write a PNG grid of dataset NAME: one row per class, or image / rotated / sheared / shifted."""
    import numpy as np

    from ..data import augment_dataset, load_dataset
    from ..report import save_grid

    ds = load_dataset(name, split, data_dir=data_dir)
    if per_class < 1:
        raise click.BadParameter("must be at least 1", param_hint="--per-class")
    picks = np.concatenate([np.flatnonzero(ds.labels == c)[:per_class] for c in range(ds.num_classes)])
    chosen = ds.subset(picks)
    if augmented:
        # Each class is a row of (image, rotated, sheared, shifted) quadruples.
        aug = augment_dataset(chosen, seed=seed)
        n = len(chosen)
        order = np.arange(4 * n).reshape(4, n).T.reshape(-1)
        save_grid(aug.images[order], out, ncol=4 * per_class, row_labels=list(ds.class_names))
    else:
        save_grid(chosen.images, out, ncol=per_class, row_labels=list(ds.class_names))
    click.echo(f"wrote {out}")
