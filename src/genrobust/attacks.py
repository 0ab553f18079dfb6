"""Realistic adversarial examples (Definition 4 of the paper): latents z, z′ with ‖z − z′‖∞ ≤ ε whose images
the classifier labels differently, found by searching the latent space of C∘G.

Three searches, all batched over many starting latents and many ε at once (one row per start and ε):

- ``blackbox`` (the paper's Algorithm 1): ``steps`` rounds; each draws ``directions`` random moves
  δ ~ N(0, (ε/steps)²) and keeps the one that most raises the score (log-probability of the target class,
  or minus that of the start's class when untargeted). Only forward passes: works on any model.
- ``whitebox`` (Algorithm 2): ``steps`` signed-gradient steps of size ε/steps on the same score; the
  steepest ascent in the ∞-norm, so the path can reach every corner of the ε-box.
- ``pgd``: projected gradient ascent on the logit margin with random restarts inside the ε-box (restart 0
  starts at z itself), step 2.5 ε/steps as in Madry et al. The strongest of the three, and the falsifier of
  the robustness verifier.

Every candidate is kept inside the box exactly (bounds rounded towards z), and nothing is reported that a
plain forward pass of the caller's classifier and generator does not confirm: both predictions, both
confidences, and ‖z − z′‖∞ ≤ ε in float64. Randomness comes from one generator per (start, ε) row seeded
from (seed, start, ε index), so results do not depend on how rows are batched.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .compose import Composed, check_compatible
from .errors import GenrobustError
from .execute import Shipped, content_hash
from .journal import decode_tensor, encode_tensor, open_journal
from .models.generators import GeneratorFamily
from .models.layout import inference_copy
from .results import Provenance, Result, model_hashes, register
from .rounding import inward
from .runtime import progress, resolve_device, sub_seed, working_copy
from .sampling import latents, run_classes
from .stats import Proportion

METHODS = ("blackbox", "whitebox", "pgd")


@dataclass
class AdversarialExample:
    """One re-checked witness: C(G(z)) = ``pred`` and C(G(z′)) = ``pred_adv`` ≠ ``pred``, ‖z − z′‖∞ ≤ ε."""

    start: int
    eps: float
    z: torch.Tensor
    z_adv: torch.Tensor
    pred: int
    conf: float
    pred_adv: int
    conf_adv: float
    queries: int
    seconds: float

    @property
    def distance(self) -> float:
        return float((self.z_adv.double() - self.z.double()).abs().max())

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "eps": self.eps,
            "distance": self.distance,
            "z": self.z.tolist(),
            "z_adv": self.z_adv.tolist(),
            "pred": self.pred,
            "conf": self.conf,
            "pred_adv": self.pred_adv,
            "conf_adv": self.conf_adv,
            "queries": self.queries,
            "seconds": self.seconds,
        }


@register
@dataclass
class AttackResult(Result):
    """Per start and per ε: whether a re-checked example was found, the witness and what it cost.

    ``success[i, e]`` is True only for pairs the re-check confirmed. ``queries[i, e]`` counts evaluations of
    C∘G (one per candidate; a forward+backward pass counts as one) spent on that row until its example, or
    in all if none was found; ``found_seconds[i, e]`` is the wall time from the start of the call to the
    row's example. ``eligible[i]`` is False for starts that were not attacked (already the target class, or
    not the source class when a source was given).
    """

    method: str
    eps: list[float]
    target: int | None
    z: torch.Tensor  # (N, d)
    pred: torch.Tensor  # (N,) C(G(z))
    conf: torch.Tensor  # (N,)
    eligible: torch.Tensor  # (N,) bool
    success: torch.Tensor  # (N, E) bool
    z_adv: torch.Tensor  # (N, E, d), NaN where no example
    pred_adv: torch.Tensor  # (N, E), -1 where no example
    conf_adv: torch.Tensor  # (N, E), NaN where no example
    queries: torch.Tensor  # (N, E) int64
    found_seconds: torch.Tensor  # (N, E) float64, NaN where no example
    seconds: float
    rejected: int  # candidates the search claimed and the re-check refused
    params: dict[str, Any]
    provenance: Provenance = field(default_factory=Provenance)
    kind: ClassVar[str] = "attack"

    def success_share(self, eps: float) -> Proportion:
        """Eligible starts with a re-checked example at ``eps``, of all eligible starts, with its exact interval:
        how often the attack breaks a start (a lower bound on how often one can be broken)."""
        e = self._index(eps)
        n = int(self.eligible.sum())
        if n == 0:
            raise GenrobustError("no eligible starts: no success share to report")
        return Proportion(int(self.success[:, e].sum()), n, 0.95)

    def _index(self, eps: float) -> int:
        for e, value in enumerate(self.eps):
            if math.isclose(value, eps):
                return e
        raise GenrobustError(f"ε = {eps} was not attacked; attacked: {', '.join(f'{v:g}' for v in self.eps)}")

    def success_rate(self) -> list[float]:
        """Share of the eligible starts with a re-checked example, per ε."""
        n = max(1, int(self.eligible.sum()))
        return [int(self.success[:, e].sum()) / n for e in range(len(self.eps))]

    def metrics(self) -> list[dict[str, Any]]:
        """Per ε: success rate, queries (mean per success, total), wall time to the first example."""
        rows = []
        for e, eps in enumerate(self.eps):
            ok = self.success[:, e]
            first = self.found_seconds[ok, e]
            rows.append(
                {
                    "eps": eps,
                    "starts": int(self.eligible.sum()),
                    "examples": int(ok.sum()),
                    "success_rate": self.success_rate()[e],
                    "mean_queries_to_example": float(self.queries[ok, e].double().mean()) if ok.any() else None,
                    "total_queries": int(self.queries[:, e].sum()),
                    "seconds_to_first_example": float(first.min()) if ok.any() else None,
                }
            )
        return rows

    def examples(self, eps: float | None = None) -> list[AdversarialExample]:
        """The re-checked examples (of one ε, or of all), fastest found first."""
        out = []
        for e, value in enumerate(self.eps):
            if eps is not None and not math.isclose(value, eps):
                continue
            for i in torch.nonzero(self.success[:, e]).flatten().tolist():
                out.append(
                    AdversarialExample(
                        start=i,
                        eps=value,
                        z=self.z[i],
                        z_adv=self.z_adv[i, e],
                        pred=int(self.pred[i]),
                        conf=float(self.conf[i]),
                        pred_adv=int(self.pred_adv[i, e]),
                        conf_adv=float(self.conf_adv[i, e]),
                        queries=int(self.queries[i, e]),
                        seconds=float(self.found_seconds[i, e]),
                    )
                )
        return sorted(out, key=lambda ex: ex.seconds)

    def table(self) -> str:
        goal = "untargeted" if self.target is None else f"target {self.target}"
        lines = [
            f"{self.method} ({goal}), {int(self.eligible.sum())} starts, {self.seconds:.1f} s",
            f"{'ε':>8} {'examples':>9} {'success':>8} {'queries/example':>16} {'first example':>14}",
        ]
        for m in self.metrics():
            q = "—" if m["mean_queries_to_example"] is None else f"{m['mean_queries_to_example']:,.0f}"
            t = "—" if m["seconds_to_first_example"] is None else f"{m['seconds_to_first_example']:.2f} s"
            lines.append(f"{m['eps']:>8g} {m['examples']:>9,} {m['success_rate']:>8.1%} {q:>16} {t:>14}")
        if self.rejected:
            lines.append(f"({self.rejected} candidates refused by the re-check)")
        return "\n".join(lines)

    def body(self) -> dict[str, Any]:
        """Metrics and examples for a reader; ``starts`` holds every start's tensors (NaN written as null), so
        :func:`~genrobust.load_result` rebuilds the whole result."""
        return {
            "method": self.method,
            "target": self.target,
            "eps": self.eps,
            "params": self.params,
            "seconds": self.seconds,
            "rejected": self.rejected,
            "metrics": self.metrics(),
            "examples": [ex.to_dict() for ex in self.examples()],
            "starts": {k: _nullable(getattr(self, k)) for k in _ATTACK_TENSORS},
        }

    @classmethod
    def from_body(cls, body: dict[str, Any], provenance: Provenance) -> AttackResult:
        starts = body["starts"]
        tensors = {k: _from_nullable(starts[k], _ATTACK_DTYPES[k]) for k in _ATTACK_TENSORS}
        return cls(method=str(body["method"]), eps=[float(e) for e in body["eps"]], target=body["target"],
                   seconds=float(body["seconds"]), rejected=int(body["rejected"]), params=dict(body["params"]),
                   provenance=provenance, **tensors)  # fmt: skip


def _nullable(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as plain JSON: its shape and values, NaN as null (standard JSON has no NaN)."""
    a = t.detach().cpu().numpy()
    values = a.astype(object)
    if a.dtype.kind == "f":
        values[np.isnan(a)] = None
    return {"shape": list(a.shape), "data": values.reshape(-1).tolist()}


