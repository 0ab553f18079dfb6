"""``genrobust reproduce``: the paper's tables (correctness) and the one it could not run (robustness)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from ..errors import GenrobustError
from ..runtime import resolve_device, write_atomic
from .app import (
    DATA_DIR_OPTION,
    DEVICE_OPTION,
    SCHEDULER_OPTION,
    WORKERS_OPTION,
    ResultFolder,
    eps_and_classes,
    friendly_errors,
    main,
    open_executor,
    verify_options,
)


@main.group()
def reproduce() -> None:
    """Reproduce the paper's studies (resumable: rerun to continue)."""


@reproduce.command("correctness-table")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True)
@click.option("-n", "n", type=int, default=10_000, show_default=True, help="Generated images per class and cell.")
@click.option("--rows", default=None, help="Comma-separated rows (default: all: built-in, small, medium, large, "
              "*-aug, madry, papernot).")  # fmt: skip
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Folder for trained classifiers and cached cells (default: the cache). Processes with disjoint "
                   "--rows may share it: each finished cell is merged into the cache as it is on disk.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated latents.")
@click.option("--train-seeds", default="0", show_default=True,
              help="Training seeds of the classifiers, e.g. 0,1,2: one table each, and with several, "
              "OUT/correctness-table-DATASET-spread.{md,json} (how much the numbers move when retrained).")  # fmt: skip
