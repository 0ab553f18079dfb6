"""The root ``genrobust`` group and what its command groups share: the data-folder option, the verifier's
budget options, ε/class lists, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import GenrobustError

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    envvar="GENROBUST_DATA_DIR",
    default=None,
    help="Folder holding datasets in torchvision's raw layout (MNIST/raw/*.gz, ...). "
    "Defaults to $GENROBUST_DATA_DIR, then the per-user cache.",
)

DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:1, ..."
)

QUIET_OPTION = click.option("--quiet", is_flag=True, help="No progress bar.")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn genrobust's own errors into a one-line message and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenrobustError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="genrobust")
def main() -> None:
    """Check image classifiers globally, against generative models of their inputs."""
    _exit_on_sigterm()


def _exit_on_sigterm() -> None:
    """A SIGTERM (``kill``, a batch system's time limit) ends the command as Ctrl-C does, through its ``finally``
    blocks: local worker processes are terminated with it instead of finishing their shards as orphans, and the
    journal keeps what was done. Only where nobody set a handler before (an embedding program keeps its own)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def verify_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every verifying command shares: --eps, --classes and the budget (one place for their help)."""
    from ..verify import SPLITS

    for option in reversed([
        click.option("--eps", "eps_text", default="0.01,0.03,0.05", show_default=True,
                     help="Latent radii, e.g. 0.01,0.03 (checked in increasing order)."),
        click.option("--classes", default=None, help="Comma-separated classes (default: all)."),
        click.option("--max-boxes", type=int, default=64, show_default=True, help="Sub-boxes per ball and ε."),
        click.option("--max-seconds", type=float, default=30.0, show_default=True, help="Seconds per ball."),
        click.option("--split", type=click.Choice(SPLITS), default="unstable", show_default=True,
                     help="Which latent dimension a split halves."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


WORKERS_OPTION = click.option(
    "--workers", type=click.IntRange(min=1), default=None,
    help="Run the shards on N local worker processes, one thread each (default: in this process).",
)  # fmt: skip
SCHEDULER_OPTION = click.option(
    "--scheduler", envvar="GENROBUST_SCHEDULER", default=None,
    help="Run the shards on a Dask cluster: its scheduler's address, tcp://HOST:PORT (default: $GENROBUST_SCHEDULER).",
)  # fmt: skip


class WorkersType(click.ParamType):
    """``--workers`` of a command whose default is ``auto``: a number of processes ≥ 1, or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif str(value).strip().lower() == "auto":
            return "auto"
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"takes a number of processes ≥ 1 or 'auto', not {value!r}", param, ctx)
        if number < 1:
            self.fail(f"takes a number of processes ≥ 1 or 'auto', not {number}", param, ctx)
        return number


AUTO_WORKERS_OPTION = click.option(
    "--workers", type=WorkersType(), default="auto", show_default=True,
    help="Run the shards on N local worker processes, one thread each. auto: one per core on a CPU, as many as "
         "there are shards (32 balls of a class each) and as memory allows (about 1.2 GB each); one shard, one "
         "core, a GPU or --scheduler run in this process. On two cores two processes of one thread decide more "
         "latent balls in the same wall time than one process of two threads.",
)  # fmt: skip

#: resident memory one worker process of ``robustness`` takes at its peak on the built-in models (0.9–1.18 GB per
#: class measured in stops 68–69), rounded up: ``--workers auto`` starts no more processes than memory holds (the
#: parent process, about 0.45 GB with the models, is not counted)
WORKER_BYTES = 1.2e9


