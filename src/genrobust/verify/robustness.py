"""Global (ε, δ)-robustness (Definition 3 of the paper): for every class c,
P_z[every z′ with ‖z − z′‖∞ ≤ ε has C(G_c(z′)) = c] ≥ 1 − δ, by Monte Carlo over local checks.

The centres are the correctness estimator's latents (the same seed gives the same z as
:func:`~genrobust.estimate.global_correctness`). Each centre is certified, falsified or unknown at each ε
(:mod:`genrobust.verify.local`), so P(robust at ε) is bounded from both sides:

    P(certified) ≤ P(robust) ≤ P(not falsified),

and with exact intervals: P(robust) ≥ the lower Clopper–Pearson bound of certified/n and ≤ the upper bound of
(n − falsified)/n (together a confidence of at least 1 − α, α = 1 − ``confidence``, as the two one-sided
errors are each α/2). The δ verdict *holds* when the lower bound is ≥ 1 − δ, *fails* when the upper bound is
below it, and is *undecided* otherwise: unknowns count against both sides.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..attacks import _eps_list
from ..compose import check_compatible
from ..errors import GenrobustError
from ..estimate import alone_note
from ..execute import ClassTask, Shipped, worker_cached
from ..journal import decode_tensor, encode_tensor, open_journal
from ..models.coverage import Coverage
from ..models.generators import GeneratorFamily
from ..results import Provenance, Result, model_hashes, register
from ..runtime import resolve_device, working_copy
from ..sampling import check_classes, check_estimate_args, run_classes
from ..stats import FAILS, HOLDS, UNDECIDED, Proportion, SequentialTest, bonferroni_fails
from .local import (
    CERTIFIED,
    FALSIFIED,
    VERIFIER_VERSION,
    LocalResult,
    LocalVerifier,
    VerifyOptions,
    _options_dict,
)

#: centres per shard (one local verifier's run): each shard's pool of seconds (``VerifyOptions.mean_seconds``) is
#: spread over its own balls, and shards are what worker processes take one at a time
CHUNK = 32


@dataclass
class EpsEstimate:
    """One class at one ε: the certified share (its lower end bounds P(robust) from below), the non-falsified
    share (its upper end bounds it from above) and the verdict."""

    eps: float
    certified_share: Proportion  # balls certified of n
    unfalsified_share: Proportion  # balls not falsified of n (certified or unknown)
    verdict: str
    decided_at: int | None = None  # sequential mode: balls used when the verdict became certain
    # sequential mode, when it says fails: (non-falsified, balls) when the non-falsified share's test decided
    fails_counts: tuple[int, int] | None = None

    @property
    def n(self) -> int:
        return self.certified_share.n

    @property
    def certified(self) -> int:
        return self.certified_share.k

    @property
    def falsified(self) -> int:
        return self.n - self.unfalsified_share.k

    @property
    def unknown(self) -> int:
        return self.unfalsified_share.k - self.certified

    @property
    def lower(self) -> float:
        """Clopper–Pearson lower end of certified / n: P(robust) is at least this."""
        return self.certified_share.ci[0]

    @property
    def upper(self) -> float:
        """Clopper–Pearson upper end of (n − falsified) / n: P(robust) is at most this."""
        return self.unfalsified_share.ci[1]

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "certified": self.certified_share.to_dict(),
                "not_falsified": self.unfalsified_share.to_dict(), "unknown": self.unknown, "verdict": self.verdict,
                "decided_at": self.decided_at, "fails_counts": self.fails_counts}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], confidence: float) -> EpsEstimate:
        if isinstance(d["certified"], dict):
            cert, alive = Proportion.from_dict(d["certified"]), Proportion.from_dict(d["not_falsified"])
        else:  # format 1: the counts flat
            n = int(d["n"])
            cert, alive = Proportion(d["certified"], n, confidence), Proportion(n - d["falsified"], n, confidence)
        fails = d.get("fails_counts")
        return cls(float(d["eps"]), cert, alive, str(d["verdict"]), d.get("decided_at"),
                   tuple(fails) if fails is not None else None)  # fmt: skip

    def fails_familywise(self, delta: float, confidence: float, m: int) -> bool:
        """Whether this *fails* survives Bonferroni over ``m`` classes (:func:`genrobust.stats.bonferroni_fails`)."""
        if self.verdict != FAILS:
            return False
        if self.fails_counts is not None:
            return bonferroni_fails(*self.fails_counts, delta, confidence, m, sequential=True)
        return bonferroni_fails(self.n - self.falsified, self.n, delta, confidence, m)


@dataclass
class ClassRobustness:
    """One class: its estimates per ε, and the time and balls it took."""

    cls: int
    name: str
    per_eps: list[EpsEstimate]
    seconds: float
    spent: int | None = None  # balls checked, with any a pool had in flight past a sequential stop (discarded)


@register
@dataclass
class RobustnessResult(Result):
    """Per class and ε: counts, bounds and verdicts; per class the local results (witnesses, radii)."""

    kind: ClassVar[str] = "robustness"
    eps: list[float]
    delta: float
    confidence: float
    seed: int
    classes: list[ClassRobustness]
    local: dict[int, LocalResult] = field(default_factory=dict, repr=False)
    generators: GeneratorFamily | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    #: the family's measured precision / recall per class, when known: shown beside each class's verdict
    coverage: Coverage | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def verdict(self, eps: float) -> str:
        """(ε, δ)-robust iff every class holds at ε; not iff some class fails at ε after Bonferroni over the
        classes (as :attr:`CorrectnessResult.verdict`); else undecided."""
        if self.failing(eps, familywise=True):
            return FAILS
        e = self._index(eps)
        return HOLDS if {c.per_eps[e].verdict for c in self.classes} == {HOLDS} else UNDECIDED

    def failing(self, eps: float, familywise: bool = False) -> list[ClassRobustness]:
        """The classes that fail at ε on their own, or (``familywise``) after Bonferroni over the classes."""
        e, m = self._index(eps), len(self.classes)
        return [c for c in self.classes if c.per_eps[e].verdict == FAILS
                and (not familywise or c.per_eps[e].fails_familywise(self.delta, self.confidence, m))]  # fmt: skip

    def _index(self, eps: float) -> int:
        for e, value in enumerate(self.eps):
            if np.isclose(value, eps):
                return e
        raise GenrobustError(f"ε = {eps} was not checked; checked: {', '.join(f'{v:g}' for v in self.eps)}")

    def table(self) -> str:
        level = f"{100 * self.confidence:g}%"
        cov = self.coverage
        lines = [f"{'class':<12} {'ε':>7} {'n':>6} {'cert.':>6} {'fals.':>6} {'unkn.':>6}  "
                 f"{'P(robust) ' + level + ' bounds':<22} {'P ≥ 1−δ?':<10}"
                 + (" precision / recall" if cov else "")]  # fmt: skip
        for c in self.classes:
            for r in c.per_eps:
                lines.append(
                    f"{c.name[:12]:<12} {r.eps:>7g} {r.n:>6} {r.certified:>6} {r.falsified:>6} {r.unknown:>6}  "
                    f"{f'[{r.lower:.4f}, {r.upper:.4f}]':<22} {r.verdict:<10}" + (f" {cov.cell(c.cls)}" if cov else "")
                )
        for eps in self.eps:
            note = alone_note(self.failing(eps), self.failing(eps, familywise=True), len(self.classes))
            lines.append(f"ε = {eps:g}, δ = {self.delta}: {self.verdict(eps)}{note}")
        if cov:
            lines.append(cov.note([c.cls for c in self.classes], [c.name for c in self.classes]))
        return "\n".join(lines)

    def body(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "delta": self.delta,
            "confidence": self.confidence,
            "seed": self.seed,
            "options": self.options,
            "verdicts": {f"{e:g}": self.verdict(e) for e in self.eps},
            "failing_classes": {f"{e:g}": [c.cls for c in self.failing(e)] for e in self.eps},
            "failing_classes_familywise": {
                f"{e:g}": [c.cls for c in self.failing(e, familywise=True)] for e in self.eps
            },
            "classes": [
                {
                    "cls": c.cls,
                    "name": c.name,
                    "seconds": c.seconds,
                    "spent": c.spent,
                    "per_eps": [r.to_dict() for r in c.per_eps],
                }
                for c in self.classes
            ],
            "balls": {str(c): r.to_dict()["balls"] for c, r in self.local.items()},
            "coverage": self.coverage.to_dict() if self.coverage else None,
        }

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> RobustnessResult:
        confidence, eps = float(body["confidence"]), [float(e) for e in body["eps"]]
        classes = [ClassRobustness(int(c["cls"]), str(c["name"]),
                                   [EpsEstimate.from_dict(r, confidence) for r in c["per_eps"]],
                                   float(c["seconds"]), c.get("spent")) for c in body["classes"]]  # fmt: skip
        options = dict(body.get("options") or {})
        local = {int(c): LocalResult.from_balls(eps, balls, options) for c, balls in (body.get("balls") or {}).items()}
        coverage = Coverage.from_dict(body["coverage"]) if body.get("coverage") else None
        return cls(eps, float(body["delta"]), confidence, int(body["seed"]), classes, local, None, options, coverage,
                   provenance)  # fmt: skip


def _estimates(res: LocalResult, eps: list[float], delta: float, confidence: float) -> list[EpsEstimate]:
    out = []
    n = len(res.labels)
    for e, value in enumerate(eps):
        st = res.status[:, e]
        cert, fals = int((st == CERTIFIED).sum()), int((st == FALSIFIED).sum())
        # one-sided bounds at level α/2 each: the two-sided Clopper–Pearson ends at confidence 1 − α
        est = EpsEstimate(value, Proportion(cert, n, confidence), Proportion(n - fals, n, confidence), UNDECIDED)
        est.verdict = HOLDS if est.lower >= 1 - delta else FAILS if est.upper < 1 - delta else UNDECIDED
        out.append(est)
    return out


def global_robustness(
    classifier: nn.Module,
    generators: GeneratorFamily,
    *,
    eps: float | Sequence[float],
    n: int = 1000,
    delta: float = 0.05,
    confidence: float = 0.95,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    sequential: bool = False,
    options: VerifyOptions | None = None,
    chunk: int = CHUNK,
    start: int = 0,
    device: str | torch.device | None = None,
    show_progress: bool = False,
    executor: Any = None,
    journal: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> RobustnessResult:
    """Bound P_z[C∘G_c robust on the ε-box around z] for every class c and ε with n centres each.

    ``sequential=True`` checks centres ``chunk`` at a time and stops a class once, at every ε, the
    anytime-valid test on the certified share says *holds* or the one on the non-falsified share says *fails*
    (each with error ≤ 1 − confidence at any stopping time); ``n`` is then the budget. The verdict is the
    sequential test's, decided at ``decided_at`` (rounded up to the chunk); the counts and Clopper–Pearson
    bounds beside it are those of every centre the class checked (it runs until its slowest ε decides), not
    adjusted for the early stop, so they describe the sample and need not match the verdict. ``start`` checks only
    centres start..n − 1 (extending a fixed-n run that covered the first ``start``: the same centres, seeds and
    outcomes as one run of n).

    ``executor`` runs the shards (``chunk`` centres each) elsewhere: a ``concurrent.futures`` executor, a Dask
    ``distributed.Client``, or :func:`genrobust.execute.open_workers`'s choice; each worker builds the verifier
    of a class once and keeps it. The answer is the same (timings aside). With ``journal`` (a file path) every
    finished shard is recorded there, and ``resume=True`` continues the run that wrote it.
    """
    check_estimate_args(n=n, delta=delta, confidence=confidence, seed=seed, chunk=chunk)
    if sequential and start:
        raise GenrobustError("a sequential run starts at the first centre: start must be 0")
    if not isinstance(generators, GeneratorFamily):
        raise GenrobustError("generators must be a GeneratorFamily (see load_generators)")
    eps_values = sorted(_eps_list(eps))
    dev = resolve_device(device)
    original, original_gens = classifier, generators  # hashed for the result's provenance
    # copies, once: the caller's models keep their device and modes
    classifier, generators = working_copy(classifier, dev), working_copy(generators, dev)
    check_compatible(classifier, generators, dev)
    wanted = check_classes(classes, len(generators))
    options = options or VerifyOptions()
    task = _RobustnessShard(classifier, generators, wanted, eps_values, options, seed, dev)
    stoppers = {c: _SequentialStop(len(eps_values), delta, confidence) for c in wanted}

    def header() -> dict[str, Any]:  # hashes the models: only for a journal
        return {"kind": "robustness", "n": n, "seed": seed, "eps": eps_values, "chunk": chunk, "start": start,
                "sequential": sequential, "delta": delta, "confidence": confidence, "classes": wanted,
                "options": _options_dict(options), "verifier": VERIFIER_VERSION,
                "models": {"classifier": task.classifier.key, "generators": task.generator_keys()}}  # fmt: skip

    with open_journal(journal, header, resume) as log:
        runs = run_classes(wanted, generators.latent_dim, task, n=n, seed=seed, chunk=chunk, start=start,
                           stop_rule=(lambda c: stoppers[c].update) if sequential else None, desc="robustness",
                           show_progress=show_progress, unit="balls", executor=executor, journal=log)  # fmt: skip
    out, local = [], {}
    for run in runs:
        c = run.cls
        res = _concat(run.parts, eps_values)
        per_eps = _estimates(res, eps_values, delta, confidence)
        if sequential:
            stoppers[c].settle(per_eps)
        local[c] = res
        out.append(ClassRobustness(c, generators.class_names[c], per_eps, run.seconds, run.spent))
    parameters = {"eps": eps_values, "n": n, "delta": delta, "confidence": confidence, "seed": seed,
                  "classes": wanted, "sequential": sequential, "chunk": chunk, "start": start,
                  "verifier": VERIFIER_VERSION}  # fmt: skip
    provenance = Provenance(parameters, model_hashes(original, original_gens, wanted))
    return RobustnessResult(eps_values, delta, confidence, seed, out, local, generators, _options_dict(options),
                            getattr(generators, "coverage", None), provenance)  # fmt: skip


class _RobustnessShard(ClassTask):
    """Global robustness's work on one shard: the local checks of its centres at every ε. A picklable task (see
    :mod:`genrobust.execute`); a worker builds each class's verifier once and keeps it."""

    def __init__(self, classifier: nn.Module, generators: GeneratorFamily, classes: list[int], eps: list[float],
                 options: VerifyOptions, seed: int, device: torch.device) -> None:  # fmt: skip
        self.classifier = Shipped(classifier)
        self.generators = {c: Shipped(generators[c]) for c in classes}
        self.latent_dim, self.eps, self.options, self.seed = generators.latent_dim, eps, options, seed
        self.device = str(device) if device.type == "cpu" else "auto"  # a worker picks its own accelerator
        self._mine: dict[int, LocalVerifier] = {}  # in the caller's process: one class at a time, as before

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_mine"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, _mine=None)

    def _verifier(self, c: int) -> LocalVerifier:
        dev = resolve_device(self.device)

        def build() -> LocalVerifier:
            return LocalVerifier(self.classifier.get(), self.generators[c].get(), latent_dim=self.latent_dim,
                                 options=self.options, device=dev)  # fmt: skip

        if self._mine is not None:
            if c not in self._mine:
                self._mine.clear()  # free the previous class's composed network
                self._mine[c] = build()
            return self._mine[c]
        # verifiers hold per-run state: one per worker thread
        key = ("verifier", self.classifier.key, self.generators[c].key, c, repr(self.options), str(dev),
               threading.get_ident())  # fmt: skip
        return worker_cached(key, build)

    def __call__(self, c: int, z: torch.Tensor, ids: list[int]) -> LocalResult:
        return self._verifier(c).run(z, [c] * len(ids), self.eps, seed=self.seed, ids=ids)

    @staticmethod
    def encode(part: LocalResult) -> dict[str, Any]:
        return {k: encode_tensor(getattr(part, k)) for k in _TENSORS}

    def decode(self, obj: dict[str, Any], shard: tuple[int, int, int]) -> LocalResult:
        return LocalResult(self.eps, *(decode_tensor(obj[k]) for k in _TENSORS), options=_options_dict(self.options))


