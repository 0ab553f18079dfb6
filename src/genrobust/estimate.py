"""Monte Carlo estimation of global correctness: P_z[C(G_c(z)) = c] for every class c, with exact intervals.

The samples are the seeded latent blocks of :mod:`genrobust.sampling` (the same whatever the batch size), run
through its per-class loop with one outcome: is C(G_c(z)) = c, and how confident is C.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .compose import check_compatible
from .errors import GenrobustError
from .execute import ClassTask, Shipped, open_workers
from .journal import open_journal
from .models.coverage import Coverage
from .models.generators import GeneratorFamily, module_device
from .results import Provenance, Result, model_hashes, register
from .runtime import resolve_device, working_copy
from .sampling import BLOCK, check_classes, check_estimate_args, latent_block, latent_range, latents, run_classes
from .stats import FAILS, HOLDS, UNDECIDED, Proportion, SequentialTest, bonferroni_fails

__all__ = [
    "BLOCK",
    "ClassEstimate",
    "CorrectnessResult",
    "check_estimate_args",
    "global_correctness",
    "latent_block",
    "latents",
]  # fmt: skip
PROFILE_LEVELS = (0.90, 0.97, 0.99)
#: Samples per forward pass on a CPU (larger batches spill the activations out of cache) and on a GPU.
CPU_BATCH, GPU_BATCH = 128, 4096
#: A shard that runs on a GPU is this many blocks (16,384 samples) instead of one.
GPU_SHARD_BLOCKS = 16


@dataclass
class ClassEstimate:
    """Global correctness of one class: the share of its samples classified as the class, and the verdict."""

    cls: int
    name: str
    share: Proportion  # correct of the samples used, with its Clopper–Pearson interval
    verdict: str  # holds / fails / undecided (P ≥ 1 − δ?): the share's, or the sequential test's
    confident: dict[str, float] = field(default_factory=dict)  # share correct with softmax confidence > level
    decided_at: int | None = None  # sequential mode: samples used when the verdict became certain
    # samples computed: n, or in sequential mode up to the shard that decided, plus any shards a pool had in
    # flight past it (discarded: they cost time, not the answer, and depend on the executor)
    spent: int | None = None

    @property
    def n(self) -> int:
        return self.share.n

    @property
    def correct(self) -> int:
        return self.share.k

    @property
    def estimate(self) -> float:
        return self.share.estimate

    @property
    def ci_low(self) -> float:
        return self.share.ci[0]

    @property
    def ci_high(self) -> float:
        return self.share.ci[1]

    def to_dict(self) -> dict[str, Any]:
        return {"cls": self.cls, "name": self.name, "share": self.share.to_dict(), "verdict": self.verdict,
                "confident": self.confident, "decided_at": self.decided_at, "spent": self.spent}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], confidence: float) -> ClassEstimate:
        # format 1 wrote the proportion's fields (n, correct) flat
        share = Proportion.from_dict(d["share"]) if "share" in d else Proportion(d["correct"], d["n"], confidence)
        return cls(int(d["cls"]), str(d["name"]), share, str(d["verdict"]), dict(d.get("confident") or {}),
                   d.get("decided_at"), d.get("spent"))  # fmt: skip


def alone_note(failing: list, familywise: list, m: int) -> str:
    """The verdict line's note when some class fails on its own but not after Bonferroni over the classes."""
    alone = [c.name for c in failing if c not in familywise]
    if not alone or familywise:
        return ""
    return f" ({', '.join(alone)} fail{'s' if len(alone) == 1 else ''} alone, not after Bonferroni over {m} classes)"


@dataclass
class _Chunk:
    """The outcome of one chunk of latents: the latents, C's predictions and confidences, and which are correct."""

    z: torch.Tensor
    pred: torch.Tensor
    conf: torch.Tensor
    ok: np.ndarray


