"""VNN-COMP exchange: ``genrobust export vnnlib`` writes competition instances, ``genrobust verify-vnnlib``
answers one, or a whole benchmark folder."""

from __future__ import annotations

import click

from ..verify.vnnlib import VARIATION_BOXES, VARIATION_FORMS
from .app import DATA_DIR_OPTION, DEVICE_OPTION, eps_and_classes, friendly_errors, load_models, main, model_options


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
@click.option(
    "--variation",
    default=None,
    help="An image-conditional generator (built-in mnist-variation or a .safetensors file) instead of "
    "--generators: instances of the competition's generator-benchmark shape, per test image.",
)
@click.option(
    "--form",
    type=click.Choice(VARIATION_FORMS),
    default=None,
    help="With --variation: the runner-up class beats the label (one conjunct; the default), or any class does.",
)
@click.option(
    "--box",
    type=click.Choice(VARIATION_BOXES),
    default=None,
    help="With --variation: latent box widths ε × the latent's spread per dimension (the default), or ε everywhere.",
)
@DATA_DIR_OPTION
@DEVICE_OPTION
@friendly_errors
def export_vnnlib_cmd(
    eps_text: str,
    n: int,
    seed: int,
    classes: str | None,
    timeout: float,
    out: str,
    variation: str | None,
    form: str | None,
    box: str | None,
    data_dir: str | None,
    device: str,
    **models: str | None,
) -> None:
    """C∘G_c as ONNX per class and one VNN-LIB property per latent ball, with instances.csv, so that any
    competition verifier can answer the questions genrobust robustness asks. With --variation: classifier ∘
    image-conditional generator, the thumbnail's inputs fixed, one property per test image and ε (--device: where
    the test images are encoded and labelled to pick the centres; the ONNX files are traced on the CPU)."""
    from ..runtime import resolve_device
    from ..verify.vnnlib import export_instances, export_variation_instances

    dev = resolve_device(device)  # checked here for both forms: only --variation runs the models
    eps, wanted = eps_and_classes(eps_text, classes)
    if n < 1 or any(not e > 0 for e in eps):
        raise click.BadParameter("-n must be ≥ 1 and every ε > 0")
    if variation is None and (form or box):
        raise click.UsageError("--form and --box shape the --variation instances; give --variation too")
    if variation is not None:
        from ..models.zoo import load_classifier, load_variation

        ignored = [k for k in ("generators_name", "generator_range", "class_names", "input_range", "mean", "std")
                   if models.get(k) not in (None, "mnist-gan")]  # fmt: skip
        if ignored:
            flags = ", ".join("--" + k.removesuffix("_name").replace("_", "-") for k in ignored)
            raise click.UsageError(f"--variation brings its own generator and pixel range [0, 1]; drop {flags}")

        form, box = form or "runner-up", box or "prior"

        rows = export_variation_instances(
            load_classifier(models["classifier_name"] or "mnist-small"), load_variation(variation), eps=eps, n=n,
            seed=seed, out=out, data_dir=data_dir, form=form, box=box, classes=wanted, timeout=timeout, device=dev,
        )  # fmt: skip
        click.echo(f"wrote {len(rows)} instances (one network) in {out}")
        return
    clf, gens = load_models(**models)
    rows = export_instances(clf, gens, eps=eps, n=n, seed=seed, out=out, classes=wanted, timeout=timeout)
    click.echo(f"wrote {len(rows)} instances ({len({r[0] for r in rows})} networks) in {out}")


@main.command("verify-vnnlib")
@click.argument("model", type=click.Path(exists=True, dir_okay=False), required=False)
@click.argument("prop", metavar="PROPERTY", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--instances", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A benchmark's instances.csv (onnx, vnnlib, timeout): answer them all, --out is the results "
                   "CSV.")  # fmt: skip
@click.option("--timeout-scale", type=float, default=1.0, show_default=True,
              help="With --instances: each instance gets its timeout times this.")  # fmt: skip
@click.option(
    "--max-boxes",
    type=int,
    default=100_000,
    show_default=True,
    help="Sub-boxes or ReLU splits of branch and bound; the seconds are the budget.",
)
@click.option("--max-seconds", type=float, default=30.0, show_default=True, help="Seconds for the instance.")
@click.option("--pair-neurons", type=int, default=0, show_default=True,
              help="With ReLU branch and bound (pixel boxes): the multi-neuron relaxation of the pairs of this many "
                   "of the root's costliest unstable ReLUs (PRIMA's k = 2; 0: off).")  # fmt: skip