def scale_options(fn: Callable[..., Any] | None = None, *, auto: bool = False) -> Any:
    """Where the shards run and how a killed run goes on: --workers, --scheduler, --resume. ``auto``: --workers
    defaults to ``auto`` (:func:`auto_workers`) instead of this process."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed([
            AUTO_WORKERS_OPTION if auto else WORKERS_OPTION,
            SCHEDULER_OPTION,
            click.option("--resume", is_flag=True,
                         help="Continue the killed run whose journal is in --out (same options and models)."),
        ]):  # fmt: skip
            fn = option(fn)
        return fn

    return wrap(fn) if fn is not None else wrap


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_memory() -> float | None:
    """Bytes of physical memory (None where the system does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def auto_workers(workers: int | str | None, *, shards: int, device: str, scheduler: str | None,
                 cores: int | None = None, memory: float | None = None) -> int | None:  # fmt: skip
    """``--workers`` resolved: a number stays; ``auto`` becomes one process per core, no more than the run has
    shards or memory holds (:data:`WORKER_BYTES` each), or None (this process) where processes would not pay: a
    single shard, a single core, a GPU (one process keeps it busy) or a Dask ``--scheduler``.

    Why processes by default: the verifier's work is arithmetic that one thread does at 1/1.41 of two threads' speed,
    while two processes of one thread do 1.28× the boxes of one process of two threads (stop 68), and on the first
    200 balls at ε = 0.05 decide 79.5% against 71.5% in the same wall time."""
    from ..runtime import resolve_device

    if workers != "auto":
        return workers  # type: ignore[return-value]
    if scheduler or resolve_device(device).type != "cpu":
        return None
    cores = usable_cores() if cores is None else cores
    memory = usable_memory() if memory is None else memory
    count = min(cores, shards)
    if memory is not None:
        count = min(count, int(memory // WORKER_BYTES))
    return count if count >= 2 else None


def coverage_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--assess DATASET (measure the generators' precision / recall per class and show them beside the verdict;
    the built-in families carry theirs) with --assess-n and --data-dir."""
    from ..data.registry import DATASETS

    for option in reversed([
        click.option("--assess", type=click.Choice(sorted(DATASETS)), default=None,
                     help="Measure how much of each class of this dataset the generators cover (precision / "
                          "recall in the classifier's features) and show it beside the verdict."),
        click.option("--assess-n", type=int, default=1000, show_default=True,
                     help="--assess: real and generated images per class."),
        DATA_DIR_OPTION,
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def attach_coverage(clf: Any, gens: Any, assess: str | None, n: int, data_dir: str | None, name: str) -> None:
    """With --assess, measure the family's coverage now (it replaces what a built-in family carries)."""
    if assess is None:
        return
    from ..experiments.generator_quality import measure_coverage

    if n <= 3:
        raise click.BadParameter(f"must be larger than 3 (the neighbours of the manifold), got {n}",
                                 param_hint="--assess-n")  # fmt: skip
    gens.coverage = measure_coverage(clf, gens, assess, n=n, data_dir=data_dir, classifier_name=name)


def open_executor(workers: int | None, scheduler: str | None) -> Any:
    """The run's :class:`~genrobust.execute.Workers` from --workers / --scheduler (a context manager)."""
    from ..execute import open_workers

    if workers is not None and scheduler:
        raise click.UsageError("choose --workers (local processes) or --scheduler (a Dask cluster), not both")
    return open_workers(workers=workers, scheduler=scheduler)


def shard_setup(workers: int | None, scheduler: str | None, resume: bool, out: str | None) -> tuple[Any, Path | None]:
    """The run's executor and its journal's path (OUT/journal.jsonl when there is an --out folder)."""
    if resume and not out:
        raise click.UsageError("--resume needs --out: the folder whose journal.jsonl the run continues")
    return open_executor(workers, scheduler), Path(out) / JOURNAL if out else None


#: the file in a result folder that records a run's finished shards
JOURNAL = "journal.jsonl"


def eps_and_classes(eps_text: str, classes: str | None) -> tuple[list[float], list[int] | None]:
    """--eps 0.01,0.03 and --classes 1,8 (None: all classes)."""
    try:
        eps = [float(e) for e in eps_text.split(",") if e.strip()]
        wanted = [int(c) for c in classes.split(",") if c.strip()] if classes else None
    except ValueError:
        raise click.BadParameter("--eps takes numbers and --classes integers, separated by commas") from None
    return eps, wanted


_SOURCE_HELP = (
    "a built-in name, a genrobust .safetensors file, an .onnx file or a factory package.module:attr "
    "(pickled .pt/.pth files are refused)"
)


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--classifier, --generators and what an ONNX file cannot say: the generators' output range, the class
    names, and the classifier's expected input range and normalisation (one adapter between the two)."""
    for option in reversed([
        click.option("--classifier", "classifier_name", default="mnist-small", show_default=True,
                     help=f"The classifier: {_SOURCE_HELP}."),
        click.option("--generators", "generators_name", default="mnist-gan", show_default=True,
                     help=f"The generators: {_SOURCE_HELP}; per-class ONNX files as a,b,c or gen_{{c}}.onnx."),
        click.option("--generator-range", default=None, help="LOW,HIGH: the range the generators' pixels live in "
                     "(ONNX; default 0,1), e.g. -1,1 for a tanh."),
        click.option("--class-names", default=None, help="Comma-separated class names (ONNX generators)."),
        click.option("--input-range", default=None, help="LOW,HIGH: the pixel range the classifier expects "
                     "(default: the generators' range, unchanged)."),
        click.option("--mean", default=None, help="Per-channel mean the classifier normalises with, e.g. 0.5,0.5,0.5."),
        click.option("--std", default=None, help="Per-channel standard deviation, e.g. 0.25,0.25,0.25."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def _numbers(text: str | None, option: str, count: int | None = None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"not a list of numbers: {text!r}", param_hint=option) from None
    if count is not None and len(values) != count:
        raise click.BadParameter(f"expected {count} numbers, got {text!r}", param_hint=option)
    return values


def load_models(
    classifier_name: str, generators_name: str, generator_range: str | None = None, class_names: str | None = None,
    input_range: str | None = None, mean: str | None = None, std: str | None = None,
):  # fmt: skip
    """The classifier and the generator family the model options describe, the adapter applied."""
    from ..models.zoo import load_classifier, load_generators

    out_range = _numbers(generator_range, "--generator-range", 2)
    names = [n.strip() for n in class_names.split(",")] if class_names else None
    clf = load_classifier(classifier_name)
    gens = load_generators(generators_name, output_range=out_range, class_names=names)  # type: ignore[arg-type]
    in_range, m, sd = _numbers(input_range, "--input-range", 2), _numbers(mean, "--mean"), _numbers(std, "--std")
    if in_range is not None or m is not None or sd is not None:
        if gens.adapter is not None:
            raise click.UsageError("the generators already carry an adapter: drop --input-range/--mean/--std")
        gens = gens.adapt(in_range or gens.output_range, mean=m, std=sd)
    return clf, gens


class ResultFolder:
    """The one writer of a command's result files: creates the folder, writes JSON the same way everywhere
    (indented, newline-terminated), and reports what it wrote in one line."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.folder = Path(out)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: list[str] = []

    def path(self, name: str) -> Path:
        """Where ``name`` goes; counted as written (for files drawn by a report function)."""
        self.written.append(name)
        return self.folder / name

    def json(self, name: str, data: Any) -> None:
        self.path(name).write_text(json.dumps(data, indent=2) + "\n")

    def text(self, name: str, text: str) -> None:
        self.path(name).write_text(text.rstrip("\n") + "\n")

    def report(self) -> None:
        click.echo(f"wrote {', '.join(self.written)} in {self.folder}")
