"""``genrobust train``: classifiers, GANs and the image-conditional generator from recipes, resumable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from ..models.classifiers import CLASSIFIER_ARCHS
from ..train.classifier import CLASSIFIER_DATA, LR_SCHEDULES
from ..train.classifier import METHODS as CLASSIFIER_METHODS
from ..train.common import DATA_VARIANTS
from ..train.generator import METHODS as GENERATOR_METHODS
from .app import DATA_DIR_OPTION, DEVICE_OPTION, friendly_errors, main


@main.group()
def train() -> None:
    """Train classifiers and GANs (seeded, resumable: rerun the same command to continue)."""


@train.command("classifier")
@click.option("--dataset", default="mnist", show_default=True)
@click.option("--arch", type=click.Choice(tuple(CLASSIFIER_ARCHS)), default="small", show_default=True)
@click.option("--data", type=click.Choice(CLASSIFIER_DATA), default="standard", show_default=True)
@click.option(
    "--method",
    type=click.Choice(CLASSIFIER_METHODS),
    default="standard",
    show_default=True,
    help="pgd: Madry et al. adversarial training; distill: Papernot et al. defensive distillation.",
)
@click.option("--epochs", type=float, default=5, show_default=True, help="May be fractional (0.25 = a quarter pass).")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default="constant", show_default=True)
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
    from ..train.classifier import ClassifierRecipe, train_classifier

    recipe = ClassifierRecipe(**kw)
    res = train_classifier(recipe, out=out, data_dir=data_dir, device=device, show_progress=not quiet, half=fp16)
    click.echo(f"test accuracy {res.test_accuracy:.4f}; wrote {res.path}")


def _generator_output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What every generator trainer takes besides its recipe: --fp16, --out, --data-dir, --device, --quiet."""
    for option in reversed([
        click.option("--fp16", is_flag=True, help="Store the generators in float16."),
        click.option("--out", type=click.Path(file_okay=False), required=True,
                     help="Folder for checkpoints and weights."),
        DATA_DIR_OPTION,
        DEVICE_OPTION,
        click.option("--quiet", is_flag=True, help="No progress bars."),
        friendly_errors,
    ]):  # fmt: skip
        fn = option(fn)
    return fn


@train.command("gan")
@click.option("--dataset", default="mnist", show_default=True)
@click.option(
    "--data",
    type=click.Choice(DATA_VARIANTS),
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
@click.option("--split-seed", type=int, default=None, help="Seed of the disjoint halves (default: --seed).")
@click.option("--classes", default=None, help="Comma-separated classes to train now (per-class GANs only).")
@_generator_output_options
def train_gan_cmd(
    out: str, data_dir: str | None, device: str, quiet: bool, fp16: bool, classes: str | None, **kw: Any
) -> None:
    """Train the paper's GAN for every class (or a conditional one); writes OUT/generators.safetensors."""
    from ..train.gan import GANRecipe, train_gan

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


@train.command("generator")
@click.option("--recipe", "method", type=click.Choice(GENERATOR_METHODS), default="hinge-cgan",
              show_default=True, help="hinge-cgan: hinge loss, spectrally normalised projection discriminator, EMA "
              "generator; cvae: a conditional VAE's decoder.")  # fmt: skip
@click.option("--dataset", default="mnist", show_default=True)
@click.option("--data", type=click.Choice(CLASSIFIER_DATA), default="standard", show_default=True)
@click.option("--latent-dim", type=int, default=16, show_default=True)
@click.option("--hidden", default="256,512,1024", show_default=True, help="The generator's hidden layer sizes.")
@click.option("--steps", type=int, default=20_000, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--ema", type=float, default=0.999, show_default=True, help="hinge-cgan: decay of the weight average.")
@click.option("--beta", type=float, default=1.0, show_default=True, help="cvae: weight of the KL term.")
@click.option(
    "--smooth",
    type=float,
    default=0.0,
    show_default=True,
    help="hinge-cgan: weight of a penalty on the images' change per unit of latent (cheaper verification).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--assess-n",
    type=int,
    default=1000,
    show_default=True,
    help="Real and generated images per class for the coverage stored with the weights (0: skip).",
)
@_generator_output_options
def train_generator_cmd(
    out: str, data_dir: str | None, device: str, quiet: bool, fp16: bool, hidden: str, assess_n: int, **kw: Any
) -> None:
    """Train a class-conditional generator that covers its classes; writes OUT/generators.safetensors with its
    measured precision / recall per class (shown beside every verdict on it). Resumes from OUT's checkpoint."""
    from ..train.generator import GeneratorRecipe, train_generator

    try:
        sizes = tuple(int(h) for h in hidden.split(","))
    except ValueError:
        raise click.BadParameter("a comma-separated list of layer sizes", param_hint="--hidden") from None
    family, path = train_generator(GeneratorRecipe(hidden=sizes, **kw), out=out, data_dir=data_dir, device=device,
                                   show_progress=not quiet, half=fp16, assess_n=assess_n)  # fmt: skip
    if family.coverage is not None:
        cov = family.coverage
        mean_p, mean_r = sum(cov.precision) / len(cov.precision), sum(cov.recall) / len(cov.recall)
        click.echo(f"precision {mean_p:.2f}, recall {mean_r:.2f} (worst class {min(cov.recall):.2f})")
    click.echo(f"wrote {path}")


@train.command("variation")
@click.option("--dataset", default="mnist", show_default=True)
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--latent-dim", type=int, default=8, show_default=True)
@click.option("--pool", type=int, default=4, show_default=True, help="The thumbnail averages POOL × POOL blocks.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for checkpoints and weights.")
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def train_variation_cmd(out: str, data_dir: str | None, device: str, quiet: bool, **kw: Any) -> None:
    """Train an image-conditional generator (a conditional VAE: thumbnail ⊕ latent → image), the generator of
    ``genrobust export vnnlib --variation``; writes OUT/variation.safetensors."""
    from ..train.variation import VariationRecipe, train_variation

    _, path = train_variation(VariationRecipe(**kw), out=out, data_dir=data_dir, device=device,
                              show_progress=not quiet)  # fmt: skip
    click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