class _CorrectnessShard(ClassTask):
    """Global correctness's work on one shard: is C(G_c(z)) = c, and how confident is C. A picklable task (see
    :mod:`genrobust.execute`): the models travel by content and are built once per worker."""

    def __init__(
        self,
        classifier: nn.Module,
        generators: GeneratorFamily,
        classes: list[int],
        device: torch.device,
        batch_size: int | None,
        seed: int,
        auto: bool,
    ) -> None:
        self.classifier = Shipped(classifier)
        self.generators = {c: Shipped(generators[c]) for c in classes}
        self.device = "auto" if auto else str(device)  # "auto": each worker picks its own accelerator
        self.batch_size, self.seed, self.latent_dim = batch_size, seed, generators.latent_dim

    def __call__(self, c: int, z: torch.Tensor, ids: list[int]) -> _Chunk:
        dev = resolve_device(self.device)
        classifier, generator = self.classifier.get(dev), self.generators[c].get(dev)
        dev = module_device(generator)
        batch = self.batch_size or (GPU_BATCH if dev.type == "cuda" else CPU_BATCH)
        preds, confs = [], []
        with torch.no_grad():
            for lo in range(0, len(z), batch):
                images = generator(z[lo : lo + batch].to(dev))
                if not torch.isfinite(images).all():
                    raise GenrobustError(f"the generator of class {c} returned NaN or infinite pixels")
                logits = classifier(images)
                if not torch.isfinite(logits).all():
                    raise GenrobustError(f"the classifier returned NaN or infinite logits on class {c}")
                conf, pred = torch.softmax(logits.double(), 1).max(1)
                preds.append(pred.cpu())
                confs.append(conf.cpu())
        pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
        conf = torch.cat(confs) if confs else torch.empty(0, dtype=torch.float64)
        return _Chunk(z, pred, conf, (pred == c).numpy())

    @staticmethod
    def encode(part: _Chunk) -> dict[str, Any]:  # the latents are the seed's: drawn again, not written
        return {"pred": part.pred.tolist(), "conf": part.conf.tolist(), "ok": part.ok.tolist()}

    def decode(self, obj: dict[str, Any], shard: tuple[int, int, int]) -> _Chunk:
        z = latent_range(self.seed, *shard, self.latent_dim)
        conf = torch.tensor(obj["conf"], dtype=torch.float64)
        return _Chunk(z, torch.tensor(obj["pred"], dtype=torch.long), conf, np.asarray(obj["ok"], dtype=bool))


@dataclass
class Outlier:
    cls: int
    latent: list[float]
    predicted: int
    confidence: float


