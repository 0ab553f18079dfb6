"""The checks themselves: ``genrobust correctness``, ``robustness`` and ``attack``."""

from __future__ import annotations

import math

import click

from ..attacks import METHODS as ATTACK_METHODS
from ..verify.local import BRANCHES
from ..verify.robustness import CHUNK as ROBUSTNESS_CHUNK
from .app import (
    DEVICE_OPTION,
    QUIET_OPTION,
    ResultFolder,
    attach_coverage,
    auto_workers,
    coverage_options,
    eps_and_classes,
    friendly_errors,
    load_models,
    main,
    model_options,
    scale_options,
    shard_setup,
    verify_options,
)


def amls_options(f):
    """``--method amls`` and its settings, shared by ``correctness`` and ``robustness``."""
    opts = [
        click.option("--method", type=click.Choice(["mc", "amls"]), default="mc", show_default=True,
                     help="mc: plain Monte Carlo with exact intervals; amls: adaptive multilevel splitting, for "
                          "failure probabilities far below 1/n (down to 1e-9 and less)."),
        click.option("--particles", type=int, default=1000, show_default=True, help="amls: particles per run."),
        click.option("--quantile", type=float, default=0.5, show_default=True,
                     help="amls: share of particles killed per level."),
        click.option("--mcmc-steps", type=int, default=10, show_default=True,
                     help="amls: moves per particle and level."),
        click.option("--max-levels", type=int, default=100, show_default=True,
                     help="amls: levels before giving up."),
        click.option("--repeats", type=int, default=1, show_default=True,
                     help="amls: independent runs per class; with 2 or more the interval comes from their spread."),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


@main.command("correctness")
@model_options
@click.option("-n", "n", type=int, default=10_000, show_default=True, help="Samples per class (budget if sequential).")
@click.option("--delta", type=float, default=0.05, show_default=True, help="Checks P(correct) ≥ 1 − δ per class.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--batch-size", type=int, default=None, help="Samples per forward pass [default: 128 on a CPU, 4096 on a GPU]"
)
@click.option(
    "--shard-size", type=int, default=None,
    help="Samples per shard, the unit scheduled and journaled [default: 1024 on CPUs, 16384 on GPUs]",
)  # fmt: skip
@click.option("--sequential", is_flag=True, help="Stop each class as soon as the anytime-valid test decides.")
@amls_options
@DEVICE_OPTION
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for result.json, outliers.png and the run's journal.",
)
@scale_options
@coverage_options
@QUIET_OPTION
@friendly_errors
def correctness_cmd(
    n: int, delta: float, confidence: float, seed: int, batch_size: int | None, shard_size: int | None,
    sequential: bool, method: str, particles: int, quantile: float, mcmc_steps: int, max_levels: int, repeats: int,
    device: str, out: str | None, workers: int | None, scheduler: str | None, resume: bool,
    assess: str | None, assess_n: int, data_dir: str | None, quiet: bool, **models: str | None,
) -> None:  # fmt: skip
    """Global correctness of a classifier against generators: per-class estimate, exact CI and δ verdict."""

    from ..estimate import global_correctness
    from ..report.correctness import save_confidence_profile, save_outliers

    clf, gens = load_models(**models)
    attach_coverage(clf, gens, assess, assess_n, data_dir, str(models["classifier_name"]))
    if method == "amls":
        if sequential or workers or scheduler or resume:
            raise click.BadParameter("--method amls runs in this process, in one go: drop --sequential, --workers, "
                                     "--scheduler and --resume (its sample count is --particles, not -n)")  # fmt: skip
        _rare(clf, gens, delta, confidence, seed, particles, quantile, mcmc_steps, max_levels, repeats, device, out,
              quiet, batch_size)  # fmt: skip
        return
    executor, journal = shard_setup(workers, scheduler, resume, out)
    with executor:
        res = global_correctness(
            clf, gens, n=n, delta=delta,
            confidence=confidence, seed=seed, batch_size=batch_size, shard_size=shard_size, device=device,
            sequential=sequential, show_progress=not quiet, executor=executor, journal=journal, resume=resume,
        )  # fmt: skip
    click.echo(res.table())
    if out:
        files = ResultFolder(out)
        files.json("result.json", res.to_dict())
        save_confidence_profile(res, files.path("confidence_profile.png"))
        if res.outlier_list:
            save_outliers(res, files.path("outliers.png"), 64)
        files.report()


