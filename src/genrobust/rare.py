"""Rare failure probabilities by adaptive multilevel splitting (AMLS) in latent space.

Plain Monte Carlo needs about 4/P samples to estimate a probability P to 50% relative error, and sees no
failure at all in 10⁵ samples when P = 10⁻⁶. AMLS (Webb et al., ICLR 2019, after Cérou and Guyader) reaches
such P through a ladder of levels of a *score* s(z), failure being s(z) ≥ 0: N particles start from the latent
distribution N(0, I); at each level the share ``quantile`` with the lowest scores is killed (the level L is the
score of the ⌈ρN⌉-th lowest; every particle at or below it dies, so ties cannot bias the count), each dead
particle is replaced by a copy of a random survivor, and all particles then take ``mcmc_steps``
Metropolis–Hastings steps that leave N(0, I) restricted to {s > L} invariant (preconditioned Crank–Nicolson:
z' = √(1 − β²)·z + β·ξ, accepted iff s(z') > L, β adapted per level towards an acceptance near 0.3). The
estimate is the product of the levels' surviving shares times the share of final particles that fail.

What the numbers mean, and their assumptions:
- With moves that mix (each level's particles distributed as N(0, I) restricted to the level set), this
  generalised AMLS is unbiased (Bréhier, Gazeau, Goudenège, Lelièvre and Rousset, 2016) and log P̂ is
  asymptotically normal with relative variance Σ_levels (1 − p)/(pN) (+ the same term for the final share):
  the *own* interval below. It is asymptotic, and it assumes the moves mix; a chain that does not mix makes
  the true spread larger than stated.
- ``repeats`` independent runs give the spread that actually occurred: their mean (unbiased under the same
  assumption) with a Student-t interval on it, which does not rely on the variance formula.
- A run that reaches no failure within ``max_levels`` levels reports what it estimated: P[s > last level],
  an upper bound's estimate, never a silent 0.

All groups (classes × repeats) move together: one batched score evaluation per step for every particle of
every group still climbing. Each group draws from its own stream (seed, group key), so a class's answer does
not depend on which other classes run beside it, nor on the batch size of the forward passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from .errors import GenrobustError
from .results import Provenance, Result, model_hashes, register
from .runtime import progress, resolve_device, sub_seed, working_copy
from .stats import FAILS, HOLDS, UNDECIDED

#: (latents (G, N, d), group indices (G,)) → scores (G, N); failure is score ≥ 0
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: pCN step size adaptation: the acceptance a level aims at, and how far β moves per step
TARGET_ACCEPTANCE = 0.3
MIN_STEP, MAX_STEP = 1e-3, 1.0


@dataclass
class Level:
    """One rung of the ladder: the score threshold and the share of particles above it."""

    threshold: float
    survived: float


@dataclass
class SplittingRun:
    """One independent AMLS run on one group (a class, or a closed-form case)."""

    estimate: float
    levels: list[Level]
    final_share: float  # share of the last level's particles that fail (score ≥ 0)
    reached: bool  # False: max_levels ran out first (estimate is then P[s > last level])
    evaluations: int  # score evaluations spent
    relvar: float  # the method's own asymptotic relative variance (see the module docstring)
    acceptance: float  # mean Metropolis–Hastings acceptance over the run
    failures: list[list[float]] = field(default_factory=list, repr=False)  # latents that fail, at the end
    survivors: list[list[float]] = field(default_factory=list, repr=False)  # the last level's others

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The run's own asymptotic interval: log P̂ ± z·√relvar (0 when nothing failed)."""
        if self.estimate <= 0:
            return 0.0, 0.0
        zq = float(sps.norm.ppf(0.5 + confidence / 2))
        half = zq * math.sqrt(self.relvar)
        return self.estimate * math.exp(-half), self.estimate * math.exp(half)