@click.option(
    "--stabilise/--no-stabilise",
    default=True,
    show_default=True,
    help="Where inputs are many (pixel boxes) and branch and bound has not decided within 10 s (or half "
    "the budget): prove hidden neurons stable on the box first, then go on with them.",
)
@click.option(
    "--tighten/--no-tighten",
    default=True,
    show_default=True,
    help="With --stabilise: also prove narrower intervals for the hidden neurons that do change sign (a tighter "
    "relaxation of each; see docs/verify-complete.md for what it decides on mnist_fc).",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local processes (one thread each) for pixel boxes: the hidden neurons' proofs and the disjuncts' "
                   "branch and bound are spread over them; give the machine's cores (the competition gives an "
                   "instance the whole machine).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Result file in the competition's format (verdict, then the counterexample); with --instances "
                   "the results CSV (counterexamples beside it), resumed if it exists.")  # fmt: skip
@DEVICE_OPTION
@friendly_errors
def verify_vnnlib_cmd(model: str | None, prop: str | None, instances: str | None, timeout_scale: float,
                      max_boxes: int, max_seconds: float, pair_neurons: int, stabilise: bool, tighten: bool,
                      workers: int, seed: int, out_file: str | None, device: str) -> None:  # fmt: skip
    """Answer a competition instance (MODEL PROPERTY) or a whole benchmark (--instances): sat (a counterexample,
    re-checked), unsat (certified) or unknown."""
    from pathlib import Path

    from ..execute import open_workers
    from ..models.zoo import load_classifier
    from ..runtime import resolve_device
    from ..verify import VerifyOptions
    from ..verify.vnnlib import answer, parse_vnnlib, read_instances, run_instances

    if max_boxes < 1 or not max_seconds > 0 or pair_neurons < 0:
        raise click.BadParameter("--max-boxes must be ≥ 1, --max-seconds > 0 and --pair-neurons ≥ 0")
    dev = resolve_device(device)
    if instances is not None:
        if model or prop:
            raise click.UsageError("give either MODEL PROPERTY or --instances, not both")
        if not out_file:
            raise click.UsageError("--instances needs --out, the results CSV")
        with open_workers(workers=workers if workers > 1 else None) as pool:
            rows = run_instances(instances, out_file, timeout_scale=timeout_scale, seed=seed,
                                 options=VerifyOptions(max_boxes=max_boxes, pair_neurons=pair_neurons),
                                 show_progress=True, device=dev, stabilise_hidden=stabilise, tighten_hidden=tighten,
                                 workers=pool)  # fmt: skip
        expected = {(r["onnx"], r["vnnlib"]): r.get("expected", "") for r in read_instances(instances)}
        counts = {v: sum(r["result"] == v for r in rows) for v in ("unsat", "sat", "unknown", "error")}
        decisive = ("sat", "unsat")
        wrong = [r for r in rows if r["result"] in decisive and expected.get((r["onnx"], r["vnnlib"])) in decisive
                 and r["result"] != expected[(r["onnx"], r["vnnlib"])]]  # fmt: skip
        total = sum(float(r["seconds"]) for r in rows)
        click.echo(f"{len(rows)} instances: {counts['unsat']} unsat, {counts['sat']} sat, {counts['unknown']} "
                   f"unknown, {counts['error']} error in {total:.1f} s; results in {out_file}")  # fmt: skip
        if any(expected.values()):
            click.echo(f"{len(wrong)} answers contradict the expected ones")
        for r in wrong:
            click.echo(f"  WRONG {r['onnx']} {r['vnnlib']}: {r['result']}")
        return
    if not model or not prop:
        raise click.UsageError("give MODEL and PROPERTY, or --instances")
    net = load_classifier(model)
    shape = getattr(net, "input_shape", None)
    opts = VerifyOptions(max_boxes=max_boxes, max_seconds=max_seconds, pair_neurons=pair_neurons)
    with open_workers(workers=workers if workers > 1 else None) as pool:
        ans = answer(net, parse_vnnlib(Path(prop).read_text()), shape, seed=seed, device=dev, options=opts,
                     stabilise_hidden=stabilise, tighten_hidden=tighten, workers=pool)  # fmt: skip
    click.echo(ans.text().rstrip("\n"))
    if out_file:
        Path(out_file).write_text(ans.text())