def _rare(clf, gens, delta, confidence, seed, particles, quantile, mcmc_steps, max_levels, repeats, device, out,
          quiet, batch_size, **robust) -> None:  # fmt: skip
    """``--method amls``: each class's failure probability by adaptive multilevel splitting (``robust``: eps,
    classes and the attack / verifier settings of ``robustness``)."""
    from ..rare import rare_failure
    from ..report.rare import save_failures, save_levels_plot

    res = rare_failure(clf, gens, delta=delta, confidence=confidence, particles=particles, quantile=quantile,
                       mcmc_steps=mcmc_steps, max_levels=max_levels, repeats=repeats, seed=seed, device=device,
                       batch_size=batch_size, show_progress=not quiet, **robust)  # fmt: skip
    click.echo(res.table())
    if out:
        files = ResultFolder(out)
        files.json("result.json", res.to_dict())
        save_levels_plot(res, files.path("levels.png"))
        if any(c.failures for c in res.classes):
            save_failures(res, files.path("failures.png"))
        files.report()


@main.command("attack")
@model_options
@click.option("--method", type=click.Choice(ATTACK_METHODS), default="pgd", show_default=True)
@click.option("--source", type=int, required=True, help="Class whose generator draws the starting images.")
@click.option("--target", type=int, default=None, help="Class to reach (default: untargeted, any other class).")
@click.option("--eps", "eps_text", default="0.5", show_default=True, help="Radius in latent space; a list: 0.1,0.3,1")
@click.option("--starts", type=int, default=100, show_default=True, help="Starting latents drawn.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, default=None, help="Search steps (default 16; pgd 20).")
@click.option("--directions", type=int, default=10, show_default=True, help="blackbox: directions tried per step.")
@click.option("--restarts", type=int, default=4, show_default=True, help="pgd: random restarts.")
@DEVICE_OPTION
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Folder for result, pictures and the run's journal."
)
@click.option("--show", type=int, default=16, show_default=True, help="Pairs drawn in pairs.png.")
@scale_options
@QUIET_OPTION
@friendly_errors
def attack_cmd(
    method: str, source: int, target: int | None, eps_text: str,
    starts: int, seed: int, steps: int | None, directions: int, restarts: int, device: str, out: str | None,
    show: int, workers: int | None, scheduler: str | None, resume: bool, quiet: bool, **models: str | None,
) -> None:  # fmt: skip
    """Realistic adversarial examples: ε-close latents whose images the classifier labels differently."""

    from ..attacks import realistic_adversarial
    from ..report.adversarial import save_pairs, save_path_gif

    try:
        eps = [float(e) for e in eps_text.split(",") if e.strip()]
    except ValueError:
        raise click.BadParameter(f"not a list of numbers: {eps_text!r}", param_hint="--eps") from None
    clf, gens = load_models(**models)
    executor, journal = shard_setup(workers, scheduler, resume, out)
    with executor:
        res = realistic_adversarial(
            clf, gens, source=source, target=target, eps=eps, method=method, n_starts=starts, seed=seed,
            device=device, show_progress=not quiet, steps=steps, directions=directions, restarts=restarts,
            executor=executor, journal=journal, resume=resume,
        )  # fmt: skip
    click.echo(res.table())
    if out:
        files = ResultFolder(out)
        files.json("result.json", res.to_dict())
        examples = res.examples()
        if examples:
            names = list(gens.class_names)
            save_pairs(examples[:show], gens[source], files.path("pairs.png"), class_names=names, display=gens.display)
            save_path_gif(
                examples[0], clf, gens[source], files.path("path.gif"), class_names=names, display=gens.display
            )
        files.report()


@main.command("robustness")
@model_options
@verify_options
@click.option("-n", "n", type=int, default=100, show_default=True, help="Centres per class (budget if sequential).")
@click.option("--delta", type=float, default=0.05, show_default=True, help="Checks P(robust) ≥ 1 − δ per class.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same centres as correctness.")
@click.option("--sequential", is_flag=True, help="Stop each class once every ε is decided (anytime-valid).")
@DEVICE_OPTION
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for result.json, pictures and the run's journal.",
)
@click.option("--show", type=int, default=16, show_default=True, help="Falsified pairs drawn in pairs.png.")
@click.option("--give-up", "give_up", default="1.5", show_default=True,
              help="Do not split a ball whose whole-box bound is below −GIVE_UP × its centre's margin ('none': "
                   "split every ball until its budget runs out).")  # fmt: skip