def adaptive_splitting(
    score: Score,
    dim: int,
    keys: Sequence[int],
    *,
    particles: int = 1000,
    quantile: float = 0.5,
    mcmc_steps: int = 10,
    max_levels: int = 100,
    seed: int = 0,
    device: torch.device | str = "cpu",
    keep_failures: int = 16,
    show_progress: bool = False,
) -> list[SplittingRun]:
    """AMLS on N(0, I_dim) for P[score ≥ 0], one independent run per entry of ``keys`` (all batched together).

    ``keys``: a non-negative integer per group; group g draws from the stream ``sub_seed(seed, keys[g])`` and its
    scores come from ``score(z, groups)`` where ``groups`` holds the indices of the groups evaluated.
    """
    check_splitting_args(particles, quantile, mcmc_steps, max_levels, seed)
    dev = torch.device(device)
    G, N = len(keys), particles
    if G == 0:
        raise GenrobustError("no groups to estimate")
    gens = [torch.Generator().manual_seed(sub_seed(seed, int(k))) for k in keys]

    def randn(idx: list[int]) -> torch.Tensor:  # on the CPU, per group: streams independent of the rest
        return torch.stack([torch.randn(N, dim, generator=gens[g], dtype=torch.float64) for g in idx]).to(dev)

    def evaluate(z: torch.Tensor, idx: list[int]) -> torch.Tensor:
        s = score(z.float(), torch.tensor(idx, device=dev)).double()
        if s.shape != z.shape[:2]:
            raise GenrobustError(f"the score returned shape {tuple(s.shape)} for latents {tuple(z.shape)}")
        if not torch.isfinite(s).all():
            raise GenrobustError("the score is NaN or infinite on some latents: check the models' outputs")
        return s

    everyone = list(range(G))
    z = randn(everyone)
    s = evaluate(z, everyone)
    evals = [N] * G
    levels: list[list[Level]] = [[] for _ in range(G)]
    relvar = [0.0] * G
    accepted, proposed = [0] * G, [0] * G
    step = [0.5] * G
    runs: dict[int, SplittingRun] = {}
    k = max(1, math.ceil(quantile * N))
    bar = progress(max_levels, "splitting levels", show_progress, unit="level")
    for _ in range(max_levels + 1):
        active = [g for g in everyone if g not in runs]
        if not active:
            break
        for g in active:  # finished groups: the level would reach the failure set, or no level is left
            ordered = s[g].sort().values
            level = float(ordered[k - 1])
            if level >= 0 or len(levels[g]) == max_levels:
                fail = s[g] >= 0
                share = float(fail.double().mean())
                log_p = sum(math.log(lv.survived) for lv in levels[g])
                rv = relvar[g] + ((1 - share) / (share * N) if share > 0 else math.inf)
                runs[g] = SplittingRun(
                    estimate=math.exp(log_p) * share if level >= 0 else math.exp(log_p),
                    levels=levels[g], final_share=share, reached=level >= 0, evaluations=evals[g],
                    relvar=rv if level >= 0 else relvar[g], acceptance=accepted[g] / max(1, proposed[g]),
                    failures=z[g][fail][:keep_failures].tolist(), survivors=z[g][~fail][:keep_failures].tolist(),
                )  # fmt: skip
            elif float(ordered[-1]) <= level:
                raise GenrobustError(f"the score stopped rising at {level:.6g} below the failure level 0 (every "
                                     f"particle of group {keys[g]} has the same score): a constant score cannot be "
                                     "split; plain Monte Carlo says more here")  # fmt: skip
        active = [g for g in everyone if g not in runs]
        if not active:
            break
        thresholds = torch.tensor([float(s[g].sort().values[k - 1]) for g in active], dtype=torch.float64,
                                  device=dev)  # fmt: skip
        # kill every particle at or below its group's level; clone random survivors into their places
        for row, g in enumerate(active):
            dead = s[g] <= thresholds[row]
            alive = torch.nonzero(~dead).flatten()
            p = len(alive) / N
            levels[g].append(Level(float(thresholds[row]), p))
            relvar[g] += (1 - p) / (p * N)
            dead_idx = torch.nonzero(dead).flatten()
            pick = torch.randint(len(alive), (len(dead_idx),), generator=gens[g]).to(dev)
            z[g, dead_idx] = z[g, alive[pick]]
            s[g, dead_idx] = s[g, alive[pick]]
        idx = torch.tensor(active, device=dev)
        za, sa = z[idx], s[idx]
        beta = torch.tensor([step[g] for g in active], dtype=torch.float64, device=dev)
        for _ in range(mcmc_steps):
            b = beta[:, None, None]
            prop = torch.sqrt(1 - b * b) * za + b * randn(active)
            sp = evaluate(prop, active)
            ok = sp > thresholds[:, None]
            za = torch.where(ok[:, :, None], prop, za)
            sa = torch.where(ok, sp, sa)
            rate = ok.double().mean(1)
            for row, g in enumerate(active):
                evals[g] += N
                accepted[g] += int(ok[row].sum())
                proposed[g] += N
            # β up when too many proposals are accepted (steps too small to decorrelate), down when too few
            beta = (beta * torch.exp(rate - TARGET_ACCEPTANCE)).clamp(MIN_STEP, MAX_STEP)
        z[idx], s[idx] = za, sa
        for row, g in enumerate(active):
            step[g] = float(beta[row])
        bar.update(1)
    bar.close()
    return [runs[g] for g in everyone]