@register
@dataclass
class CorrectnessResult(Result):
    """Per-class estimates, the overall verdict, and the misclassified samples kept for inspection."""

    kind: ClassVar[str] = "correctness"
    delta: float
    confidence: float
    seed: int
    classes: list[ClassEstimate]
    outlier_list: list[Outlier] = field(default_factory=list)
    generators: GeneratorFamily | None = field(default=None, repr=False)
    #: the family's measured precision / recall per class, when known: shown beside each class's verdict
    coverage: Coverage | None = None
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def worst(self) -> ClassEstimate:
        return min(self.classes, key=lambda c: c.estimate)

    @property
    def mean(self) -> float:
        return float(np.mean([c.estimate for c in self.classes]))

    @property
    def verdict(self) -> str:
        """δ-correct iff every class holds; not iff some class fails after Bonferroni over the classes; else
        undecided.

        An overall "holds" is wrong with probability at most a class's error (a class that truly fails says
        "holds" that rarely). A "fails" needs one class to fail, and when all K classes truly hold some class
        wrongly says "fails" up to K times as often as one does: so the overall "fails" asks a class to fail at
        level α/K (:func:`~genrobust.stats.bonferroni_fails`). A class may say "fails" on its own while the
        whole stays undecided; :attr:`failing` lists those classes.
        """
        if self.failing_familywise:
            return FAILS
        return HOLDS if {c.verdict for c in self.classes} == {HOLDS} else UNDECIDED

    @property
    def failing(self) -> list[ClassEstimate]:
        """The classes whose own verdict is *fails* (each at the chosen confidence)."""
        return [c for c in self.classes if c.verdict == FAILS]

    @property
    def failing_familywise(self) -> list[ClassEstimate]:
        """The failing classes whose *fails* survives Bonferroni over all the classes checked."""
        m = len(self.classes)
        return [c for c in self.failing if bonferroni_fails(c.correct, c.n, self.delta, self.confidence, m,
                                                            sequential=c.decided_at is not None)]  # fmt: skip

    def table(self) -> str:
        level = f"{100 * self.confidence:g}%"
        cov = self.coverage
        lines = [
            f"{'class':<14} {'n':>7} {'correct':>8} {'estimate':>9}  {level + ' CI':<19} {'P ≥ 1−δ?':<10}"
            + (" precision / recall" if cov else ""),
        ]
        for c in self.classes:
            ci = f"[{c.ci_low:.4f}, {c.ci_high:.4f}]"
            lines.append(f"{c.name[:14]:<14} {c.n:>7} {c.correct:>8} {c.estimate:>9.4f}  {ci:<19} {c.verdict:<10}"
                         + (f" {cov.cell(c.cls)}" if cov else ""))  # fmt: skip
        w = self.worst
        lines.append(f"worst class {w.name} ({w.estimate:.4f}); mean {self.mean:.4f}; δ = {self.delta}: {self.verdict}"
                     + alone_note(self.failing, self.failing_familywise, len(self.classes)))  # fmt: skip
        if cov:
            lines.append(cov.note([c.cls for c in self.classes], [c.name for c in self.classes]))
        return "\n".join(lines)

    def body(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "confidence": self.confidence,
            "seed": self.seed,
            "verdict": self.verdict,
            "failing_classes": [c.cls for c in self.failing],
            "failing_classes_familywise": [c.cls for c in self.failing_familywise],
            "worst_class": self.worst.cls,
            "mean": self.mean,
            "classes": [c.to_dict() for c in self.classes],
            "outliers": [asdict(o) for o in self.outlier_list],
            "coverage": self.coverage.to_dict() if self.coverage else None,
        }

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> CorrectnessResult:
        confidence = float(body["confidence"])
        return cls(float(body["delta"]), confidence, int(body["seed"]),
                   [ClassEstimate.from_dict(c, confidence) for c in body["classes"]],
                   [Outlier(**o) for o in body.get("outliers", [])], None,
                   Coverage.from_dict(body["coverage"]) if body.get("coverage") else None, provenance)  # fmt: skip

    def outliers(self, k: int = 16) -> Outliers:
        """The k most confidently misclassified samples kept (latent, image, predicted class, confidence)."""
        ranked = sorted(self.outlier_list, key=lambda o: -o.confidence)
        return Outliers(ranked[:k], self.generators)


@dataclass
class Outliers:
    items: list[Outlier]
    generators: GeneratorFamily | None

    def images(self) -> torch.Tensor:
        if self.generators is None:
            raise GenrobustError(
                "the generators are not attached to this result (a loaded one has none): attach the "
                "family it judged with result.with_generators(family) to draw the outliers"
            )
        gens = self.generators
        dev = module_device(gens)
        with torch.no_grad():  # as people should see them: an adapter's normalisation undone
            return torch.cat(
                [gens.display(gens[o.cls](torch.tensor([o.latent], device=dev))).cpu() for o in self.items]
            )