@WORKERS_OPTION
@SCHEDULER_OPTION
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--quiet", is_flag=True)
@friendly_errors
def reproduce_correctness_table(
    dataset: str, n: int, rows: str | None, work: str | None, out: str, seed: int, train_seeds: str,
    workers: int | None, scheduler: str | None, data_dir: str | None, device: str, quiet: bool,
) -> None:  # fmt: skip
    """The table of global correctness (classifiers × GANs); writes OUT/correctness-table-DATASET.{md,json}.

    Tables for a training seed k ≠ 0 go to OUT/correctness-table-DATASET-trainK.{md,json}.
    """

    from ..data.store import cache_dir
    from ..experiments.correctness_table import (
        ALL_ROWS,
        BUILTIN_ROW,
        TablePlan,
        check_rows,
        run_table,
        seed_spread,
        seed_spread_markdown,
    )
    from ..experiments.tables import CorrectnessTable
    from ..results import Provenance

    try:
        seeds = [int(s) for s in train_seeds.split(",") if s.strip()]
    except ValueError:
        raise GenrobustError(f"--train-seeds must be integers separated by commas, got {train_seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise GenrobustError(f"--train-seeds needs distinct non-negative integers, got {train_seeds!r}")
    if n <= 0:
        raise GenrobustError(f"-n must be positive, got {n}")
    dev = resolve_device(device)
    wanted_by_seed = {}
    for k in seeds:  # everything is checked before any training starts
        if rows is not None:
            wanted_by_seed[k] = [r.strip() for r in rows.split(",") if r.strip()]
        else:  # the shipped model has no training seed
            wanted_by_seed[k] = [r for r in ALL_ROWS if r != BUILTIN_ROW or k == 0]
        check_rows(wanted_by_seed[k], k)
    files = ResultFolder(out)  # made before any training: an unwritable --out fails at once
    tables = {}
    with open_executor(workers, scheduler) as executor:
        for k in seeds:
            plan = TablePlan(dataset, n, wanted_by_seed[k], Path(work) if work else cache_dir() / "reproduce", seed, k)
            tables[k] = table = run_table(
                plan, data_dir=data_dir, show_progress=not quiet, executor=executor, device=dev
            )
            result = CorrectnessTable(dataset, n, seed, k, table, Provenance(
                {"dataset": dataset, "n": n, "seed": seed, "train_seed": k, "rows": list(table)},
                {row: {"classifier": e.get("classifier_sha256"), "generators": e.get("generators_sha256")}
                 for row, e in table.items()}))  # fmt: skip
            md = result.markdown()
            stem = f"correctness-table-{dataset}" + (f"-train{k}" if k else "")
            files.text(f"{stem}.md", md)
            files.json(f"{stem}.json", result.to_dict())
            click.echo(md)
    if len(seeds) > 1:
        spread = seed_spread(tables, dataset)
        md = seed_spread_markdown(spread, dataset)
        files.text(f"correctness-table-{dataset}-spread.md", md)
        files.json(f"correctness-table-{dataset}-spread.json", spread)
        click.echo(md)
    files.report()


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
@click.option("--train-seed", type=int, default=0, show_default=True,
              help="Training seed of the rows' classifiers (trained if missing, as in correctness-table).")  # fmt: skip
@click.option("--save-every", type=int, default=10, show_default=True,
              help="Balls per shard: a worker's unit of work, journaled as it finishes (a kill loses at most the "
                   "shards in flight).")  # fmt: skip
@WORKERS_OPTION
@SCHEDULER_OPTION
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--quiet", is_flag=True)
@friendly_errors
def reproduce_robustness_table(
    dataset: str, n: int, eps_text: str, rows: str | None, classes: str | None, work: str | None, out: str,
    seed: int, train_seed: int, save_every: int, max_boxes: int, max_seconds: float, split: str,
    workers: int | None, scheduler: str | None, data_dir: str | None, device: str, quiet: bool,
) -> None:  # fmt: skip
    """Global robustness of every table row against the standard GAN; writes OUT/robustness-table-DATASET.{md,json}."""

    from ..data.store import cache_dir
    from ..experiments.correctness_table import ALL_ROWS, BUILTIN_ROW
    from ..experiments.robustness_table import RobustnessPlan, robustness_markdown, run_robustness_table
    from ..experiments.tables import RobustnessTable
    from ..models.zoo import ZOO
    from ..results import Provenance

    eps, wanted = eps_and_classes(eps_text, classes)
    dev = resolve_device(device)
    default_rows = [r for r in ALL_ROWS if r != BUILTIN_ROW or not train_seed]  # the shipped model has one seed
    plan = RobustnessPlan(
        dataset, n, [r.strip() for r in rows.split(",") if r.strip()] if rows else default_rows,
        Path(work) if work else cache_dir() / "reproduce", sorted(eps), seed, wanted, max_boxes, max_seconds, split,
        save_every, train_seed,
    )  # fmt: skip
    with open_executor(workers, scheduler) as executor:
        table = run_robustness_table(plan, data_dir=data_dir, show_progress=not quiet, executor=executor, device=dev)
    budget = {"max_boxes": max_boxes, "max_seconds": max_seconds, "split": split}
    result = RobustnessTable(dataset, plan.generators, plan.eps, n, seed, train_seed, budget, table, Provenance(
        {"dataset": dataset, "n": n, "seed": seed, "train_seed": train_seed, "eps": plan.eps, "classes": wanted,
         "rows": plan.rows, **plan.budget},
        {row: {"classifier": e.get("classifier_sha256"), "generators": ZOO[plan.generators].sha256}
         for row, e in table.items()}))  # fmt: skip
    md = robustness_markdown(table, plan)
    stem = f"robustness-table-{dataset}" + (f"-train{train_seed}" if train_seed else "")
    files = ResultFolder(out)
    files.text(f"{stem}.md", md)
    files.json(f"{stem}.json", result.to_dict())
    click.echo(md)
    files.report()


@reproduce.command("generator-quality")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True)
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Images per class on each side.")
@click.option("-k", "k", type=int, default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--work", type=click.Path(file_okay=False), default=None, help="Cache folder (default: the cache).")
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True)
@DATA_DIR_OPTION
@DEVICE_OPTION
@friendly_errors
def reproduce_generator_quality(dataset: str, n: int, k: int, seed: int, work: str | None, out: str,
                                data_dir: str | None, device: str) -> None:  # fmt: skip
    """Precision, recall and Fréchet distance of the dataset's built-in generators, with the real test set as the
    reference row; writes OUT/generator-quality-DATASET.{md,json} (cached: a rerun reuses the result)."""
    import json

    from ..data import load_dataset
    from ..data.store import cache_dir
    from ..experiments.correctness_table import TABLE_GENERATORS
    from ..experiments.generator_quality import assess_generators
    from ..models.zoo import ZOO, load_classifier, load_generators

    dev = resolve_device(device)
    cache = Path(work) if work else cache_dir() / "reproduce"
    names = list(TABLE_GENERATORS[dataset])
    # keyed on the families' weights too: a retrained built-in family is measured again
    weights = hashlib.sha256("".join(ZOO[name].sha256 for name in names).encode()).hexdigest()[:12]
    cached = cache / dataset / f"generator-quality-n{n}-k{k}-seed{seed}-{weights}.json"
    clf_name = f"{dataset}-small"
    if cached.is_file():
        data = json.loads(cached.read_text())
        click.echo(f"reused {cached}")
    else:
        train, test = load_dataset(dataset, "train", data_dir=data_dir), load_dataset(dataset, "test",
                                                                                         data_dir=data_dir)  # fmt: skip
        # the command's own models, on the device: the images and features are computed where the models are
        families = {name: load_generators(name).to(dev) for name in names}
        res = assess_generators(load_classifier(clf_name).to(dev), families, train.tensors(), test.tensors(), n=n, k=k,
                                seed=seed, dataset=dataset, classifier_name=clf_name,
                                class_names=train.class_names)  # fmt: skip
        data = res.to_dict()
        write_atomic(cached, json.dumps(data, indent=2) + "\n")
    from ..experiments.generator_quality import QualityResult, QualityRow

    rows = [QualityRow(r["name"], r["precision"], r["recall"], r["frechet"], r["frechet_all"], r.get("stray"),
                       r.get("accuracy")) for r in data["rows"]]  # fmt: skip
    res = QualityResult(data["dataset"], data["classifier"], data["n"], data["k"], data["seed"], data["class_names"],
                        rows)  # fmt: skip
    files = ResultFolder(out)
    files.json(f"generator-quality-{dataset}.json", data)
    files.text(f"generator-quality-{dataset}.md",
               f"Features: the input of `{clf_name}`'s last linear layer; n = {n} images per class on each side "
               f"(training images drawn with seed {seed}); k = {k}.\n\n{res.table()}\n\nPer class: precision / "
               f"recall / Fréchet distance\n\n{res.class_table()}")  # fmt: skip
    click.echo(res.table())
    files.report()


