"""VNN-COMP exchange: ``genrobust export vnnlib`` writes competition instances, ``genrobust verify-vnnlib``
answers one."""

from __future__ import annotations

import click

from .app import eps_and_classes, friendly_errors, load_models, main, model_options


@main.group("export")
def export_group() -> None:
    """Write checks in other tools' formats."""


@export_group.command("vnnlib")
@model_options
@click.option("--eps", "eps_text", default="0.01", show_default=True, help="Latent radii, e.g. 0.01,0.03.")
@click.option("-n", "n", type=int, default=10, show_default=True, help="Centres per class.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same centres as robustness.")
@click.option("--classes", default=None, help="Comma-separated classes (default: all).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per instance (instances.csv).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for onnx/, vnnlib/, the csv.")
@friendly_errors
def export_vnnlib_cmd(
    eps_text: str, n: int, seed: int, classes: str | None, timeout: float, out: str, **models: str | None
) -> None:
    """C∘G_c as ONNX per class and one VNN-LIB property per latent ball, with instances.csv, so that any
    competition verifier can answer the questions genrobust robustness asks."""
    from ..verify.vnnlib import export_instances

    eps, wanted = eps_and_classes(eps_text, classes)
    if n < 1 or any(not e > 0 for e in eps):
        raise click.BadParameter("-n must be ≥ 1 and every ε > 0")
    clf, gens = load_models(**models)
    rows = export_instances(clf, gens, eps=eps, n=n, seed=seed, out=out, classes=wanted, timeout=timeout)
    click.echo(f"wrote {len(rows)} instances ({len({r[0] for r in rows})} networks) in {out}")


@main.command("verify-vnnlib")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("prop", metavar="PROPERTY", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--max-boxes",
    type=int,
    default=100_000,
    show_default=True,
    help="Sub-boxes or ReLU splits of branch and bound (robustness properties); the seconds are the budget.",
)
@click.option("--max-seconds", type=float, default=30.0, show_default=True, help="Seconds for the instance.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Result file in the competition's format (verdict, then the counterexample).")  # fmt: skip
@friendly_errors
def verify_vnnlib_cmd(model: str, prop: str, max_boxes: int, max_seconds: float, seed: int,
                      out_file: str | None) -> None:  # fmt: skip
    """Answer a competition instance: sat (a counterexample, re-checked), unsat (certified) or unknown."""
    from pathlib import Path

    from ..models.zoo import load_classifier
    from ..verify import VerifyOptions
    from ..verify.vnnlib import answer, parse_vnnlib

    net = load_classifier(model)
    shape = getattr(net, "input_shape", None)
    ans = answer(net, parse_vnnlib(Path(prop).read_text()), shape,
                 options=VerifyOptions(max_boxes=max_boxes, max_seconds=max_seconds), seed=seed)  # fmt: skip
    click.echo(ans.text().rstrip("\n"))
    if out_file:
        Path(out_file).write_text(ans.text())