def global_correctness(
    classifier: nn.Module,
    generators: GeneratorFamily,
    *,
    n: int = 10_000,
    delta: float = 0.05,
    confidence: float = 0.95,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    classes: list[int] | None = None,
    sequential: bool = False,
    keep_outliers: int = 64,  # misclassified samples kept per class
    show_progress: bool = False,
    executor: Any = None,
    shard_size: int | None = None,
    journal: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> CorrectnessResult:
    """Estimate P_z[C(G_c(z)) = c] for each class with n samples (Definition 1 of the paper).

    ``sequential=True`` stops a class as soon as the anytime-valid test decides P ≥ 1 − δ either way
    (error ≤ 1 − confidence at any stopping time); ``n`` is then the budget. The Clopper–Pearson interval
    reported beside a sequential verdict describes the samples used and is not adjusted for early stopping.

    ``batch_size`` (samples per forward pass) and ``shard_size`` (samples per unit of work, journaled and
    scheduled as one) default by where the shards run: 128 and 1,024 on CPUs (larger batches spill the
    activations out of cache), 4,096 and 16,384 when they run on GPUs, so that a GPU's kernels are full and
    scheduling and the journal stay a small share. Neither changes an answer: the samples are the seed's blocks
    whatever the sizes, and a sequential test reads them one by one.

    ``executor`` runs the shards (a sequential class stops after the shard in which its test decides, counting
    exactly the samples up to the decision) elsewhere: a
    ``concurrent.futures`` executor, a Dask ``distributed.Client``, or :func:`genrobust.execute.open_workers`'s
    choice; the answer is the same. With
    ``journal`` (a file path) every finished shard is recorded there, and ``resume=True`` continues the run that
    wrote it (same arguments and models, or it is refused).
    """
    sizes = {k: v for k, v in (("batch_size", batch_size), ("shard_size", shard_size)) if v is not None}
    check_estimate_args(n=n, delta=delta, confidence=confidence, seed=seed, **sizes)
    dev = resolve_device(device)
    original, original_gens = classifier, generators  # hashed for the result's provenance
    # copies, once: the caller's models keep their device and modes
    classifier, generators = working_copy(classifier, dev, fast=True), working_copy(generators, dev)
    check_compatible(classifier, generators, dev)
    wanted = check_classes(classes, len(generators))

    # device None or "auto": each worker takes its own GPU if it has one, even when this machine has none
    auto = device is None or device == "auto"
    workers = open_workers(executor)
    if shard_size is None:
        on_gpu = workers.accelerated() if auto else dev.type == "cuda"
        shard_size = BLOCK * (GPU_SHARD_BLOCKS if on_gpu else 1)
    task = _CorrectnessShard(classifier, generators, wanted, dev, batch_size, seed, auto)
    tests = {c: SequentialTest(delta=delta, alpha=1 - confidence) for c in wanted} if sequential else {}

    def stop_rule(c: int):
        return lambda part: tests[c].update(part.ok) != UNDECIDED

    def header() -> dict[str, Any]:  # hashes the models: only for a journal
        return {"kind": "correctness", "n": n, "seed": seed, "shard": shard_size, "sequential": sequential,
                "delta": delta, "confidence": confidence, "classes": wanted,
                "models": {"classifier": task.classifier.key, "generators": task.generator_keys()}}  # fmt: skip

    opened_here = workers if workers is not executor else contextlib.nullcontext()  # closed when done
    with opened_here, open_journal(journal, header, resume) as log:  # the workers close even if the journal refuses
        runs = run_classes(wanted, generators.latent_dim, task, n=n, seed=seed, chunk=shard_size,
                           stop_rule=stop_rule if sequential else None, desc="correctness",
                           show_progress=show_progress, executor=workers, journal=log)  # fmt: skip
    estimates, outliers = [], []
    for run in runs:
        c, test = run.cls, tests.get(run.cls)
        used = test.decided_at if test is not None and test.decided_at is not None else n
        # keep exactly the samples the decision saw (the last chunk may run past it)
        z, pred, conf = (torch.cat([getattr(p, k) for p in run.parts])[:used] for k in ("z", "pred", "conf"))
        ok = np.concatenate([p.ok for p in run.parts])[:used]
        share = Proportion(int(ok.sum()), used, confidence)
        for i in np.flatnonzero(~ok)[:keep_outliers]:
            outliers.append(Outlier(c, z[i].tolist(), int(pred[i]), float(conf[i])))
        estimates.append(
            ClassEstimate(
                cls=c,
                name=generators.class_names[c],
                share=share,
                verdict=test.decision if test is not None else share.verdict(delta),
                confident={f"{q:.2f}": int(((pred == c) & (conf > q)).sum()) / used for q in PROFILE_LEVELS},
                decided_at=test.decided_at if test is not None else None,
                spent=run.spent,
            )
        )
    parameters = {"n": n, "delta": delta, "confidence": confidence, "seed": seed, "classes": wanted,
                  "sequential": sequential, "keep_outliers": keep_outliers}  # fmt: skip
    provenance = Provenance(parameters, model_hashes(original, original_gens, wanted))
    return CorrectnessResult(delta, confidence, seed, estimates, outliers, generators,
                             getattr(generators, "coverage", None), provenance)  # fmt: skip