@reproduce.command("random-walk")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True)
@click.option("--class", "cls", type=int, default=8, show_default=True, help="Class of the pictured walk.")
@click.option("--steps", type=int, default=60, show_default=True)
@click.option("--step", type=float, default=0.1, show_default=True)
@click.option("--eps", "eps_text", default="0.01,0.03,0.05,0.1,0.3,1", show_default=True)
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Centres per class for continuity.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True)
@DEVICE_OPTION
@friendly_errors
def reproduce_random_walk(dataset: str, cls: int, steps: int, step: float, eps_text: str, n: int, seed: int,
                          out: str, device: str) -> None:  # fmt: skip
    """The random walk and the continuity of every built-in generator family of the dataset; writes
    OUT/random-walk-DATASET.{md,json} and OUT/images/random-walk-DATASET.{gif,png}, continuity-DATASET.png."""
    from ..experiments.correctness_table import GENERATORS
    from ..experiments.random_walk import continuity, save_continuity_plot, save_walk_gif, save_walk_plot, walk
    from ..models.zoo import load_classifier, load_generators
    from .app import _numbers

    dev = resolve_device(device)
    clf = load_classifier(f"{dataset}-small").eval().to(dev)  # the command's own models: the walk follows them
    eps = list(_numbers(eps_text, "--eps") or ())
    files = ResultFolder(out)
    (Path(out) / "images").mkdir(parents=True, exist_ok=True)
    data, text = {}, []
    for name in GENERATORS[dataset]:
        gens = load_generators(name).to(dev)
        names = list(gens.class_names)
        if name == GENERATORS[dataset][0]:
            _, images, probs = walk(clf, gens, cls, steps=steps, step=step, seed=seed)
            save_walk_gif(images, probs, files.path(f"images/random-walk-{dataset}.gif"), class_names=names)
            save_walk_plot(probs, files.path(f"images/random-walk-{dataset}.png"), class_names=names, cls=cls,
                           images=images)  # fmt: skip
            data["walk"] = {"generators": name, "class": cls, "steps": steps, "step": step, "seed": seed,
                            "labels": probs.argmax(1).tolist(), "probabilities": probs.tolist()}  # fmt: skip
        res = continuity(gens, eps=eps, n=n, seed=seed, classifier=clf)
        save_continuity_plot(res, files.path(f"images/continuity-{name}.png"))
        data[name] = res.to_dict()
        text.append(
            f"### `{name}` (n = {n} centres per class, classifier `{dataset}-small`)\n\n```\n{res.table()}\n```"
        )
    files.json(f"random-walk-{dataset}.json", data)
    files.text(f"random-walk-{dataset}.md", "\n\n".join(text))
    click.echo("\n\n".join(text))
    files.report()