def _from_nullable(obj: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    data = obj["data"]
    if dtype.is_floating_point:
        data = np.array([math.nan if v is None else v for v in data], dtype=np.float64)
    return torch.tensor(data, dtype=dtype).reshape(obj["shape"])


#: AttackResult's per-start tensors, in the order a journal line holds them, and their dtypes
_ATTACK_TENSORS = ("z", "pred", "conf", "eligible", "success", "z_adv", "pred_adv", "conf_adv", "queries",
                   "found_seconds")  # fmt: skip
_ATTACK_DTYPES = {"z": torch.float32, "pred": torch.long, "conf": torch.float32, "eligible": torch.bool,
                  "success": torch.bool, "z_adv": torch.float32, "pred_adv": torch.long, "conf_adv": torch.float32,
                  "queries": torch.long, "found_seconds": torch.float64}  # fmt: skip


# ----------------------------------------------------------------------------------------------- helpers


def _eps_list(eps: float | Sequence[float]) -> list[float]:
    values = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    if not values:
        raise GenrobustError("give at least one ε")
    for e in values:
        if not (math.isfinite(e) and e > 0):
            raise GenrobustError(f"ε must be a finite number > 0, got {e}")
    return values


def box_bounds(z: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 bounds [lo, hi] of the ∞-ball of radius ``eps`` (float64, per row) around float32 ``z``, rounded
    towards z, so that every float32 point in [lo, hi] is within ε of z in exact arithmetic."""
    z64, e = z.double(), eps.double().unsqueeze(-1)
    lo, hi = inward(z64 - e, z64 + e)
    return lo, hi


def _project(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return torch.minimum(torch.maximum(z, lo), hi)


def _score(
    logits: torch.Tensor, y: torch.Tensor, target: int | torch.Tensor | None, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score to raise, success) per row. kind "logprob": log p(target), or −log p(y) when untargeted;
    kind "margin": logit(target) − best other logit, or best other − logit(y). A tensor ``target`` (one class
    per row) attacks one margin per row: logit(target) − logit(y), and any class other than y succeeds."""
    if isinstance(target, torch.Tensor):
        pair = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
        return pair, logits.argmax(1) != y
    goal = y if target is None else torch.full_like(y, target)
    own = logits.gather(1, goal[:, None]).squeeze(1)
    success = logits.argmax(1) == goal if target is not None else logits.argmax(1) != y
    if kind == "margin":
        others = logits.scatter(1, goal[:, None], -math.inf).amax(1)
        score = own - others if target is not None else others - own
    else:
        logp = F.log_softmax(logits, 1).gather(1, goal[:, None]).squeeze(1)
        score = logp if target is not None else -logp
    return score, success


def _logits(model: nn.Module, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(z[i : i + batch_size]) for i in range(0, z.shape[0], batch_size)])


def _grad(model: nn.Module, z: torch.Tensor, y: torch.Tensor, target: int | torch.Tensor | None, kind: str,
          batch_size: int):  # fmt: skip
    """(gradient of the score, score, success) at z, in batches (a per-row ``target`` is cut with its rows)."""
    grads, scores, hits = [], [], []
    for i in range(0, z.shape[0], batch_size):
        zb = z[i : i + batch_size].detach().requires_grad_(True)
        tb = target[i : i + batch_size] if isinstance(target, torch.Tensor) else target
        with torch.enable_grad():
            score, success = _score(model(zb), y[i : i + batch_size], tb, kind)
            (g,) = torch.autograd.grad(score.sum(), zb)
        grads.append(g)
        scores.append(score.detach())
        hits.append(success)
    return torch.cat(grads), torch.cat(scores), torch.cat(hits)


@dataclass
class _Rows:
    """The rows (start × ε) being attacked, and what each has found so far."""

    z0: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor  # float64
    seeds: list[int]
    lo: torch.Tensor
    hi: torch.Tensor
    found: torch.Tensor
    z_adv: torch.Tensor
    queries: torch.Tensor
    when: torch.Tensor

    def hit(self, rows: torch.Tensor, z_new: torch.Tensor, t0: float) -> None:
        self.found[rows] = True
        self.z_adv[rows] = z_new
        self.when[rows] = time.perf_counter() - t0


def _blackbox(model, rows: _Rows, target, *, steps: int, directions: int, batch_size: int, t0: float) -> None:
    d = rows.z0.shape[1]
    noise = torch.stack(
        [torch.randn(steps, directions, d, generator=torch.Generator().manual_seed(s)) for s in rows.seeds]
    ).to(rows.z0.device)
    sigma = (rows.eps / steps).float()[:, None, None]
    cur = rows.z0.clone()
    best, _ = _score(_logits(model, cur, batch_size), rows.y, target, "logprob")
    rows.queries += 1
    active = torch.arange(len(cur), device=cur.device)
    for step in range(steps):
        if len(active) == 0:
            break
        k = len(active)
        cand = cur[active, None, :] + noise[active, step] * sigma[active]
        cand = _project(cand, rows.lo[active, None, :], rows.hi[active, None, :]).reshape(k * directions, d)
        score, success = _score(
            _logits(model, cand, batch_size), rows.y[active].repeat_interleave(directions), target, "logprob"
        )
        score, success = score.view(k, directions), success.view(k, directions)
        cand = cand.view(k, directions, d)
        rows.queries[active] += directions
        won = success.any(1)
        if won.any():
            pick = success.float().argmax(1)  # the first successful direction
            idx = torch.nonzero(won).flatten()
            rows.hit(active[idx], cand[idx, pick[idx]], t0)
        top, arg = score.max(1)
        better = top > best[active]
        move = torch.nonzero(better & ~won).flatten()
        cur[active[move]] = cand[move, arg[move]]
        best[active[move]] = top[move]
        active = active[~won]


def _whitebox(model, rows: _Rows, target, *, steps: int, batch_size: int, t0: float) -> None:
    cur = rows.z0.clone()
    size = (rows.eps / steps).float()[:, None]
    active = torch.arange(len(cur), device=cur.device)
    for step in range(steps + 1):
        if len(active) == 0:
            break
        grad, _, success = _grad(model, cur[active], rows.y[active], target, "logprob", batch_size)
        rows.queries[active] += 1
        if step > 0 and success.any():  # step 0 is the start itself, which is not the goal
            idx = torch.nonzero(success).flatten()
            rows.hit(active[idx], cur[active[idx]], t0)
        keep = ~success if step > 0 else torch.ones_like(success)
        active, grad = active[keep], grad[keep]
        if step < steps:
            cur[active] = _project(cur[active] + size[active] * grad.sign(), rows.lo[active], rows.hi[active])


def _odi(model, cur: torch.Tensor, seeds: list[int], restarts: int, keep: torch.Tensor, half: torch.Tensor,
         lo: torch.Tensor, hi: torch.Tensor, odi_steps: int, batch_size: int) -> torch.Tensor:  # fmt: skip
    """Output-diversified starts (ODI, Tashiro et al., NeurIPS 2020): each start but the ``keep`` ones first
    climbs w·f(x) for a random direction w in the output space, ``odi_steps`` signed steps of a whole half-width,
    so that the starts spread over the regions the network maps differently, not only over the input box. A
    counterexample that uniform starts and the margin's gradient never reach (one of VNN-COMP's MNIST instances:
    0 of 100 restarts × 100 steps) is found by 10 such restarts of 20 steps of a quarter half-width each."""
    move = torch.nonzero(~keep).flatten()
    if not len(move) or odi_steps < 1:
        return cur
    with torch.no_grad():
        k = model(cur[:1]).shape[1]
    w = torch.stack([torch.rand(restarts, k, generator=torch.Generator().manual_seed((s * 7_919 + 13) % (2**63 - 1)))
                     for s in seeds]).reshape(-1, k).to(cur) * 2 - 1  # fmt: skip
    x = cur.clone()
    for _ in range(odi_steps):
        grads = []
        for i in range(0, len(move), batch_size):
            part = move[i : i + batch_size]
            xb = x[part].detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad((model(xb) * w[part]).sum(), xb)
            grads.append(g)
        x[move] = _project(x[move] + half[move] * torch.cat(grads).sign(), lo[move], hi[move])
    return x


def _pgd(model, rows: _Rows, target, *, steps: int, restarts: int, step_size: float, batch_size: int, t0: float,
         centre_every: int = 0, odi_steps: int = 0):  # fmt: skip
    """PGD from ``restarts`` starts per row; ``target``: a class, None, or a tensor (rows × restarts) giving each
    restart the margin it attacks (see :func:`_score`). Restart 0 starts at the row's centre, and so does every
    ``centre_every``-th one (the first of each targeted margin); with ``odi_steps`` the odd-numbered other starts
    are first diversified in the output space (:func:`_odi`)."""
    n, d = rows.z0.shape
    if isinstance(target, torch.Tensor):
        target = target.reshape(-1)
    r = torch.arange(n, device=rows.z0.device).repeat_interleave(restarts)  # row of each restart
    init = torch.stack([torch.rand(restarts, d, generator=torch.Generator().manual_seed(s)) for s in rows.seeds]).to(
        rows.z0.device
    )
    lo, hi = rows.lo[r], rows.hi[r]
    cur = _project(lo + init.reshape(n * restarts, d) * (hi - lo), lo, hi).view(n, restarts, d)
    cur[:, 0] = rows.z0  # restart 0 starts at z itself
    if centre_every:
        cur[:, ::centre_every] = rows.z0[:, None]
    cur = cur.reshape(n * restarts, d)
    alpha = (rows.eps[r] * step_size).float()  # ε per row, or a half-width per row and dimension
    alpha = alpha[:, None] if alpha.ndim == 1 else alpha
    if odi_steps:
        # the odd starts: the even ones stay uniform (a start pushed to the box's edge can sit on a flat part of
        # the network, and a narrow region far from the edges is then found by uniform starts only)
        centre = torch.zeros(n, restarts, dtype=torch.bool, device=cur.device)
        centre[:, 0::2] = True
        if centre_every:
            centre[:, ::centre_every] = True
        half = rows.eps[r].float()
        half = half[:, None].expand(-1, d) if half.ndim == 1 else half
        cur = _odi(model, cur, rows.seeds, restarts, centre.reshape(-1), half, lo, hi, odi_steps, batch_size)
    active = torch.arange(n * restarts, device=cur.device)
    for step in range(steps + 1):
        active = active[~rows.found[r[active]]]  # a row that has an example stops all its restarts
        if len(active) == 0:
            break
        goal = target[active] if isinstance(target, torch.Tensor) else target
        grad, _, success = _grad(model, cur[active], rows.y[r[active]], goal, "margin", batch_size)
        rows.queries.index_add_(0, r[active], torch.ones_like(r[active]))
        if success.any():
            idx = torch.nonzero(success).flatten()
            first = {}
            for j in idx.tolist():  # one witness per row: its first successful restart
                first.setdefault(int(r[active[j]]), j)
            js = torch.tensor(list(first.values()), device=cur.device)
            rows.hit(r[active[js]], cur[active[js]], t0)
        if step < steps:
            cur[active] = _project(cur[active] + alpha[active] * grad.sign(), lo[active], hi[active])


# --------------------------------------------------------------------------------------------- the attack


def attack_latents(
    model: nn.Module,
    z: torch.Tensor,
    *,
    eps: float | Sequence[float],
    method: str = "pgd",
    target: int | None = None,
    source: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    directions: int = 10,
    restarts: int = 4,
    step_size: float = 2.5,
    batch_size: int = 128,
    rows_per_chunk: int = 256,
    device: str | torch.device | None = None,
    show_progress: bool = False,
    ids: Sequence[int] | None = None,
) -> AttackResult:
    """Search for realistic adversarial examples of ``model`` (latents (N, d) → logits (N, K), e.g. C∘G_c)
    around each start in ``z``, for each ε; return the re-checked witnesses and their costs.

    ``target=None`` is untargeted (any class other than the start's). With ``source``, only starts that
    ``model`` assigns to ``source`` are attacked. ``steps`` defaults to 16 (blackbox, whitebox) or 20 (pgd);
    ``step_size`` is PGD's step as a multiple of ε/steps. ``ids`` (default 0..N − 1) number the starts for
    their random streams: a shard of a larger run passes the starts' places in it, and finds what the whole run
    finds for them.
    """
    if method not in METHODS:
        raise GenrobustError(f"unknown attack method {method!r}; choose one of {', '.join(METHODS)}")
    eps_values = _eps_list(eps)
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
        raise GenrobustError(
            f"starting latents must be a float tensor of shape (N, latent_dim), got {getattr(z, 'shape', z)}"
        )
    if not torch.isfinite(z).all():
        raise GenrobustError("starting latents contain NaN or infinity")
    steps = steps if steps is not None else (20 if method == "pgd" else 16)
    if steps < 1 or directions < 1 or restarts < 1 or batch_size < 1 or rows_per_chunk < 1 or step_size <= 0:
        raise GenrobustError("steps, directions, restarts, batch sizes must be ≥ 1 and step_size > 0")
    dev = resolve_device(device)
    plain = working_copy(model, dev)  # the caller's model stays as it is
    # ``plain`` is genrobust's own copy already: the search's faster layout is a second copy only where there is a
    # faster layout (convolutions), otherwise the same frozen network; the re-check uses ``plain``
    fast = inference_copy(plain).eval()
    z = z.detach().to(dev, torch.float32)
    pred, conf = _recheck_predictions(plain, z, batch_size)
    with torch.no_grad():
        k = plain(z[:1]).shape[1]
    for name, c in (("target", target), ("source", source)):
        if c is not None and not (isinstance(c, int) and 0 <= c < k):
            raise GenrobustError(f"{name} class {c!r} out of range: the classifier has classes 0..{k - 1}")
    if target is not None and source is not None and target == source:
        raise GenrobustError(f"source and target are the same class ({source}); choose another target")
    eligible = torch.ones_like(pred, dtype=torch.bool)
    if source is not None:
        eligible &= pred == source
    if target is not None:
        eligible &= pred != target
    n, d = z.shape
    ids = list(range(n)) if ids is None else [int(i) for i in ids]
    if len(ids) != n:
        raise GenrobustError(f"{len(ids)} ids for {n} starts")
    n_eps = len(eps_values)
    success = torch.zeros(n, n_eps, dtype=torch.bool)
    z_adv = torch.full((n, n_eps, d), math.nan)
    pred_adv = torch.full((n, n_eps), -1, dtype=torch.long)
    conf_adv = torch.full((n, n_eps), math.nan)
    queries = torch.zeros(n, n_eps, dtype=torch.long)
    found_seconds = torch.full((n, n_eps), math.nan, dtype=torch.float64)
    # One row per eligible (start, ε); its randomness depends on (seed, start, ε index) only.
    todo = [(i, e) for i in torch.nonzero(eligible).flatten().tolist() for e in range(n_eps)]
    rejected = 0
    t0 = time.perf_counter()
    bar = progress(len(todo), f"{method} attack", show_progress)
    with torch.no_grad():
        for lo_row in range(0, len(todo), rows_per_chunk):
            chunk = todo[lo_row : lo_row + rows_per_chunk]
            idx = torch.tensor([i for i, _ in chunk], device=dev)
            eidx = [e for _, e in chunk]
            eps_t = torch.tensor([eps_values[e] for e in eidx], dtype=torch.float64, device=dev)
            z0 = z[idx]
            lo, hi = box_bounds(z0, eps_t)
            rows = _Rows(
                z0=z0, y=pred[idx], eps=eps_t, seeds=[sub_seed(seed, ids[i], e) for i, e in chunk], lo=lo, hi=hi,
                found=torch.zeros(len(chunk), dtype=torch.bool, device=dev), z_adv=z0.clone(),
                queries=torch.zeros(len(chunk), dtype=torch.long, device=dev),
                when=torch.full((len(chunk),), math.nan, dtype=torch.float64, device=dev),
            )  # fmt: skip
            if method == "blackbox":
                _blackbox(fast, rows, target, steps=steps, directions=directions, batch_size=batch_size, t0=t0)
            elif method == "whitebox":
                _whitebox(fast, rows, target, steps=steps, batch_size=batch_size, t0=t0)
            else:
                _pgd(fast, rows, target, steps=steps, restarts=restarts, step_size=step_size / steps,
                     batch_size=batch_size, t0=t0)  # fmt: skip
            # The re-check: a plain forward pass of the caller's model, and the distance in float64.
            claimed = torch.nonzero(rows.found).flatten()
            if len(claimed):
                za = rows.z_adv[claimed]
                p_adv, c_adv = _recheck_predictions(plain, za, batch_size)
                dist = (za.double() - z0[claimed].double()).abs().amax(1)
                ok = (dist <= eps_t[claimed]) & (p_adv != rows.y[claimed])
                if target is not None:
                    ok &= p_adv == target
                rejected += int((~ok).sum())
                for j, good, p, c in zip(claimed.tolist(), ok.tolist(), p_adv.tolist(), c_adv.tolist(), strict=True):
                    if good:
                        i, e = chunk[j]
                        success[i, e] = True
                        z_adv[i, e] = rows.z_adv[j].cpu()
                        pred_adv[i, e], conf_adv[i, e] = p, c
                        found_seconds[i, e] = rows.when[j]
            for j, (i, e) in enumerate(chunk):
                queries[i, e] = int(rows.queries[j])
            bar.update(len(chunk))
    bar.close()
    params = {"steps": steps, "seed": seed, "source": source}
    if method == "blackbox":
        params["directions"] = directions
    if method == "pgd":
        params |= {"restarts": restarts, "step_size": f"{step_size} ε/steps"}
    return AttackResult(
        method=method, eps=eps_values, target=target, z=z.cpu(), pred=pred.cpu(), conf=conf.cpu(),
        eligible=eligible.cpu(), success=success, z_adv=z_adv, pred_adv=pred_adv, conf_adv=conf_adv,
        queries=queries, found_seconds=found_seconds, seconds=time.perf_counter() - t0, rejected=rejected,
        params=params,
    )  # fmt: skip


@torch.no_grad()
def _recheck_predictions(model: nn.Module, z: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class and softmax confidence of ``model`` at z, by a plain forward pass."""
    logits = _logits(model, z, batch_size)
    if not torch.isfinite(logits).all():
        raise GenrobustError("the model returned NaN or infinite logits")
    conf, pred = torch.softmax(logits.double(), 1).max(1)
    return pred, conf.float()


def realistic_adversarial(
    classifier: nn.Module,
    generators: GeneratorFamily,
    *,
    source: int,
    target: int | None = None,
    eps: float | Sequence[float],
    method: str = "pgd",
    n_starts: int = 100,
    seed: int = 0,
    z: torch.Tensor | None = None,
    steps: int | None = None,
    directions: int = 10,
    restarts: int = 4,
    step_size: float = 2.5,
    batch_size: int = 128,
    rows_per_chunk: int = 256,
    device: str | torch.device | None = None,
    show_progress: bool = False,
    executor: Any = None,
    shard_size: int = 64,
    journal: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> AttackResult:
    """Realistic adversarial examples of ``classifier`` on images of class ``source`` drawn by ``generators``.

    The starts are the first ``n_starts`` latents of ``source`` for ``seed`` (the same ones global
    correctness samples), or ``z``; only starts classified as ``source`` are attacked. The search options
    are those of :func:`attack_latents`. ``executor`` runs shards of ``shard_size`` starts elsewhere (a
    ``concurrent.futures`` executor, a Dask ``distributed.Client``, or :func:`genrobust.execute.open_workers`'s
    choice) with the same examples as one call (their timings aside); ``journal`` and ``resume`` as for
    :func:`genrobust.estimate.global_correctness`.
    """
    if not isinstance(generators, GeneratorFamily):
        raise GenrobustError("generators must be a GeneratorFamily (see load_generators)")
    k = len(generators)
    for name, c in (("source", source), ("target", target)):
        if c is not None and not (isinstance(c, int) and 0 <= c < k):
            raise GenrobustError(f"unknown {name} class {c!r}: the generators have classes 0..{k - 1}")
    if target is not None and target == source:
        raise GenrobustError(f"source and target are the same class ({source}); choose another target")
    dev = resolve_device(device)
    models = model_hashes(classifier, generators, [source])  # the caller's models, for the result's provenance
    generators, classifier = working_copy(generators, dev), working_copy(classifier, dev)  # the caller's stay
    check_compatible(classifier, generators, dev)
    if z is None:
        if n_starts < 1:
            raise GenrobustError(f"n_starts must be ≥ 1, got {n_starts}")
        z = latents(seed, source, n_starts, generators.latent_dim)
    elif not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
        raise GenrobustError(
            f"starting latents must be a float tensor of shape (N, latent_dim), got {getattr(z, 'shape', z)}"
        )
    kwargs = {"eps": eps, "method": method, "target": target, "source": source, "seed": seed, "steps": steps,
              "directions": directions, "restarts": restarts, "step_size": step_size, "batch_size": batch_size,
              "rows_per_chunk": rows_per_chunk}  # fmt: skip
    task = _AttackShard(Composed(classifier, generators[source]), z.detach().cpu(), dev, kwargs)
    provenance = Provenance({k: v for k, v in kwargs.items() if k not in ("batch_size", "rows_per_chunk")}, models)
    if executor is None and journal is None and not resume:  # one call: one progress bar over its rows
        result = task.run(list(range(len(z))), show_progress)
        result.provenance = provenance
        return result

    def header() -> dict[str, Any]:  # hashes the models: only for a journal
        return {"kind": "attack", "starts": len(z), "shard": shard_size, "options": kwargs,
                "z": content_hash(task.z), "models": {"model": task.model.key}}  # fmt: skip

    with open_journal(journal, header, resume) as log:
        runs = run_classes(
            [source],
            generators.latent_dim,
            task,
            n=len(z),
            seed=seed,
            chunk=shard_size,
            desc=f"{method} attack",
            show_progress=show_progress,
            executor=executor,
            journal=log,
        )
    parts = runs[0].parts
    cat = torch.cat
    return AttackResult(
        method=method, eps=parts[0].eps, target=target, z=cat([p.z for p in parts]),
        pred=cat([p.pred for p in parts]), conf=cat([p.conf for p in parts]),
        eligible=cat([p.eligible for p in parts]), success=cat([p.success for p in parts]),
        z_adv=cat([p.z_adv for p in parts]), pred_adv=cat([p.pred_adv for p in parts]),
        conf_adv=cat([p.conf_adv for p in parts]), queries=cat([p.queries for p in parts]),
        found_seconds=cat([p.found_seconds for p in parts]), seconds=runs[0].seconds,
        rejected=sum(p.rejected for p in parts), params=parts[0].params, provenance=provenance,
    )  # fmt: skip


class _AttackShard:
    """The attack on a shard of starts (their places ``ids`` in the run). A picklable task (see
    :mod:`genrobust.execute`): the composed model travels by content and is built once per worker."""

    def __init__(self, model: nn.Module, z: torch.Tensor, device: torch.device, kwargs: dict[str, Any]) -> None:
        self.model, self.z, self.kwargs = Shipped(model), z, kwargs
        self.device = str(device) if device.type == "cpu" else "auto"  # a worker picks its own accelerator

    def run(self, ids: list[int], show_progress: bool = False) -> AttackResult:
        dev = resolve_device(self.device)
        return attack_latents(self.model.get(dev), self.z[ids], ids=ids, device=dev, show_progress=show_progress,
                              **self.kwargs)  # fmt: skip

    def __call__(self, c: int, z: torch.Tensor, ids: list[int]) -> AttackResult:
        return self.run(ids)  # the starts are the task's own (the caller's z or the class's latents)

    @staticmethod
    def encode(part: AttackResult) -> dict[str, Any]:
        return {**{k: encode_tensor(getattr(part, k)) for k in _ATTACK_TENSORS}, "eps": part.eps,
                "seconds": part.seconds, "rejected": part.rejected, "params": part.params}  # fmt: skip

    def decode(self, obj: dict[str, Any], shard: tuple[int, int, int]) -> AttackResult:
        tensors = {k: decode_tensor(obj[k]) for k in _ATTACK_TENSORS}
        return AttackResult(
            method=self.kwargs["method"],
            eps=obj["eps"],
            target=self.kwargs["target"],
            seconds=obj["seconds"],
            rejected=obj["rejected"],
            params=obj["params"],
            **tensors,
        )


def pgd_in_boxes(
    model: nn.Module,
    y: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    *,
    steps: int = 20,
    restarts: int = 4,
    step_size: float = 2.5,
    seeds: Sequence[int],
    batch_size: int = 256,
    targets: torch.Tensor | None = None,
    odi_steps: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Untargeted latent PGD (the ``pgd`` search above) inside arbitrary boxes [lo, hi] (float32, rows (R, d)),
    one per label ``y``: restart 0 at the box's centre, steps of ``step_size``·(half-width)/``steps`` per
    dimension (``answer`` takes 5 on pixel boxes: a quarter of the half-width at 20 steps finds the published
    counterexample of VNN-COMP's ``mnist_fc`` 256×6 ``prop_1_0.05`` that 100 restarts of 100 steps of half that
    never find; on the built-in latent balls both find the same, 10 of 200 at ε = 0.05, but the larger steps
    jump over a narrow region that the smaller ones land in). The verifier's falsifier, on whole balls and on
    the sub-boxes its bounds could not decide.
    ``targets`` (R, T): per row, T classes whose margins logit(t) − logit(y) are attacked one by one, each with
    ``restarts`` starts (the first at the centre): the best-other-class loss follows whichever class leads, and
    misses a margin that only one direction of the box closes. ``odi_steps``: every odd-numbered start (not
    at the centre) is first spread in the output space (:func:`_odi`); 0 switches it off.
    Returns (found (R,), a candidate per row); the caller re-checks every candidate before believing it.
    """
    n = lo.shape[0]
    rows = _Rows(
        z0=(lo + hi) / 2, y=y, eps=((hi.double() - lo.double()) / 2), seeds=list(seeds), lo=lo, hi=hi,
        found=torch.zeros(n, dtype=torch.bool, device=lo.device), z_adv=lo.clone(),
        queries=torch.zeros(n, dtype=torch.long, device=lo.device),
        when=torch.full((n,), math.nan, dtype=torch.float64, device=lo.device),
    )  # fmt: skip
    goal, every = None, 0
    if targets is not None and n:
        goal = targets.to(lo.device).long().repeat_interleave(restarts, 1)  # (R, T·restarts): each class's starts
        every, restarts = restarts, goal.shape[1]
        rows.seeds = [(s * 1_000_003 + 7) % (2**63 - 1) for s in rows.seeds]  # not the untargeted starts
    if n:
        with torch.no_grad():
            _pgd(model, rows, goal, steps=steps, restarts=restarts, step_size=step_size / steps,
                 batch_size=batch_size, t0=time.perf_counter(), centre_every=every, odi_steps=odi_steps)  # fmt: skip
    return rows.found, rows.z_adv
