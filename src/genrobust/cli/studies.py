"""The studies behind the definitions: ``genrobust random-walk`` (continuity) and ``generators assess``
(variety and realism)."""

from __future__ import annotations

import click

from .app import (
    DATA_DIR_OPTION,
    DEVICE_OPTION,
    QUIET_OPTION,
    ResultFolder,
    friendly_errors,
    load_models,
    main,
    model_options,
)


@main.command("random-walk")
@model_options
@click.option("--class", "cls", type=int, default=8, show_default=True, help="Class whose generator walks.")
@click.option("--steps", type=int, default=60, show_default=True, help="Steps of the walk.")
@click.option("--step", type=float, default=0.1, show_default=True, help="Standard deviation of each step.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eps", "eps_text", default="0.01,0.03,0.1,0.3,1", show_default=True,
              help="Latent radii of the continuity measure.")  # fmt: skip
@click.option("-n", "n", type=int, default=200, show_default=True, help="Centres per class for the measure.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for walk.gif, walk.png, continuity.png, result.json.")  # fmt: skip
@DEVICE_OPTION
@QUIET_OPTION
@friendly_errors
def random_walk_cmd(cls: int, steps: int, step: float, seed: int, eps_text: str, n: int, out: str, device: str,
                    quiet: bool, **models: str | None) -> None:  # fmt: skip
    """The paper's random walk in latent space (a GIF and the classifier's probabilities along it) and how
    much the images change, per class, for latent moves of each ε."""
    from ..experiments.random_walk import continuity, save_continuity_plot, save_walk_gif, save_walk_plot, walk
    from ..runtime import resolve_device
    from .app import _numbers

    dev = resolve_device(device)
    clf, gens = load_models(**models)
    clf, gens = clf.to(dev), gens.to(dev)  # the command's own models: the walk and the measure follow their device
    if not 0 <= cls < len(gens):
        raise click.BadParameter(f"must be a class in 0..{len(gens) - 1}", param_hint="--class")
    eps = list(_numbers(eps_text, "--eps") or ())
    z, images, probs = walk(clf, gens, cls, steps=steps, step=step, seed=seed)
    files = ResultFolder(out)
    names = list(gens.class_names)
    save_walk_gif(images, probs, files.path("walk.gif"), class_names=names)
    save_walk_plot(probs, files.path("walk.png"), class_names=names, cls=cls, images=images)
    res = continuity(gens, eps=eps, n=n, seed=seed, classifier=clf.eval())
    save_continuity_plot(res, files.path("continuity.png"))
    labels = probs.argmax(1)
    files.json("result.json", {"walk": {"class": cls, "steps": steps, "step": step, "seed": seed,
                                        "z": z.tolist(), "labels": labels.tolist(), "probabilities": probs.tolist()},
                               "continuity": res.to_dict()})  # fmt: skip
    click.echo(f"walk of class {names[cls]}: labelled {names[cls]} at {int((labels == cls).sum())} of {steps + 1} "
               "steps")  # fmt: skip
    click.echo(res.table())
    files.report()


@main.group("generators")
def generators_group() -> None:
    """Judge generative models themselves."""


@generators_group.command("assess")
@click.option("--generators", "names", default="mnist-gan,mnist-gan-aug", show_default=True,
              help="Comma-separated generator families (names or files) of one dataset.")  # fmt: skip
@click.option("--classifier", default=None, help="Feature extractor (default: the dataset's built-in classifier).")
@click.option("--dataset", default="mnist", show_default=True)
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Images per class on each side.")
@click.option("-k", "k", type=int, default=3, show_default=True, help="Neighbours defining the manifolds.")
@click.option("--seed", type=int, default=0, show_default=True)
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for result.json and table.md.")
@friendly_errors
def generators_assess(names: str, classifier: str | None, dataset: str, n: int, k: int, seed: int,
                      data_dir: str | None, device: str, out: str | None) -> None:  # fmt: skip
    """Precision and recall (k-NN manifolds) and Fréchet distance per class, in a classifier's feature space,
    with the real test set as the reference row."""
    from ..data import load_dataset
    from ..experiments.generator_quality import assess_generators
    from ..models.zoo import load_classifier, load_generators
    from ..runtime import resolve_device

    dev = resolve_device(device)
    clf_name = classifier or f"{dataset}-small"
    clf = load_classifier(clf_name).to(dev)  # the command's own models: the features follow their device
    train, test = load_dataset(dataset, "train", data_dir=data_dir), load_dataset(dataset, "test", data_dir=data_dir)
    families = {name.strip(): load_generators(name.strip()).to(dev) for name in names.split(",") if name.strip()}
    res = assess_generators(clf, families, train.tensors(), test.tensors(), n=n, k=k, seed=seed, dataset=dataset,
                            classifier_name=clf_name, class_names=train.class_names)  # fmt: skip
    click.echo(res.table())
    if out:
        files = ResultFolder(out)
        files.json("result.json", res.to_dict())
        files.text("table.md", res.table() + "\n\nPer class: precision / recall / Fréchet distance\n\n"
                   + res.class_table())  # fmt: skip
        files.report()