@click.option("--time-budget", "time_budget", type=float, default=None,
              help="Seconds of splitting for the whole run, spread over the balls still open: a ball decided early "
                   "leaves its time to the others, and hopeless-looking balls are attacked first and split last "
                   "instead of given up. Every ball still gets its first bound and attack, so a run can pass it by "
                   "about one bound per ball. With --workers N the N processes spend it side by side (each ball "
                   "gets N × its share of one process's seconds); on a CPU two processes of one thread decide more "
                   "in the same wall time than one process of two threads.")  # fmt: skip
@click.option(
    "--alpha-steps",
    "alpha_steps",
    type=int,
    default=0,
    show_default=True,
    help="α-CROWN steps on the margins' bound of each box the plain bound leaves open (0: off).",
)
@click.option(
    "--alpha-maps",
    "alpha_maps",
    type=int,
    default=0,
    show_default=True,
    help="α-CROWN steps on the intermediate bounds of the classifier's last two convolutions, on each ball's whole "
    "box (0: off; about 20x a box's time, and on the built-in models no split saved: see docs/verify-complete.md).",
)
@click.option("--fan", type=int, default=3, show_default=True,
              help="Latent halvings one split may make at once, as many as a box's bound is predicted to need "
                   "(1: split in two, box by box).")  # fmt: skip
@click.option("--oblique/--no-oblique", default=True, show_default=True,
              help="Cut an undecided box across the direction its open neurons' latent coefficients share (then "
                   "halve coordinates for the fan's other levels); --no-oblique halves coordinates only.")  # fmt: skip
@click.option("--near-alpha", "near_alpha", type=int, default=5, show_default=True,
              help="α-CROWN steps on the margins of the near misses: boxes whose bound falls short of a proof by at "
                   "most --near-share x the centre's margin (0: off).")  # fmt: skip
@click.option("--near-share", "near_share", type=float, default=0.15, show_default=True,
              help="How far short of a proof (a share of the centre's margin) a box's bound may fall and still get "
                   "--near-alpha's steps.")  # fmt: skip
@click.option("--lower-ratio", "lower_ratio", type=float, default=2.0, show_default=True,
              help="An unstable ReLU's lower line takes slope 1 where u >= ratio x (-l), else the flat piece "
                   "(1: CROWN's adaptive rule; 2 gives tighter bounds on the built-in models).")  # fmt: skip
@click.option("--refine-to-latent/--no-refine-to-latent", "refine_to_latent", default=True, show_default=True,
              help="Carry the classifier's intermediate bounds on through the generator to the latent where "
                   "the image leaves a neuron unstable (tighter bounds, about 1.1x the time per box); "
                   "--no-refine-to-latent stops them at the image.")  # fmt: skip
@click.option("--branch", type=click.Choice(BRANCHES), default="latent", show_default=True,
              help="Split undecided boxes on latent dimensions, on the classifier's ReLUs (β-CROWN splits), or per "
                   "box on whichever the bound rates higher.")  # fmt: skip
@amls_options
@click.option("--attack-steps", type=int, default=5, show_default=True,
              help="amls: attack steps that score each box (its worst margin found).")  # fmt: skip
@click.option("--verify", "verify_last", type=int, default=16, show_default=True,
              help="amls: boxes per class of the last level that go to the verifier.")  # fmt: skip