@reproduce.command("dependence")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist", "emnist-digits"]), default="mnist",
              show_default=True,
              help="Data of the GANs; emnist-digits (the paper's choice) judges MNIST's classifiers.")  # fmt: skip
@click.option("-n", "n", type=int, default=10_000, show_default=True, help="Generated images per class and cell.")
@click.option("--rows", default="built-in,small,small-aug,madry,papernot", show_default=True,
              help="Classifier rows of the correctness table.")  # fmt: skip
@click.option("--gan-steps", type=int, default=None, help="GAN training steps (default: the built-in GAN's).")
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Folder for the GANs, classifiers and cached cells (default: the cache; shared with "
              "correctness-table).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated latents.")
@DATA_DIR_OPTION
@DEVICE_OPTION
@click.option("--quiet", is_flag=True)
@friendly_errors
def reproduce_dependence(dataset: str, n: int, rows: str, gan_steps: int | None, work: str | None, out: str,
                         seed: int, data_dir: str | None, device: str, quiet: bool) -> None:  # fmt: skip
    """GANs on disjoint halves of the data (and a second GAN seed on one half) against several classifiers: do
    the halves give different correctness, beyond training noise? Writes OUT/dependence-DATASET.{md,json} and
    OUT/images/dependence-DATASET.png (the differences), dependence-samples-DATASET.png (what each GAN draws)."""
    from ..data.store import cache_dir
    from ..experiments import dependence as dep
    from ..models.zoo import load_generators

    dev = resolve_device(device)
    plan = dep.DependencePlan(dataset, n, [r.strip() for r in rows.split(",") if r.strip()],
                              Path(work) if work else cache_dir() / "reproduce", seed, gan_steps)  # fmt: skip
    table = dep.run_dependence(plan, data_dir=data_dir, show_progress=not quiet, device=dev)
    names = list(load_generators(dep.GENERATORS[plan.classifier_dataset][0]).class_names)
    families = dep.train_families(plan, data_dir=data_dir, device=dev)  # trained above: loaded from their files
    ov = dep.overlap_cached(plan, families, show_progress=not quiet, device=dev)
    written = dep.save(table, plan, out, names, families=families, overlap_result=ov)
    click.echo(dep.dependence_markdown(table, plan, names, ov))
    click.echo(f"wrote {', '.join(written)} in {out}")