_TENSORS = ("centers", "labels", "status", "witness", "witness_pred", "boxes", "seconds")


class _SequentialStop:
    """Per ε, the anytime-valid tests on the certified share (can say *holds*) and on the non-falsified share
    (can say *fails*); a class stops once every ε is final, or stuck (certified says fails while non-falsified
    says holds: the unknowns keep it undecided whatever comes)."""

    def __init__(self, n_eps: int, delta: float, confidence: float) -> None:
        self.tests = [(SequentialTest(delta, 1 - confidence), SequentialTest(delta, 1 - confidence))
                      for _ in range(n_eps)]  # fmt: skip
        self.decided_at: list[int | None] = [None] * n_eps
        self.seen = 0

    def update(self, part: LocalResult) -> bool:
        self.seen += len(part.labels)
        for e, (t_cert, t_alive) in enumerate(self.tests):
            t_cert.update((part.status[:, e] == CERTIFIED).numpy())
            t_alive.update((part.status[:, e] != FALSIFIED).numpy())
            final = t_cert.decision == HOLDS or t_alive.decision == FAILS
            stuck = t_cert.decision == FAILS and t_alive.decision == HOLDS
            if self.decided_at[e] is None and (final or stuck):
                self.decided_at[e] = self.seen
        return all(d is not None for d in self.decided_at)

    def settle(self, per_eps: list[EpsEstimate]) -> None:
        """Replace the fixed-n verdicts by the sequential ones."""
        for est, (t_cert, t_alive), at in zip(per_eps, self.tests, self.decided_at, strict=True):
            est.verdict = HOLDS if t_cert.decision == HOLDS else FAILS if t_alive.decision == FAILS else UNDECIDED
            est.decided_at = at
            if est.verdict == FAILS:
                est.fails_counts = (t_alive.decided_successes, t_alive.decided_at)


def _concat(parts: list[LocalResult], eps: list[float]) -> LocalResult:
    cat = torch.cat
    return LocalResult(
        eps, cat([p.centers for p in parts]), cat([p.labels for p in parts]), cat([p.status for p in parts]),
        cat([p.witness for p in parts]), cat([p.witness_pred for p in parts]), cat([p.boxes for p in parts]),
        cat([p.seconds for p in parts]), parts[0].options,
    )  # fmt: skip