@scale_options(auto=True)
@coverage_options
@QUIET_OPTION
@friendly_errors
def robustness_cmd(
    eps_text: str, n: int, delta: float, confidence: float, seed: int,
    classes: str | None, sequential: bool, max_boxes: int, max_seconds: float, split: str, device: str,
    out: str | None, show: int, give_up: str, time_budget: float | None, alpha_steps: int, alpha_maps: int,
    fan: int, oblique: bool, near_alpha: int, near_share: float, lower_ratio: float, refine_to_latent: bool,
    branch: str, method: str, particles: int, quantile: float, mcmc_steps: int, max_levels: int, repeats: int,
    attack_steps: int, verify_last: int, workers: int | str | None, scheduler: str | None, resume: bool,
    assess: str | None, assess_n: int, data_dir: str | None, quiet: bool, **models: str | None,
) -> None:  # fmt: skip
    """Global (ε, δ)-robustness: each centre's ε-box certified, falsified or unknown; P(robust) bounded both ways."""

    from ..bounds.engine import BoundOptions
    from ..report.adversarial import save_pairs, save_path_gif
    from ..report.robustness import falsified_examples, save_robustness_curve
    from ..verify import VerifyOptions, global_robustness

    eps, wanted = eps_and_classes(eps_text, classes)
    clf, gens = load_models(**models)
    attach_coverage(clf, gens, assess, assess_n, data_dir, str(models["classifier_name"]))
    try:
        rule = None if give_up.strip().lower() == "none" else float(give_up)
    except ValueError:
        raise click.BadParameter(f"--give-up takes a number ≥ 0 or 'none', not {give_up!r}") from None
    if time_budget is not None and not (math.isfinite(time_budget) and time_budget > 0):
        raise click.BadParameter(f"--time-budget takes a number of seconds > 0, not {time_budget}")
    balls = n * (len(wanted) if wanted is not None else len(gens))
    shards = (len(wanted) if wanted is not None else len(gens)) * math.ceil(n / ROBUSTNESS_CHUNK)
    if method == "amls" and (sequential or workers != "auto" or scheduler or resume):
        raise click.BadParameter("--method amls runs in this process, in one go: drop --sequential, --workers, "
                                 "--scheduler and --resume (its sample count is --particles, not -n)")  # fmt: skip
    workers = auto_workers(workers, shards=shards, device=device, scheduler=scheduler)
    if not (lower_ratio >= 0):
        raise click.BadParameter(f"--lower-ratio takes a number ≥ 0, not {lower_ratio}")
    bounds = BoundOptions(alpha_steps=alpha_steps, alpha_maps=alpha_maps, alpha_map_layers=2,
                          refine_to_latent=refine_to_latent, lower_ratio=lower_ratio)  # fmt: skip
    options = VerifyOptions(bounds=bounds, max_boxes=max_boxes,
                            max_seconds=max_seconds, split=split, give_up=rule, branch=branch, fan=fan,
                            oblique=oblique, near_alpha=near_alpha, near_share=near_share,
                            mean_seconds=pool_per_ball(time_budget, balls, workers))  # fmt: skip
    if method == "amls":
        if len(eps) != 1:
            raise click.BadParameter(f"--method amls takes one ε, not {len(eps)}")
        _rare(clf, gens, delta, confidence, seed, particles, quantile, mcmc_steps, max_levels, repeats, device, out,
              quiet, None, eps=eps[0], classes=wanted, attack_steps=attack_steps, verify=verify_last,
              verify_options=options)  # fmt: skip
        return
    executor, journal = shard_setup(workers, scheduler, resume, out)
    with executor:
        res = global_robustness(clf, gens, eps=eps, n=n, delta=delta, confidence=confidence, seed=seed,
                                classes=wanted, sequential=sequential, options=options, device=device,
                                show_progress=not quiet, executor=executor, journal=journal, resume=resume)  # fmt: skip
    click.echo(res.table())
    if out:
        files = ResultFolder(out)
        files.json("result.json", res.to_dict())
        save_robustness_curve(res, files.path("robustness_curve.png"))
        by_class = {c: falsified_examples(res, c, show, clf) for c in res.local}
        cls = max(by_class, key=lambda c: len(by_class[c]))  # the class with the most witnesses
        if by_class[cls]:
            names = list(gens.class_names)
            save_pairs(by_class[cls], gens[cls], files.path("pairs.png"), class_names=names, display=gens.display)
            save_path_gif(
                by_class[cls][0], clf, gens[cls], files.path("path.gif"), class_names=names, display=gens.display
            )
        files.report()


def pool_per_ball(time_budget: float | None, balls: int, workers: int | None) -> float | None:
    """``--time-budget`` as ``VerifyOptions.mean_seconds``: the run's wall-clock seconds over its balls, times the
    local worker processes that spend them side by side (each ball's seconds are its own process's).

    Why times the workers: with two processes of one thread on a two-core CPU, a budget divided by the balls alone
    would end the run in half its wall time. Measured at ε = 0.05 (stop 68, the first 200 balls, 5 s of wall time a
    ball): two processes of one thread with 10 s a ball decide 79.5%, one process of two threads with 5 s 71.5%."""
    if time_budget is None:
        return None
    return time_budget * (workers or 1) / balls
