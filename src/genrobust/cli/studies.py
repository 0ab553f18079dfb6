"""The studies behind the definitions: ``genrobust random-walk`` (continuity of the generators)."""

from __future__ import annotations

import click

from .app import QUIET_OPTION, ResultFolder, friendly_errors, load_models, main, model_options


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
@QUIET_OPTION
@friendly_errors
def random_walk_cmd(cls: int, steps: int, step: float, seed: int, eps_text: str, n: int, out: str, quiet: bool,
                    **models: str | None) -> None:  # fmt: skip
    """The paper's random walk in latent space (a GIF and the classifier's probabilities along it) and how
    much the images change, per class, for latent moves of each ε."""
    from ..experiments.random_walk import continuity, save_continuity_plot, save_walk_gif, save_walk_plot, walk
    from .app import _numbers

    clf, gens = load_models(**models)
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
