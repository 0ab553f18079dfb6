"""The ``genrobust`` command. Every subcommand has ``--help``; errors print one line, not a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from . import __version__
from .errors import GenrobustError

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    envvar="GENROBUST_DATA_DIR",
    default=None,
    help="Folder holding datasets in torchvision's raw layout (MNIST/raw/*.gz, ...). "
    "Defaults to $GENROBUST_DATA_DIR, then the per-user cache.",
)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn genrobust's own errors into a one-line message and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenrobustError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="genrobust")
def main() -> None:
    """Check image classifiers globally, against generative models of their inputs."""


def verify_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every verifying command shares: --eps, --classes and the budget (one place for their help)."""
    from .verify import SPLITS

    for option in reversed([
        click.option("--eps", "eps_text", default="0.01,0.03,0.05", show_default=True,
                     help="Latent radii, e.g. 0.01,0.03 (checked in increasing order)."),
        click.option("--classes", default=None, help="Comma-separated classes (default: all)."),
        click.option("--max-boxes", type=int, default=64, show_default=True, help="Sub-boxes per ball and ε."),
        click.option("--max-seconds", type=float, default=30.0, show_default=True, help="Seconds per ball."),
        click.option("--split", type=click.Choice(SPLITS), default="gap", show_default=True,
                     help="Which latent dimension a split halves."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def _eps_and_classes(eps_text: str, classes: str | None) -> tuple[list[float], list[int] | None]:
    """--eps 0.01,0.03 and --classes 1,8 (None: all classes)."""
    try:
        eps = [float(e) for e in eps_text.split(",") if e.strip()]
        wanted = [int(c) for c in classes.split(",") if c.strip()] if classes else None
    except ValueError:
        raise click.BadParameter("--eps takes numbers and --classes integers, separated by commas") from None
    return eps, wanted


@main.group()
def data() -> None:
    """Datasets: where they are, whether they verify, and downloading them."""


@data.command("info")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@friendly_errors
def data_info(data_dir: str | None, as_json: bool) -> None:
    """Show each dataset: present or not, where, verified or not, and its image counts."""
    from .data.registry import list_datasets
    from .data.store import inspect_dataset

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
    from .data.store import fetch

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

    from .data import augment_dataset, load_dataset
    from .report import save_grid

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


@main.group()
def models() -> None:
    """The built-in model zoo and model files."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly_errors
def models_list(as_json: bool) -> None:
    """List the built-in models with their dataset, training data and test accuracy."""
    from .models.io import read_metadata
    from .models.zoo import ZOO

    rows = []
    for entry in ZOO.values():
        meta = read_metadata(entry.path()) if entry.path().is_file() else {}
        size = entry.path().stat().st_size if entry.path().is_file() else None
        rows.append({**entry.to_dict(), "test_accuracy": meta.get("test_accuracy"), "bytes": size})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<24} {'role':<11} {'dataset':<14} {'arch':<20} {'data':<10} {'test acc':>8} {'MB':>6}")
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        mb = "missing" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f}"
        click.echo(
            f"{r['name']:<24} {r['role']:<11} {r['dataset']:<14} {r['arch']:<20} {r['data']:<10} {acc:>8} {mb:>6}"
        )


@models.command("info")
@click.argument("name_or_path")
@friendly_errors
def models_info(name_or_path: str) -> None:
    """Print the metadata of a built-in model or a .safetensors model file (recipe, command, accuracy)."""
    from .models.zoo import model_info

    meta = model_info(name_or_path)
    meta.pop("history", None)
    click.echo(json.dumps(meta, indent=2, sort_keys=True))


@models.command("sample")
@click.argument("generators")
@click.option("--per-class", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@friendly_errors
def models_sample(generators: str, per_class: int, seed: int, out: str) -> None:
    """Write a PNG grid of generated images: one row per class (GENERATORS: a name or a file)."""
    import torch

    from .models.zoo import load_generators
    from .report import save_grid

    if per_class < 1:
        raise click.BadParameter("must be at least 1", param_hint="--per-class")
    family = load_generators(generators)
    g = torch.Generator().manual_seed(seed)
    images = torch.cat([family.sample(c, per_class, generator=g)[1] for c in range(len(family))])
    save_grid(images, out, ncol=per_class, row_labels=list(family.class_names))
    click.echo(f"wrote {out}")


@main.command("correctness")
@click.option("--classifier", "classifier_name", default="mnist-small", show_default=True, help="Name or file.")
@click.option("--generators", "generators_name", default="mnist-gan", show_default=True, help="Name or file.")
@click.option("-n", "n", type=int, default=10_000, show_default=True, help="Samples per class (budget if sequential).")
@click.option("--delta", type=float, default=0.05, show_default=True, help="Checks P(correct) ≥ 1 − δ per class.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--sequential", is_flag=True, help="Stop each class as soon as the anytime-valid test decides.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for result.json and outliers.png.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def correctness_cmd(
    classifier_name: str, generators_name: str, n: int, delta: float, confidence: float, seed: int,
    batch_size: int, sequential: bool, device: str, out: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Global correctness of a classifier against generators: per-class estimate, exact CI and δ verdict."""
    from pathlib import Path

    from .estimate import global_correctness
    from .models.zoo import load_classifier, load_generators

    res = global_correctness(
        load_classifier(classifier_name), load_generators(generators_name), n=n, delta=delta,
        confidence=confidence, seed=seed, batch_size=batch_size, device=device, sequential=sequential,
        show_progress=not quiet,
    )  # fmt: skip
    click.echo(res.table())
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        res.save_json(folder / "result.json")
        res.save_confidence_profile(folder / "confidence_profile.png")
        written = ["result.json", "confidence_profile.png"]
        if res.outlier_list:
            res.outliers(64).save(folder / "outliers.png")
            written.append("outliers.png")
        click.echo(f"wrote {', '.join(written)} in {folder}")


@main.group()
def reproduce() -> None:
    """Reproduce the paper's studies (resumable: rerun to continue)."""


@reproduce.command("correctness-table")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True)
@click.option("-n", "n", type=int, default=10_000, show_default=True, help="Generated images per class and cell.")
@click.option("--rows", default=None, help="Comma-separated rows (default: all: built-in, small, medium, large, "
              "*-aug, madry, papernot).")  # fmt: skip
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Folder for trained classifiers and cached cells (default: the cache).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated latents.")
@click.option("--train-seeds", default="0", show_default=True,
              help="Training seeds of the classifiers, e.g. 0,1,2: one table each, and with several, "
              "OUT/correctness-table-DATASET-spread.{md,json} (how much the numbers move when retrained).")  # fmt: skip
@DATA_DIR_OPTION
@click.option("--quiet", is_flag=True)
@friendly_errors
def reproduce_correctness_table(
    dataset: str, n: int, rows: str | None, work: str | None, out: str, seed: int, train_seeds: str,
    data_dir: str | None, quiet: bool,
) -> None:  # fmt: skip
    """The table of global correctness (classifiers × GANs); writes OUT/correctness-table-DATASET.{md,json}.

    Tables for a training seed k ≠ 0 go to OUT/correctness-table-DATASET-trainK.{md,json}.
    """
    from pathlib import Path

    from .data.store import cache_dir
    from .errors import GenrobustError
    from .experiments.correctness_table import (
        ALL_ROWS,
        BUILTIN_ROW,
        TablePlan,
        check_rows,
        run_table,
        seed_spread,
        seed_spread_markdown,
        to_markdown,
    )

    try:
        seeds = [int(s) for s in train_seeds.split(",") if s.strip()]
    except ValueError:
        raise GenrobustError(f"--train-seeds must be integers separated by commas, got {train_seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise GenrobustError(f"--train-seeds needs distinct non-negative integers, got {train_seeds!r}")
    if n <= 0:
        raise GenrobustError(f"-n must be positive, got {n}")
    wanted_by_seed = {}
    for k in seeds:  # everything is checked before any training starts
        if rows is not None:
            wanted_by_seed[k] = [r.strip() for r in rows.split(",") if r.strip()]
        else:  # the shipped model has no training seed
            wanted_by_seed[k] = [r for r in ALL_ROWS if r != BUILTIN_ROW or k == 0]
        check_rows(wanted_by_seed[k], k)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {}
    for k in seeds:
        plan = TablePlan(dataset, n, wanted_by_seed[k], Path(work) if work else cache_dir() / "reproduce", seed, k)
        tables[k] = table = run_table(plan, data_dir=data_dir, show_progress=not quiet)
        md = to_markdown(table, dataset, n)
        stem = f"correctness-table-{dataset}" + (f"-train{k}" if k else "")
        (folder / f"{stem}.md").write_text(md + "\n")
        (folder / f"{stem}.json").write_text(json.dumps(table, indent=2) + "\n")
        click.echo(md)
    if len(seeds) > 1:
        spread = seed_spread(tables, dataset)
        md = seed_spread_markdown(spread, dataset)
        (folder / f"correctness-table-{dataset}-spread.md").write_text(md + "\n")
        (folder / f"correctness-table-{dataset}-spread.json").write_text(json.dumps(spread, indent=2) + "\n")
        click.echo(md)


@reproduce.command("robustness-table")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True)
@click.option("-n", "n", type=int, default=100, show_default=True, help="Latent centres per class and row.")
@verify_options
@click.option("--rows", default=None, help="Comma-separated rows (default: all of the correctness table).")
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Folder for trained classifiers and cached cells (default: the cache; shared with "
              "correctness-table).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@DATA_DIR_OPTION
@click.option("--quiet", is_flag=True)
@friendly_errors
def reproduce_robustness_table(
    dataset: str, n: int, eps_text: str, rows: str | None, classes: str | None, work: str | None, out: str,
    seed: int, max_boxes: int, max_seconds: float, split: str, data_dir: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Global robustness of every table row against the standard GAN; writes OUT/robustness-table-DATASET.{md,json}."""
    from pathlib import Path

    from .data.store import cache_dir
    from .experiments.correctness_table import ALL_ROWS
    from .experiments.robustness_table import RobustnessPlan, robustness_markdown, run_robustness_table

    eps, wanted = _eps_and_classes(eps_text, classes)
    plan = RobustnessPlan(
        dataset, n, [r.strip() for r in rows.split(",") if r.strip()] if rows else list(ALL_ROWS),
        Path(work) if work else cache_dir() / "reproduce", sorted(eps), seed, wanted, max_boxes, max_seconds, split,
    )  # fmt: skip
    table = run_robustness_table(plan, data_dir=data_dir, show_progress=not quiet)
    md = robustness_markdown(table, plan)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"robustness-table-{dataset}.md").write_text(md + "\n")
    (folder / f"robustness-table-{dataset}.json").write_text(json.dumps(table, indent=2) + "\n")
    click.echo(md)


@main.command("attack")
@click.option("--classifier", "classifier_name", default="mnist-small", show_default=True, help="Name or file.")
@click.option("--generators", "generators_name", default="mnist-gan", show_default=True, help="Name or file.")
@click.option("--method", type=click.Choice(["blackbox", "whitebox", "pgd"]), default="pgd", show_default=True)
@click.option("--source", type=int, required=True, help="Class whose generator draws the starting images.")
@click.option("--target", type=int, default=None, help="Class to reach (default: untargeted, any other class).")
@click.option("--eps", "eps_text", default="0.5", show_default=True, help="Radius in latent space; a list: 0.1,0.3,1")
@click.option("--starts", type=int, default=100, show_default=True, help="Starting latents drawn.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, default=None, help="Search steps (default 16; pgd 20).")
@click.option("--directions", type=int, default=10, show_default=True, help="blackbox: directions tried per step.")
@click.option("--restarts", type=int, default=4, show_default=True, help="pgd: random restarts.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for result, pictures.")
@click.option("--show", type=int, default=16, show_default=True, help="Pairs drawn in pairs.png.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def attack_cmd(
    classifier_name: str, generators_name: str, method: str, source: int, target: int | None, eps_text: str,
    starts: int, seed: int, steps: int | None, directions: int, restarts: int, device: str, out: str | None,
    show: int, quiet: bool,
) -> None:  # fmt: skip
    """Realistic adversarial examples: ε-close latents whose images the classifier labels differently."""
    from pathlib import Path

    from .attacks import realistic_adversarial
    from .models.zoo import load_classifier, load_generators
    from .report.adversarial import save_pairs, save_path_gif

    try:
        eps = [float(e) for e in eps_text.split(",") if e.strip()]
    except ValueError:
        raise click.BadParameter(f"not a list of numbers: {eps_text!r}", param_hint="--eps") from None
    clf, gens = load_classifier(classifier_name), load_generators(generators_name)
    res = realistic_adversarial(
        clf, gens, source=source, target=target, eps=eps, method=method, n_starts=starts, seed=seed,
        device=device, show_progress=not quiet, steps=steps, directions=directions, restarts=restarts,
    )  # fmt: skip
    click.echo(res.table())
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(res.to_dict(), indent=2) + "\n")
        written = ["result.json"]
        examples = res.examples()
        if examples:
            names = list(gens.class_names)
            save_pairs(examples[:show], gens[source], folder / "pairs.png", class_names=names)
            save_path_gif(examples[0], clf, gens[source], folder / "path.gif", class_names=names)
            written += ["pairs.png", "path.gif"]
        click.echo(f"wrote {', '.join(written)} in {folder}")


@main.command("robustness")
@click.option("--classifier", "classifier_name", default="mnist-small", show_default=True, help="Name or file.")
@click.option("--generators", "generators_name", default="mnist-gan", show_default=True, help="Name or file.")
@verify_options
@click.option("-n", "n", type=int, default=100, show_default=True, help="Centres per class (budget if sequential).")
@click.option("--delta", type=float, default=0.05, show_default=True, help="Checks P(robust) ≥ 1 − δ per class.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same centres as correctness.")
@click.option("--sequential", is_flag=True, help="Stop each class once every ε is decided (anytime-valid).")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for result.json and pictures.")
@click.option("--show", type=int, default=16, show_default=True, help="Falsified pairs drawn in pairs.png.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def robustness_cmd(
    classifier_name: str, generators_name: str, eps_text: str, n: int, delta: float, confidence: float, seed: int,
    classes: str | None, sequential: bool, max_boxes: int, max_seconds: float, split: str, device: str,
    out: str | None, show: int, quiet: bool,
) -> None:  # fmt: skip
    """Global (ε, δ)-robustness: each centre's ε-box certified, falsified or unknown; P(robust) bounded both ways."""
    from pathlib import Path

    from .models.zoo import load_classifier, load_generators
    from .report.adversarial import save_pairs, save_path_gif
    from .report.robustness import falsified_examples, save_robustness_curve
    from .verify import VerifyOptions, global_robustness

    eps, wanted = _eps_and_classes(eps_text, classes)
    clf, gens = load_classifier(classifier_name), load_generators(generators_name)
    options = VerifyOptions(max_boxes=max_boxes, max_seconds=max_seconds, split=split)
    res = global_robustness(clf, gens, eps=eps, n=n, delta=delta, confidence=confidence, seed=seed, classes=wanted,
                            sequential=sequential, options=options, device=device, show_progress=not quiet)  # fmt: skip
    click.echo(res.table())
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        res.save_json(folder / "result.json")
        save_robustness_curve(res, folder / "robustness_curve.png")
        written = ["result.json", "robustness_curve.png"]
        by_class = {c: falsified_examples(res, c, show, clf) for c in res.local}
        cls = max(by_class, key=lambda c: len(by_class[c]))  # the class with the most witnesses
        if by_class[cls]:
            names = list(gens.class_names)
            save_pairs(by_class[cls], gens[cls], folder / "pairs.png", class_names=names)
            save_path_gif(by_class[cls][0], clf, gens[cls], folder / "path.gif", class_names=names)
            written += ["pairs.png", "path.gif"]
        click.echo(f"wrote {', '.join(written)} in {folder}")


DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:1, ..."
)


@main.group()
def train() -> None:
    """Train classifiers and GANs (seeded, resumable: rerun the same command to continue)."""


@train.command("classifier")
@click.option("--dataset", default="mnist", show_default=True)
@click.option("--arch", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
@click.option("--data", type=click.Choice(["standard", "augmented"]), default="standard", show_default=True)
@click.option(
    "--method",
    type=click.Choice(["standard", "pgd", "distill"]),
    default="standard",
    show_default=True,
    help="pgd: Madry et al. adversarial training; distill: Papernot et al. defensive distillation.",
)
@click.option("--epochs", type=float, default=5, show_default=True, help="May be fractional (0.25 = a quarter pass).")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pgd-eps", type=float, default=0.3, show_default=True, help="L∞ radius of PGD (images in [0, 1]).")
@click.option("--pgd-steps", type=int, default=40, show_default=True)
@click.option("--pgd-step-size", type=float, default=0.01, show_default=True)
@click.option("--temperature", type=float, default=100.0, show_default=True, help="Distillation temperature T.")
@click.option(
    "--fp16", is_flag=True, help="Store in float16 each weight tensor whose rounding changes no test-set prediction."
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for checkpoints and weights.")
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def train_classifier_cmd(out: str, data_dir: str | None, device: str, quiet: bool, fp16: bool, **kw: Any) -> None:
    """Train one of the paper's classifiers; writes OUT/classifier.safetensors."""
    from .train.classifier import ClassifierRecipe, train_classifier

    recipe = ClassifierRecipe(**kw)
    res = train_classifier(recipe, out=out, data_dir=data_dir, device=device, show_progress=not quiet, half=fp16)
    click.echo(f"test accuracy {res.test_accuracy:.4f}; wrote {res.path}")


@train.command("gan")
@click.option("--dataset", default="mnist", show_default=True)
@click.option(
    "--data",
    type=click.Choice(["standard", "augmented", "half-a", "half-b"]),
    default="standard",
    show_default=True,
    help="half-a / half-b: disjoint halves of train+test pooled.",
)
@click.option("--conditional", is_flag=True, help="One class-conditional GAN instead of one GAN per class.")
@click.option("--steps", type=int, default=6000, show_default=True, help="Per class, or in all if conditional.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--latent-dim", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--classes", default=None, help="Comma-separated classes to train now (per-class GANs only).")
@click.option("--fp16", is_flag=True, help="Store the generators in float16.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for checkpoints and weights.")
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def train_gan_cmd(
    out: str, data_dir: str | None, device: str, quiet: bool, fp16: bool, classes: str | None, **kw: Any
) -> None:
    """Train the paper's GAN for every class (or a conditional one); writes OUT/generators.safetensors."""
    from .train.gan import GANRecipe, train_gan

    wanted = None
    if classes:
        try:
            wanted = [int(c) for c in classes.split(",")]
        except ValueError:
            raise click.BadParameter("a comma-separated list of class numbers", param_hint="--classes") from None
    recipe = GANRecipe(**kw)
    _, path = train_gan(
        recipe, out=out, data_dir=data_dir, device=device, show_progress=not quiet, half=fp16, classes=wanted
    )
    click.echo(f"wrote {path if path.is_file() else out}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
