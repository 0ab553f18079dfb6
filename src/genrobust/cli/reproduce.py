"""``genrobust reproduce``: the paper's tables (correctness) and the one it could not run (robustness)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import GenrobustError
from .app import DATA_DIR_OPTION, ResultFolder, eps_and_classes, friendly_errors, main, verify_options


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

    from ..data.store import cache_dir
    from ..experiments.correctness_table import (
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
    files = ResultFolder(out)  # made before any training: an unwritable --out fails at once
    tables = {}
    for k in seeds:
        plan = TablePlan(dataset, n, wanted_by_seed[k], Path(work) if work else cache_dir() / "reproduce", seed, k)
        tables[k] = table = run_table(plan, data_dir=data_dir, show_progress=not quiet)
        md = to_markdown(table, dataset, n)
        stem = f"correctness-table-{dataset}" + (f"-train{k}" if k else "")
        files.text(f"{stem}.md", md)
        files.json(f"{stem}.json", table)
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
              help="Balls checked between two saves of the per-row cache (a kill loses at most these).")  # fmt: skip
@DATA_DIR_OPTION
@click.option("--quiet", is_flag=True)
@friendly_errors
def reproduce_robustness_table(
    dataset: str, n: int, eps_text: str, rows: str | None, classes: str | None, work: str | None, out: str,
    seed: int, train_seed: int, save_every: int, max_boxes: int, max_seconds: float, split: str,
    data_dir: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Global robustness of every table row against the standard GAN; writes OUT/robustness-table-DATASET.{md,json}."""

    from ..data.store import cache_dir
    from ..experiments.correctness_table import ALL_ROWS, BUILTIN_ROW
    from ..experiments.robustness_table import RobustnessPlan, robustness_markdown, run_robustness_table

    eps, wanted = eps_and_classes(eps_text, classes)
    default_rows = [r for r in ALL_ROWS if r != BUILTIN_ROW or not train_seed]  # the shipped model has one seed
    plan = RobustnessPlan(
        dataset, n, [r.strip() for r in rows.split(",") if r.strip()] if rows else default_rows,
        Path(work) if work else cache_dir() / "reproduce", sorted(eps), seed, wanted, max_boxes, max_seconds, split,
        save_every, train_seed,
    )  # fmt: skip
    table = run_robustness_table(plan, data_dir=data_dir, show_progress=not quiet)
    md = robustness_markdown(table, plan)
    stem = f"robustness-table-{dataset}" + (f"-train{train_seed}" if train_seed else "")
    files = ResultFolder(out)
    files.text(f"{stem}.md", md)
    files.json(f"{stem}.json", table)
    click.echo(md)
    files.report()
