"""The manual-score study: ``genrobust rate serve`` (draw images, serve the rating page) and ``rate results``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .app import DEVICE_OPTION, friendly_errors, main


@main.group("rate")
def rate_group() -> None:
    """People rate generated images in a browser (the paper's manual score)."""


@rate_group.command("serve")
@click.option("--generators", default="mnist-gan", show_default=True, help="Generators drawing the images.")
@click.option("--generator-range", default=None, help="LOW,HIGH of the generators' pixels (ONNX; default 0,1).")
@click.option("--class-names", default=None, help="Comma-separated class names (ONNX generators).")
@click.option("-n", "n", type=int, default=100, show_default=True, help="Images, stratified over the classes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--study", "folder", type=click.Path(file_okay=False), required=True,
              help="Study folder: created on the first run, reopened (ratings kept) on the next.")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 opens the page to your network.")
@click.option("--port", type=int, default=8000, show_default=True)
@DEVICE_OPTION
@friendly_errors
def rate_serve(generators: str, generator_range: str | None, class_names: str | None, n: int, seed: int,
               folder: str, host: str, port: int, device: str) -> None:  # fmt: skip
    """Serve the rating page for a study folder (drawing its images first, on --device, if it is new)."""
    from ..models.zoo import load_generators
    from ..rating import create_study, make_rating_server, open_study
    from ..runtime import resolve_device
    from .app import _numbers

    dev = resolve_device(device)  # checked before anything is drawn or served
    if (Path(folder) / "study.json").exists():
        study = open_study(folder)
        click.echo(f"reopened {folder}: {study.n} images from {study.meta['generators'] or 'generators'} "
                   f"(seed {study.meta['seed']}); --generators, -n and --seed apply to new studies only")  # fmt: skip
    else:
        names = [s.strip() for s in class_names.split(",")] if class_names else None
        out_range = _numbers(generator_range, "--generator-range", 2)
        family = load_generators(generators, output_range=out_range, class_names=names)  # type: ignore[arg-type]
        study = create_study(folder, family.to(dev), n=n, seed=seed, source=generators)  # draws where the model is
        click.echo(f"drew {study.n} images into {folder}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: serving on {host}: anyone who can reach this machine can open the page and rate",
                   err=True)  # fmt: skip
    try:
        server = make_rating_server(study, host, port)
    except (OSError, ValueError) as exc:  # a taken port, an address this machine does not have, not an address
        raise click.ClickException(f"cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    click.echo(f"rating page: http://{host}:{server.server_port}/  results: http://{host}:{server.server_port}/results"
               "  (Ctrl-C stops; the ratings are saved as they come)")  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@rate_group.command("results")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--classifier", default=None, help="Also report this classifier's correctness on the same images.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Write the summary as JSON.")
@DEVICE_OPTION
@friendly_errors
def rate_results(folder: str, classifier: str | None, json_file: str | None, device: str) -> None:
    """The paper's summary of a study: identified, near-perfect, clearly identifiable, hard, rubbish; thresholds
    with intervals; Fleiss' κ; and a classifier's correctness on the same images."""
    import torch

    from ..models.zoo import load_classifier
    from ..rating import open_study, summarise
    from ..runtime import resolve_device

    dev = resolve_device(device)
    study = open_study(folder)
    predictions = None
    if classifier:
        clf = load_classifier(classifier).eval().to(dev)
        with torch.no_grad():
            predictions = clf(study.images().to(dev)).argmax(1).tolist()
    con = study.connect()
    try:
        summary = summarise(study, con, predictions)
    finally:
        con.close()
    click.echo(summary.table())
    if json_file:
        Path(json_file).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