def check_splitting_args(particles: object, quantile: float, mcmc_steps: object, max_levels: object,
                         seed: object) -> None:  # fmt: skip
    """One clear message per mistake in AMLS's settings."""
    if not isinstance(particles, int) or particles < 10:
        raise GenrobustError(f"particles must be an integer ≥ 10, got {particles!r}")
    if not (isinstance(quantile, float | int) and 0 < quantile < 1):
        raise GenrobustError(f"quantile must be in (0, 1) (the share of particles killed per level), got {quantile!r}")
    if math.ceil(quantile * particles) >= particles:
        raise GenrobustError(f"quantile {quantile} kills all {particles} particles at once: lower it or add particles")
    if not isinstance(mcmc_steps, int) or mcmc_steps < 1:
        raise GenrobustError(f"mcmc_steps must be a positive integer, got {mcmc_steps!r}")
    if not isinstance(max_levels, int) or max_levels < 1:
        raise GenrobustError(f"max_levels must be a positive integer, got {max_levels!r}")
    if not isinstance(seed, int) or seed < 0:
        raise GenrobustError(f"seed must be a non-negative integer, got {seed!r}")


# ------------------------------------------------------------------------------------ C∘G_c: the failure score
def _margins(classifier: nn.Module, generators: Any, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """max_{j≠c} logit_j − logit_c of C(G_c(x)) per row, c = ``cls`` (rows of one class contiguous: each run of a
    class goes through its generator at once, then all images through the classifier together)."""
    runs, counts = torch.unique_consecutive(cls, return_counts=True)
    pieces = x.split(counts.tolist())
    images = torch.cat([generators[int(c)](piece) for c, piece in zip(runs.tolist(), pieces, strict=True)])
    if not torch.isfinite(images).all():
        raise GenrobustError("a generator returned NaN or infinite pixels")
    logits = classifier(images).float()
    own = logits.gather(1, cls[:, None]).squeeze(1)
    return logits.scatter(1, cls[:, None], -math.inf).max(1).values - own


def _flat(z: torch.Tensor, groups: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The groups' latents as rows (G·N, d), and each row's class."""
    G, N = z.shape[:2]
    owner = torch.tensor([int(classes[g]) for g in groups.tolist()], device=z.device).repeat_interleave(N)
    return z.reshape(G * N, -1), owner


def margin_score(classifier: nn.Module, generators: Any, classes: Sequence[int], batch_size: int = 4096) -> Score:
    """s(z) = max_{j≠c} logit_j − logit_c of C(G_c(z)), c = ``classes[group]``: ≥ 0 exactly when C does not
    label the image c (a tie counts as a failure, as argmax may break it either way). Every group's images go
    through the classifier together, ``batch_size`` at a time."""

    @torch.no_grad()
    def score(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        flat, owner = _flat(z, groups, classes)
        out = torch.cat([_margins(classifier, generators, flat[lo : lo + batch_size], owner[lo : lo + batch_size])
                         for lo in range(0, len(flat), batch_size)])  # fmt: skip
        return out.reshape(z.shape[:2])

    return score


def box_margin_score(classifier: nn.Module, generators: Any, classes: Sequence[int], eps: float, steps: int = 5,
                     batch_size: int = 1024) -> Score:  # fmt: skip
    """s(z) = the largest margin max_{j≠c} logit_j − logit_c of C(G_c(z′)) that ``steps`` steps of signed-gradient
    ascent find among z′ ∈ [z − ε, z + ε] (from the centre, step 2.5ε/steps): ≥ 0 when the attack breaks the box.
    A lower bound on the box's worst margin, so P[s ≥ 0] ≤ P[the box is not robust]. Deterministic: the same z
    always gets the same score, as the Metropolis–Hastings moves need."""

    margins = functools.partial(_margins, classifier, generators)

    def score(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        flat, owner = _flat(z, groups, classes)
        out = torch.empty(len(flat), dtype=torch.float32, device=z.device)
        for lo in range(0, len(flat), batch_size):
            z0, cls = flat[lo : lo + batch_size].detach(), owner[lo : lo + batch_size]
            x = z0.clone()
            with torch.no_grad():
                best = margins(x, cls)
            for _ in range(steps):
                x.requires_grad_(True)
                m = margins(x, cls)
                (grad,) = torch.autograd.grad(m.sum(), x)
                with torch.no_grad():
                    best = torch.maximum(best, m.detach())
                    x = torch.minimum(torch.maximum(x + 2.5 * eps / steps * grad.sign(), z0 - eps), z0 + eps)
            with torch.no_grad():
                best = torch.maximum(best, margins(x, cls))
            if not torch.isfinite(best).all():
                raise GenrobustError("the models returned NaN or infinite logits")
            out[lo : lo + batch_size] = best
        return out.reshape(z.shape[:2])

    return score


@dataclass
class RareEstimate:
    """One class's failure probability P_z[C(G_c(z)) ≠ c] by AMLS."""

    cls: int
    name: str
    estimate: float  # the runs' mean
    ci_low: float
    ci_high: float
    interval: str  # how [ci_low, ci_high] was obtained (its assumptions)
    verdict: str  # P(failure) ≤ δ? holds / fails / undecided, only as the interval allows
    reached: bool  # every run reached the failure set
    evaluations: int  # score evaluations over all runs
    runs: list[float]  # each run's estimate
    levels: list[dict[str, float]]  # the first run's ladder: threshold and surviving share per level
    acceptance: float
    failures: list[list[float]] = field(default_factory=list, repr=False)
    #: robustness only: of the last level's boxes that the attack did not break, how many the verifier checked,
    #: certified and falsified (the attack's failure rate is a lower bound's estimate; these say how loose)
    last_level: dict[str, int] | None = None


@register
@dataclass
class RareFailureResult(Result):
    """Per-class failure probabilities by adaptive multilevel splitting, in the project's result style."""

    delta: float
    confidence: float
    seed: int
    settings: dict[str, Any]
    classes: list[RareEstimate]
    generators: Any = field(default=None, repr=False)
    eps: float | None = None  # robustness: the latent radius (failure: the attack breaks the box)
    provenance: Provenance = field(default_factory=Provenance)
    kind: ClassVar[str] = "rare-failures"

    @property
    def verdict(self) -> str:
        """Every class's failure probability ≤ δ (holds), some class's > δ (fails), else undecided. Bonferroni
        over the classes is not applied here: each class's interval is asymptotic already (see the module)."""
        verdicts = {c.verdict for c in self.classes}
        return FAILS if FAILS in verdicts else HOLDS if verdicts == {HOLDS} else UNDECIDED

    @property
    def evaluations(self) -> int:
        return sum(c.evaluations for c in self.classes)

    def table(self) -> str:
        level = f"{100 * self.confidence:g}%"
        what = "P(failure)" if self.eps is None else "P(broken)"
        robust = self.eps is not None
        lines = [f"{'class':<14} {what:>11}  {level + ' interval':<24} {'levels':>6} {'evaluations':>11}  "
                 f"{'P ≤ δ?':<10}" + (" last level: certified / falsified / checked" if robust else "")]  # fmt: skip
        for c in self.classes:
            est = f"{c.estimate:.3e}" if c.reached else f"<~{c.estimate:.1e}"
            ci = f"[{c.ci_low:.2e}, {c.ci_high:.2e}]"
            last = c.last_level
            lines.append(f"{c.name[:14]:<14} {est:>11}  {ci:<24} {len(c.levels):>6} {c.evaluations:>11,}  "
                         f"{c.verdict:<10}" + (f" {last['certified']} / {last['falsified']} / {last['checked']}"
                                               if robust and last else ""))  # fmt: skip
        lines.append(f"δ = {self.delta:g}: {self.verdict}; {self.evaluations:,} model evaluations; interval: "
                     f"{self.classes[0].interval}")  # fmt: skip
        if robust:
            lines.append(f"ε = {self.eps:g}: a box counts as broken when {self.settings['attack_steps']} attack steps "
                         "find a latent in it that C labels otherwise; P(broken) estimates a lower bound of "
                         "P(not robust). The last level's unbroken boxes went to the verifier.")  # fmt: skip
        unreached = [c.name for c in self.classes if not c.reached]
        if unreached:
            lines.append(
                f"no failure reached within {self.settings['max_levels']} levels for {', '.join(unreached)}:"
                " the figure is an estimate of P[score > last level], above the failure probability"
            )
        return "\n".join(lines)

    def body(self) -> dict[str, Any]:
        return {"method": "amls", "failure": "robustness" if self.eps is not None else "correctness",
                "eps": self.eps, "delta": self.delta, "confidence": self.confidence, "seed": self.seed,
                "settings": self.settings, "verdict": self.verdict, "evaluations": self.evaluations,
                "classes": [asdict(c) for c in self.classes]}  # fmt: skip

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> RareFailureResult:
        return cls(float(body["delta"]), float(body["confidence"]), int(body["seed"]), dict(body["settings"]),
                   [RareEstimate(**c) for c in body["classes"]], None, body.get("eps"), provenance)  # fmt: skip


def summarise(runs: list[SplittingRun], confidence: float) -> tuple[float, float, float, str]:
    """The mean of the runs and an interval: Student-t over the runs with two or more, the run's own asymptotic
    interval with one."""
    ests = np.array([r.estimate for r in runs])
    mean = float(ests.mean())
    if len(runs) == 1:
        lo, hi = runs[0].interval(confidence)
        return mean, lo, hi, "asymptotic (log-normal, Σ(1 − p)/(pN) over the levels; assumes the moves mix)"
    se = float(ests.std(ddof=1) / math.sqrt(len(runs)))
    t = float(sps.t.ppf(0.5 + confidence / 2, len(runs) - 1))
    return mean, max(0.0, mean - t * se), mean + t * se, f"Student t over {len(runs)} independent runs"


def rare_failure(
    classifier: nn.Module,
    generators: Any,
    *,
    eps: float | None = None,
    delta: float = 1e-6,
    confidence: float = 0.95,
    classes: Sequence[int] | None = None,
    particles: int = 1000,
    quantile: float = 0.5,
    mcmc_steps: int = 10,
    max_levels: int = 100,
    repeats: int = 1,
    attack_steps: int = 5,
    verify: int = 16,
    verify_options: Any = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> RareFailureResult:
    """P_z[C(G_c(z)) ≠ c] per class by adaptive multilevel splitting, down to probabilities that plain Monte
    Carlo cannot reach (see the module docstring for what the interval assumes). ``repeats`` independent runs
    per class (all batched together) give an interval from their spread; one run gives the asymptotic one.

    With ``eps``: P_z[the box [z − ε, z + ε] is not robust] as an attack sees it (:func:`box_margin_score`,
    ``attack_steps`` steps: a lower bound's estimate); then up to ``verify`` boxes per class of the last level
    that the attack did not break go to the verifier (``verify_options``, default: 16 boxes / 10 s per box), and
    their certified / falsified counts stand beside the estimate (``RareEstimate.last_level``)."""

    from .compose import check_compatible
    from .sampling import check_classes

    if not 0 < delta < 1:
        raise GenrobustError(f"delta must be in (0, 1), got {delta}")
    if not 0 < confidence < 1:
        raise GenrobustError(f"confidence must be in (0, 1), got {confidence}")
    if not isinstance(repeats, int) or repeats < 1:
        raise GenrobustError(f"repeats must be a positive integer, got {repeats!r}")
    if eps is not None and not (math.isfinite(eps) and eps > 0):
        raise GenrobustError(f"eps must be a finite number > 0, got {eps}")
    if not isinstance(attack_steps, int) or attack_steps < 1 or not isinstance(verify, int) or verify < 0:
        raise GenrobustError(f"attack_steps must be ≥ 1 and verify ≥ 0, got {attack_steps!r}, {verify!r}")
    check_splitting_args(particles, quantile, mcmc_steps, max_levels, seed)
    dev = resolve_device(device)
    clf, gens = working_copy(classifier, dev, fast=True), working_copy(generators, dev)
    check_compatible(clf, gens, dev)
    wanted = check_classes(classes, len(gens))
    group_class = [c for c in wanted for _ in range(repeats)]
    keys = [c * 1_000_003 + r for c in wanted for r in range(repeats)]  # per (class, repeat): stable streams
    if eps is None:
        score = margin_score(clf, gens, group_class, batch_size or 4096)
    else:
        clf.requires_grad_(False)
        score = box_margin_score(clf, gens, group_class, eps, attack_steps, batch_size or 1024)
    runs = adaptive_splitting(score, gens.latent_dim, keys, particles=particles, quantile=quantile,
                              mcmc_steps=mcmc_steps, max_levels=max_levels, seed=seed, device=dev,
                              show_progress=show_progress)  # fmt: skip
    out = []
    for i, c in enumerate(wanted):
        mine = runs[i * repeats : (i + 1) * repeats]
        est, lo, hi, how = summarise(mine, confidence)
        reached = all(r.reached for r in mine)
        # unreached: the figure estimates P[s > last level] ≥ P(failure), so only "holds" can follow from it
        verdict = HOLDS if hi <= delta else FAILS if lo > delta and reached else UNDECIDED
        last = None
        if eps is not None and verify:
            last = _verify_last_level(classifier, generators, c, [z for r in mine for z in r.survivors][:verify], eps,
                                      verify_options, seed, dev)  # fmt: skip
        out.append(RareEstimate(
            cls=c, name=gens.class_names[c], estimate=est, ci_low=lo, ci_high=hi, interval=how, verdict=verdict,
            reached=reached, evaluations=sum(r.evaluations for r in mine), runs=[r.estimate for r in mine],
            levels=[asdict(lv) for lv in mine[0].levels], acceptance=float(np.mean([r.acceptance for r in mine])),
            failures=[f for r in mine for f in r.failures][:16], last_level=last,
        ))  # fmt: skip
    settings = {"particles": particles, "quantile": quantile, "mcmc_steps": mcmc_steps, "max_levels": max_levels,
                "repeats": repeats}  # fmt: skip
    if eps is not None:
        settings.update(attack_steps=attack_steps, verify=verify)
    parameters = {"delta": delta, "confidence": confidence, "seed": seed, "eps": eps, "classes": wanted, **settings}
    provenance = Provenance(parameters, model_hashes(classifier, generators, wanted))
    return RareFailureResult(delta, confidence, seed, settings, out, generators=gens, eps=eps, provenance=provenance)


def _verify_last_level(classifier, generators, c: int, latents: list, eps: float, options, seed: int,
                       device) -> dict[str, int]:  # fmt: skip
    """The verifier on boxes of the last level that the attack left standing: how many it certifies and falsifies."""
    from .verify import LocalVerifier, VerifyOptions

    counts = {"checked": len(latents), "certified": 0, "falsified": 0, "unknown": 0}
    if not latents:
        return counts
    opts = options or VerifyOptions(max_boxes=16, max_seconds=10.0)
    v = LocalVerifier(classifier, generators[c], latent_dim=generators.latent_dim, options=opts, device=device)
    res = v.run(torch.tensor(latents, dtype=torch.float32), [c] * len(latents), [eps], seed=seed)
    status = res.status[:, 0]
    counts.update(certified=int((status == 1).sum()), falsified=int((status == -1).sum()),
                  unknown=int((status == 0).sum()))  # fmt: skip
    return counts
