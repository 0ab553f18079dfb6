"""``genrobust report``: one self-contained HTML page from saved runs and rating studies."""

from __future__ import annotations

import click

from .app import friendly_errors, main


@main.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default="report.html", show_default=True)
@click.option("--title", default="genrobust report", show_default=True)
@friendly_errors
def report_cmd(runs: tuple[str, ...], out: str, title: str) -> None:
    """Turn result folders (correctness, robustness, attack, rare failures: --out DIR), result files (the tables'
    JSON) and rating studies into one HTML page with their tables and pictures embedded."""
    from ..report.html import save_report

    save_report(list(runs), out, title=title)
    click.echo(f"wrote {out} ({len(runs)} runs)")
