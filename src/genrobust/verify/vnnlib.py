"""VNN-COMP exchange: C∘G_c as ONNX with one VNN-LIB property per latent ball, and answers to competition
instances.

A VNN-LIB property describes the *unsafe* inputs: boxes on the inputs X_i and constraints on the outputs Y_j; the
instance is ``sat`` when some input in the box meets them (a counterexample) and ``unsat`` when none does. The
robustness of a ball for class c is the property "some Y_j ≥ Y_c, j ≠ c" (a disjunction); :func:`answer`
recognises that form and checks it with the same local verifier as :func:`genrobust.verify_ball` (bounds, branch
and bound, attacks), so an exported ball gets the same answer back. Other output constraints (any disjunction of
conjunctions of linear inequalities) go through the same branch and bound, each disjunct refuted by one of its
constraints. Inputs fixed to one value (lower = upper) are constants of the box map, not directions of the bounds.
Where inputs are many (pixel space) and the branch and bound alone does not decide, :func:`stabilise` proves
hidden neurons to keep one sign on the box, layer by layer, and the branch and bound goes on with those facts.
:func:`export_variation_instances` writes instances of the competition's generator-benchmark shape from an
image-conditional generator (fixed thumbnail inputs, a latent box that is not a cube, the runner-up property).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..bounds.capture import OperatorNetwork
from ..bounds.ops import DT, Activation
from ..errors import GenrobustError
from ..execute import Shipped, Workers
from ..rounding import centre_radius, inward, real_ball
from ..runtime import sub_seed
from .local import CERTIFIED, FALSIFIED, LATENT_SPLIT_DIMS, BoxedNetwork, LocalVerifier, VerifyOptions, _network_ops


class VnnlibError(GenrobustError):
    """A VNN-LIB file genrobust cannot read."""


# --------------------------------------------------------------------------------------------------- writing
def _num(x: float) -> str:
    return repr(float(x))


def property_text(
    lo: np.ndarray, hi: np.ndarray, label: int, num_classes: int, comment: str = "", rivals: list[int] | None = None
) -> str:
    """The VNN-LIB property "some output j ≠ ``label`` reaches Y_label" on the box [lo, hi] (j among ``rivals``,
    e.g. only the runner-up; default every other class); the bounds are written as given (``repr`` is exact:
    round them outwards before, as :func:`ball_box` does, for the file's box to contain the ball)."""
    lines = [f"; {line}" for line in comment.splitlines()] if comment else []
    lines += [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_classes)]
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        lines += [f"(assert (>= X_{i} {_num(a)}))", f"(assert (<= X_{i} {_num(b)}))"]
    others = [j for j in range(num_classes) if j != label] if rivals is None else list(rivals)
    if not others or label in others or not all(0 <= j < num_classes for j in others):
        raise VnnlibError(f"rivals of class {label} must be other classes among {num_classes}, got {rivals}")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in others]
    lines.append("))")
    return "\n".join(lines) + "\n"


def ball_box(center: torch.Tensor, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The float64 box [z − ε, z + ε], rounded outwards."""
    lo, hi = real_ball(center.cpu(), eps)
    return lo.numpy(), hi.numpy()


# --------------------------------------------------------------------------------------------------- reading
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def _sexprs(text: str) -> list:
    text = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    stack: list[list] = [[]]
    for tok in _TOKEN.findall(text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise VnnlibError("unbalanced parentheses")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise VnnlibError("unbalanced parentheses")
    return stack[0]


@dataclass
class Constraint:
    """coef·Y + const ≥ 0 (``strict``: > 0)."""

    coef: np.ndarray
    const: float
    strict: bool = False


@dataclass
class VnnProperty:
    """Input box [lo, hi] and the unsafe outputs: a disjunction of conjunctions of :class:`Constraint`."""

    lo: np.ndarray
    hi: np.ndarray
    disjuncts: list[list[Constraint]] = field(default_factory=list)

    def robustness_label(self) -> int | None:
        """c when the property is "some Y_j ≥ Y_c" with one single-constraint disjunct for every j ≠ c, else None
        (a subset of the classes, e.g. "the runner-up beats c", is a general property: the local verifier would
        answer the stronger question and could only call it unknown where another class wins)."""
        label, rivals = None, set()
        for conj in self.disjuncts:
            if len(conj) != 1 or conj[0].const != 0.0:
                return None
            c = conj[0].coef
            pos, neg = np.flatnonzero(c == 1.0), np.flatnonzero(c == -1.0)
            if len(pos) != 1 or len(neg) != 1 or np.count_nonzero(c) != 2:
                return None
            if label is None:
                label = int(neg[0])
            if int(neg[0]) != label:
                return None
            rivals.add(int(pos[0]))
        if label is None or len(rivals) != len(self.disjuncts[0][0].coef) - 1:
            return None
        return label


def _linear(expr, n_x: int, n_y: int) -> tuple[np.ndarray, float]:
    """A linear expression over the Y_j: (coefficients, constant). X_i may not appear in output constraints."""
    if isinstance(expr, str):
        if expr.startswith("Y_"):
            c = np.zeros(n_y)
            c[int(expr[2:])] = 1.0
            return c, 0.0
        if expr.startswith("X_"):
            raise VnnlibError("constraints that mix inputs and outputs are not supported")
        try:
            return np.zeros(n_y), float(expr)
        except ValueError:
            raise VnnlibError(f"unknown term {expr!r}") from None
    op, *args = expr
    parts = [_linear(a, n_x, n_y) for a in args]
    if op == "+":
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if op == "-":
        if len(parts) == 1:
            return -parts[0][0], -parts[0][1]
        return parts[0][0] - sum(p[0] for p in parts[1:]), parts[0][1] - sum(p[1] for p in parts[1:])
    if op == "*":
        out_c, out_k = np.zeros(n_y), 1.0
        for c, k in parts:
            if np.any(c != 0):
                if np.any(out_c != 0):
                    raise VnnlibError("a product of outputs is not linear")
                out_c = c * out_k
                out_k = 0.0
            elif np.any(out_c != 0):
                out_c = out_c * k
            else:
                out_k *= k
        return out_c, out_k
    raise VnnlibError(f"unknown operator {op!r}")


def _atom(expr, n_x: int, n_y: int) -> Constraint:
    op, a, b = expr
    (ca, ka), (cb, kb) = _linear(a, n_x, n_y), _linear(b, n_x, n_y)
    if op in (">=", ">"):
        return Constraint(ca - cb, ka - kb, op == ">")
    if op in ("<=", "<"):
        return Constraint(cb - ca, kb - ka, op == "<")
    raise VnnlibError(f"unknown comparison {op!r}")


def _dnf(expr, n_x: int, n_y: int) -> list[list[Constraint]]:
    head = expr[0]
    if head == "or":
        return [conj for e in expr[1:] for conj in _dnf(e, n_x, n_y)]
    if head == "and":
        out: list[list[Constraint]] = [[]]
        for e in expr[1:]:
            out = [a + b for a in out for b in _dnf(e, n_x, n_y)]
        return out
    return [[_atom(expr, n_x, n_y)]]


def parse_vnnlib(text: str) -> VnnProperty:
    """Read a property: a box on the X_i and output constraints in any and/or nesting (made a disjunction)."""
    exprs = _sexprs(text)
    n_x = sum(1 for e in exprs if isinstance(e, list) and e[:1] == ["declare-const"] and e[1].startswith("X_"))
    n_y = sum(1 for e in exprs if isinstance(e, list) and e[:1] == ["declare-const"] and e[1].startswith("Y_"))
    if not n_x or not n_y:
        raise VnnlibError("the property declares no inputs X_i or no outputs Y_j")
    lo, hi = np.full(n_x, -np.inf), np.full(n_x, np.inf)
    outputs: list[list[list[Constraint]]] = []
    for e in exprs:
        if not isinstance(e, list) or e[:1] != ["assert"]:
            continue
        body = e[1]
        names = re.findall(r"[XY]_\d+", str(body))
        if names and all(n.startswith("X_") for n in names):
            if body[0] not in ("<=", ">=") or len(body) != 3:
                raise VnnlibError(f"input constraint {body} is not a bound on one input")
            op, a, b = body
            var, val, flip = (a, b, False) if a.startswith("X_") else (b, a, True)
            i, v = int(var[2:]), float(val)
            upper = (op == "<=") != flip
            if upper:
                hi[i] = min(hi[i], v)
            else:
                lo[i] = max(lo[i], v)
        else:
            outputs.append(_dnf(body, n_x, n_y))
    if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or np.any(lo > hi):
        raise VnnlibError("every input needs finite bounds with lower ≤ upper")
    if not outputs:
        raise VnnlibError("the property has no output constraints")
    disjuncts: list[list[Constraint]] = [[]]
    for dnf in outputs:  # top-level asserts are conjoined
        disjuncts = [a + b for a in disjuncts for b in dnf]
        if len(disjuncts) > 10_000:
            raise VnnlibError("the output constraints expand to more than 10,000 cases")
    return VnnProperty(lo, hi, disjuncts)


# --------------------------------------------------------------------------------------------------- answering
@dataclass
class Answer:
    """``sat`` (with the counterexample x and its outputs y), ``unsat`` or ``unknown``."""

    result: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None

    def text(self) -> str:
        """The competition's result file: the verdict, then for ``sat`` ((X_0 v) ... (Y_0 v) ...)."""
        if self.result != "sat" or self.x is None or self.y is None:
            return self.result + "\n"
        items = [f"(X_{i} {_num(v)})" for i, v in enumerate(self.x)] + [f"(Y_{j} {_num(v)})" for j, v in
                                                                         enumerate(self.y)]  # fmt: skip
        return "sat\n(" + "\n ".join(items) + ")\n"


def _holds(prop: VnnProperty, y: np.ndarray) -> bool:
    return any(all((c.coef @ y + c.const > 0) if c.strict else (c.coef @ y + c.const >= 0) for c in conj)
               for conj in prop.disjuncts)  # fmt: skip


def _confirm(model: nn.Module, prop: VnnProperty, x: torch.Tensor, shape) -> Answer | None:
    """The counterexample, clamped into the box and evaluated by a plain forward pass, if it really is one."""
    lo64, hi64 = torch.as_tensor(prop.lo), torch.as_tensor(prop.hi)
    lo, hi = inward(lo64, hi64)  # the box in float32, rounded inwards (−0.2 is not a float32)
    hi = torch.where(hi < lo, lo, hi)  # an input fixed to a value float32 cannot hold: left to the check below
    x = torch.minimum(torch.maximum(x.float().cpu(), lo), hi)
    if not bool(((x.double() >= lo64) & (x.double() <= hi64)).all()):
        return None
    with torch.no_grad():
        y = model(x.reshape(1, *shape)).double().reshape(-1).numpy()
    return Answer("sat", x.double().numpy(), y) if _holds(prop, y) else None


def answer(
    model: nn.Module,
    prop: VnnProperty,
    input_shape: tuple[int, ...] | None = None,
    *,
    options: VerifyOptions | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    stabilise_hidden: bool = True,
    facts: Facts | None = None,
    tighten_hidden: bool = True,
    workers: Workers | None = None,
) -> Answer:
    """Answer a competition instance on ``model`` (inputs flattened in the property's X_i order).

    ``options`` default to 100,000 boxes (the seconds, 60 by default, are the budget); the give-up rule, which
    spreads time over many balls, is off for a single instance whatever they say, and the attack comes before
    the bounds, with at least 32 restarts of steps of at least a quarter half-width, where more than
    ``LATENT_SPLIT_DIMS`` inputs are free. The bounds run on ``device`` (None: CUDA when available) on a copy:
    the model is not changed, and the counterexample is re-checked on the CPU.

    ``stabilise_hidden`` (where more than ``LATENT_SPLIT_DIMS`` inputs are free and ``max_boxes`` > 1): when the
    branch and bound has not decided within :data:`FIRST_SECONDS` (or half the budget), :func:`stabilise` spends
    up to :data:`STABILISE_SHARE` of what is left proving hidden neurons stable, and the branch and bound starts
    again with those facts for the rest. (``mnist_fc`` 256×4 ``prop_0_0.05``, open at 300 s
    without them: unsat in 214 s with them; the benchmark at the published timeouts: 69 of 90 decided instead of
    63, 70 since a layer's neurons are proved together, 78 with ``tighten_hidden`` and each search's bound kept,
    80 with a branch and bound per disjunct: :func:`_by_disjunct`, wherever inputs are many.)
    ``facts``: intervals already proved on this box (see :func:`stabilise`).
    ``tighten_hidden``: the stabilisation also narrows the intervals of the neurons it cannot prove stable
    (``stabilise(tighten=True)``; see docs/verify-complete.md for what it decides on ``mnist_fc``).
    ``workers``: processes that the stabilisation spreads its neurons' branch and bound over (see :func:`stabilise`)
    and that the disjuncts' trees run on (:func:`_by_disjunct`): the competition gives an instance the whole
    machine, and a pool of one process per core gives it all cores."""
    from dataclasses import replace

    # where inputs are many (pixel space: α-CROWN bounds and ReLU splits) a cheap attack first can spare a costly
    # branch and bound; where few are free (a latent box) a bound is cheap and usually decides (the generator
    # instances at ε = 0.1, bounds only: 1.46 → 1.21 s each)
    free = int(np.count_nonzero(prop.lo != prop.hi))
    options = options or VerifyOptions(max_boxes=100_000)
    many = free > LATENT_SPLIT_DIMS
    # where inputs are many the network is usually small and an attack restart cheap (mnist_fc's 256×6: 32
    # restarts of 20 steps in 0.2 s), and uniform starts miss what output-diversified ones among many find
    restarts = max(options.attack_restarts, 32) if many else options.attack_restarts
    step = max(options.attack_step_size, 5.0) if many else options.attack_step_size
    options = replace(options, give_up=None, attack_first=many, attack_restarts=restarts, attack_step_size=step)
    shape = tuple(input_shape) if input_shape is not None else (len(prop.lo),)
    if math.prod(shape) != len(prop.lo):
        raise VnnlibError(f"the property has {len(prop.lo)} inputs, the model takes {shape}")
    # the network is copied and captured once while the caller keeps it (a benchmark's instances share it): an
    # eval-mode copy here for the output count and the counterexamples' re-check, the verifier's operators there
    plain, _ = _network_ops(model, shape, torch.device("cpu"))
    with torch.no_grad():
        k = plain(torch.zeros(1, *shape)).shape[1]
    if any(len(c.coef) != k for conj in prop.disjuncts for c in conj):
        raise VnnlibError(f"the property has outputs for {len(prop.disjuncts[0][0].coef)} classes, the model {k}")
    label = prop.robustness_label()

    # where ReLUs are split, each disjunct gets a tree of its own (:func:`_by_disjunct`), on the workers if given
    each = many and len(prop.disjuncts) > 1

    def check(opts: VerifyOptions, known: Facts | None) -> Answer:
        if each and opts.max_boxes > 1:
            return _by_disjunct(model, plain, prop, shape, opts, seed, device, known, workers)
        if label is not None:
            return _robustness(model, plain, prop, shape, label, opts, seed, device, known)
        return _general(model, plain, prop, shape, opts, seed, device, known)

    if not (stabilise_hidden and many and options.max_boxes > 1):  # one box: bounds only, as asked
        return check(options, facts)
    t0, budget = time.perf_counter(), options.max_seconds
    first = min(0.5 * budget, FIRST_SECONDS)
    got = check(replace(options, max_seconds=first), facts)
    left = budget - (time.perf_counter() - t0)
    if got.result != "unknown" or left < 1.0:
        return got
    # (a second round of stabilisation from these facts where the branch and bound gives up early, measured on
    # 256×6 prop_5/13_0.05 with the 47 s they leave: nothing more proved or narrowed, both still unknown)
    proved = stabilise(model, prop, shape, seconds=STABILISE_SHARE * left, options=options, seed=seed,
                       device=device, facts=facts, tighten=tighten_hidden, workers=workers)  # fmt: skip
    left = budget - (time.perf_counter() - t0)
    if left < 1.0:
        return got
    return check(replace(options, max_seconds=left), proved or None)


class _DisjunctTask:
    """One disjunct's branch and bound (:func:`_by_disjunct`) on a worker process, from the model shipped there
    and the facts proved on the box, until the wall-clock ``deadline`` (``time.time()``): a task that starts
    late gets only what is left. It also ends, before its next batch, once the file ``stop`` exists: another
    disjunct has a counterexample, and the pool's processes are wanted for the next work (local processes see
    the caller's files)."""

    def __init__(self, model: Shipped, shape: tuple[int, ...], prop: VnnProperty, options: VerifyOptions,
                 seed: int, facts: Facts | None, start: dict, deadline: float,
                 stop: str | None = None) -> None:  # fmt: skip
        self.model, self.shape, self.prop, self.options = model, shape, prop, options
        self.seed, self.facts, self.start, self.deadline, self.stop = seed, facts, start, deadline, stop

    def stopped(self) -> bool:
        return self.stop is not None and os.path.exists(self.stop)

    def __call__(self) -> Answer:
        from dataclasses import replace

        left = self.deadline - time.time()
        if left < 0.5 or self.stopped():
            return Answer("unknown")
        torch.set_num_threads(1)
        model = self.model.get()
        plain, _ = _network_ops(model, self.shape, torch.device("cpu"))
        opts = replace(self.options, max_seconds=left)
        return _general(model, plain, self.prop, self.shape, opts, self.seed, "cpu", self.facts, self.start,
                        stop=self.stopped)  # fmt: skip


def _by_disjunct(model: nn.Module, plain: nn.Module, prop: VnnProperty, shape, options: VerifyOptions, seed: int,
                 device, facts: Facts | None, workers: Workers | None = None) -> Answer:  # fmt: skip
    """The property answered one disjunct at a time, each a property of its own with a branch and bound (a tree)
    of its own: unsat when every disjunct is, sat when one has a counterexample (re-checked by a forward pass of
    ``plain`` against the whole property), unknown otherwise. Where ReLUs are split this is far cheaper than one
    tree for the whole disjunction: a box of one tree is certified only when every disjunct is refuted on it,
    while the splits chosen for its worst disjunct seldom help the others (``mnist_fc`` 256×4 ``prop_4_0.05``
    with its stabilised facts: the nine classes' trees in turn 22.8 s in all, one tree for the nine 86.5 s).

    The whole property is attacked once first (no bound: a counterexample found there costs nothing more), then
    bounded once on the whole box; its hidden layers' intervals are every disjunct's start (bounded once, not once
    per disjunct), and the disjuncts go hardest first (the lowest whole-box bound: an instance one of them leaves
    unknown is known early). Then each disjunct gets what is left of
    ``options.max_seconds`` when its turn comes; after one ends unknown the rest are still searched (one of them
    may have a counterexample). With ``workers`` (two or more processes), the disjuncts are submitted to them as
    tasks with the run's deadline, so a process that finishes an easy disjunct takes the next; a counterexample
    cancels those not yet started, stops the running ones before their next batch (on local processes; a Dask
    cluster's end by the deadline), and is returned once they have stopped."""
    import concurrent.futures as cf
    from dataclasses import replace

    t0 = time.perf_counter()
    # first the whole property's attack (every disjunct's PGD at once, in the robustness form when it has one:
    # output-diversified starts over every rival's margin find counterexamples one disjunct's attack misses, such
    # as mnist_fc 256×6 prop_1_0.05's), before any bound and before one disjunct's tree can take the budget
    label = prop.robustness_label()
    if label is not None:
        first = _robustness(model, plain, prop, shape, label, options, seed, device, facts, attack_only=True)
    else:
        first = _general(model, plain, prop, shape, options, seed, device, facts, attack_only=True)
    if first.result != "unknown":
        return first
    # then the whole box bounded once: its hidden layers' intervals are every disjunct's start (bounded once, not
    # once per disjunct), and its bounds order the disjuncts, the hardest first
    rows = [(c.coef, c.const, g) for g, conj in enumerate(prop.disjuncts) for c in conj]
    whole, center, radius = _whole_box(model, prop, shape, options, device, facts)
    spec = -torch.as_tensor(np.stack([r[0] for r in rows]), dtype=DT, device=whole.device)[None]  # refuted: −c·y > k
    mb = whole.engine.margins(center, radius, spec)
    start = {i: (lo[0].cpu(), hi[0].cpu()) for i, (lo, hi) in mb.intervals.items()}
    slack = mb.lower[0].cpu() - torch.as_tensor([r[1] for r in rows], dtype=DT)  # > 0: that constraint refuted
    hardness = [max(float(slack[j]) for j, r in enumerate(rows) if r[2] == g) for g in range(len(prop.disjuncts))]
    if min(hardness) > 0:  # every disjunct refuted on the whole box already
        return Answer("unsat")
    order = sorted(range(len(prop.disjuncts)), key=lambda g: hardness[g])
    parts = [VnnProperty(prop.lo, prop.hi, [prop.disjuncts[g]]) for g in order]
    got: list[Answer] = []
    left = options.max_seconds - (time.perf_counter() - t0)
    if workers is not None and not workers.inline and workers.count > 1:
        shipped = Shipped(model)
        deadline = time.time() + left
        with tempfile.TemporaryDirectory(prefix="genrobust-disjuncts-") as folder:
            stop = os.path.join(folder, "stop")  # made when one disjunct's counterexample answers the instance
            futures = [workers.executor.submit(_DisjunctTask(shipped, shape, part, options, seed, facts, start,
                                                             deadline, stop)) for part in parts]  # fmt: skip
            for fut in cf.as_completed(futures):
                got.append(fut.result())
                found = _confirm(plain, prop, torch.as_tensor(got[-1].x), shape) if got[-1].result == "sat" else None
                if found is not None:
                    for other in futures:
                        other.cancel()  # those not yet started never start
                    if workers.client is None:  # local processes see the file: the running tasks end before
                        Path(stop).touch()  # their next batch, and the pool is free when the answer returns
                        cf.wait(futures)
                    return found  # (a cluster's running tasks may not see it: they end by the deadline)
    else:
        for part in parts:
            left = options.max_seconds - (time.perf_counter() - t0)
            if left < 0.5:
                got.append(Answer("unknown"))
                break
            got.append(_general(model, plain, part, shape, replace(options, max_seconds=left), seed, device, facts,
                                start))  # fmt: skip
            found = _confirm(plain, prop, torch.as_tensor(got[-1].x), shape) if got[-1].result == "sat" else None
            if found is not None:
                return found
    return Answer("unsat") if len(got) == len(parts) and all(a.result == "unsat" for a in got) else Answer("unknown")


#: intervals of the inputs of a network's activations proved on a property's box: the k-th activation (in the
#: order of the captured operators) → (lower, upper), flat, ±inf where nothing is known
Facts = dict[int, tuple[torch.Tensor, torch.Tensor]]
#: :func:`answer` gives the plain branch and bound this many seconds (at most half the budget) before it
#: stabilises hidden neurons: every ``mnist_fc`` instance it decides at all, it decides within 6.9 s
FIRST_SECONDS = 10.0
#: the share of what is then left that :func:`stabilise` may take; the branch and bound with its facts gets the rest
STABILISE_SHARE = 0.6
#: seconds of branch and bound per neuron, and the points sampled to choose the candidates
NEURON_SECONDS = 2.0
STABILISE_SAMPLES = 2048


def stabilise(
    model: nn.Module,
    prop: VnnProperty,
    input_shape: tuple[int, ...] | None = None,
    *,
    seconds: float,
    neuron_seconds: float = NEURON_SECONDS,
    options: VerifyOptions | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    facts: Facts | None = None,
    stats: list[dict] | None = None,
    tighten: bool = False,
    workers: Workers | None = None,
) -> Facts:
    """Hidden neurons proved to keep one sign on the property's box: the facts that stand in for a MIP solver's
    refined intermediate bounds.

    The intervals that bounds give a deep network's hidden neurons are loose, and a neuron they leave unstable
    costs a relaxation in every bound behind it; a neuron that in truth never changes sign on the box is exactly
    linear there. For each activation after the first (in order, each using what the earlier ones proved), every
    neuron that ``STABILISE_SAMPLES`` sampled points (and the box's two extreme corners) see with one sign only and
    that a batched PGD (:func:`_can_flip`) cannot turn is a candidate. The network cut before that activation
    (:class:`OperatorNetwork`) is bounded once on the whole box with a row per candidate (α-CROWN, each row its own
    α: :func:`_root_rows`). Every candidate that bound leaves open then asks, with :func:`answer`'s own branch
    and bound (ReLU splits, β, FSB; no attack), whether it can take the other sign: all of a layer's in one run
    (:func:`_prove_rows`: :meth:`LocalVerifier.with_rows`, one ball per neuron, so that boxes of many neurons
    share a batch), starting from that one bound's intervals and each row's α (:meth:`LocalVerifier.with_start`:
    the earlier layers are refined once per layer, not once per neuron), each neuron at most ``neuron_seconds`` and
    the layer its share of the seconds left (divided equally among the layers still to come; its narrowing, with
    ``tighten``, up to :data:`TIGHTEN_POOL` of such a share after that). A certified
    neuron is a proof: its input is ≥ 0 (or ≤ 0) on the whole box, and becomes a fact; every other candidate
    keeps, as one end of its interval, the least bound over its search's leaves (:attr:`LocalResult.bound`: the
    search runs each neuron's boxes lowest bound first, so that bound rises as far as its seconds allow).
    On ``mnist_fc`` 256×6 ``prop_0_0.05`` (one thread) the second to sixth hidden layers: 228, 240, 245, 256 and
    253 of 256 neurons proved (188, 195, 69, 9 and 56 by the one bound) in 79 s; a branch and bound per neuron
    (each refining the earlier layers again) proved 228, 239, 245, 14 and none of the sixth layer's in 150 s.

    Stops after ``seconds`` (> 0; ``neuron_seconds`` > 0 too). Returns ``facts`` (already proved ones, kept: a
    neuron stable by them is not proved again, and narrowing starts from their ends) with what was proved added,
    keyed by the activation's position (:meth:`LocalVerifier.with_facts`). ``stats``, if given, gets a line per
    layer (neurons seen with one sign, flipped by the PGD, stable by the given facts, proved by the one bound,
    left to the branch and bound, proved in all, falsified, ends narrowed, seconds of the proofs and in all).

    ``workers`` (:func:`genrobust.execute.local_pool`, say): the neurons' branch and bound (proofs and narrowing)
    is spread over them, each taking a share of a layer's neurons for the layer's whole seconds, so that N
    processes give each neuron about N times the time (:func:`_prove_spread`); None or an in-process executor:
    all in this process."""
    from dataclasses import replace

    t0 = time.perf_counter()
    shape = tuple(input_shape) if input_shape is not None else (len(prop.lo),)
    _, ops = _network_ops(model, shape, torch.device("cpu"))
    acts = [i for i, op in enumerate(ops) if isinstance(op, Activation)]
    if not (math.isfinite(seconds) and seconds > 0 and math.isfinite(neuron_seconds) and neuron_seconds > 0):
        raise GenrobustError(f"stabilise needs seconds > 0 and neuron_seconds > 0, got {seconds} and {neuron_seconds}")
    out: Facts = {k: (lo.clone(), hi.clone()) for k, (lo, hi) in (facts or {}).items()}
    if len(acts) < 2:
        return out
    gen = torch.Generator().manual_seed(sub_seed(seed, 7))
    lo_x, hi_x = torch.as_tensor(prop.lo, dtype=DT), torch.as_tensor(prop.hi, dtype=DT)
    x = lo_x + torch.rand(STABILISE_SAMPLES, len(lo_x), generator=gen, dtype=DT) * (hi_x - lo_x)
    x = torch.cat([lo_x[None], hi_x[None], x]).reshape(-1, *shape)
    inputs = x
    opts = replace(options or VerifyOptions(), max_boxes=100_000, give_up=None, attack_first=False)
    spread = workers is not None and not workers.inline and workers.count > 1
    shipped = Shipped(model) if spread else None  # hashed and pickled once, for every layer's shards
    for k in range(1, len(acts)):  # the first activation's inputs: behind linear layers the bounds are exact
        with torch.no_grad():
            for op in ops[acts[k - 1] if k > 1 else 0 : acts[k]]:
                x = op.forward(x)
        z = x.flatten(1)
        n = z.shape[1]
        pos, neg = (z > 0).all(0), (z < 0).all(0)
        cand = torch.nonzero(pos | neg).flatten()
        prefix = OperatorNetwork(ops[: acts[k]])
        sign_all = torch.where(pos, 1.0, -1.0).to(DT)
        sampled = len(cand)
        cand = cand[_can_flip(prefix, inputs, z, cand, sign_all, lo_x, hi_x, shape) == 0]
        clear = z.abs().amin(0) / (z.amax(0) - z.amin(0)).clamp(min=1e-12)
        cand = cand[torch.argsort(clear[cand], descending=True)]
        flo, fhi = out.get(k, (torch.full((n,), -math.inf, dtype=DT), torch.full((n,), math.inf, dtype=DT)))
        earlier = {q: f for q, f in out.items() if q < k}
        line = {"layer": k, "neurons": n, "one_sign_sampled": sampled, "flipped_by_pgd": sampled - len(cand),
                "known": 0, "proved_at_root": 0, "proved": 0, "falsified": 0, "tried": 0}  # fmt: skip
        known = (flo >= 0) | (fhi <= 0)  # stable by the facts given (an earlier round): nothing to prove again
        line["known"] = int(known[cand].sum())
        cand = cand[~known[cand]]
        tk = time.perf_counter()
        if len(cand):
            # one bound of the whole box for every candidate at once: the earlier layers' α-refinement is shared,
            # and each candidate's row keeps its own α (as alone)
            low, root = _root_rows(prefix, prop, shape, cand, sign_all[cand], opts, device, earlier or None)
            _narrow(flo, fhi, cand, sign_all[cand], low)
            ok = low > 0
            line["proved_at_root"] = int(ok.sum())
            proved = cand[ok]
            pick = torch.nonzero(~ok).flatten()
            cand, left = cand[~ok], seconds - (time.perf_counter() - t0)
            if len(cand) and left > 0:
                # every open candidate's branch and bound in one run, boxes of many neurons bounded together;
                # the layers still to come get their share of what is left
                pool = min(len(cand) * neuron_seconds, left / (len(acts) - k))
                rows = _RowsTask(shipped, shape, prop, k) if shipped is not None else None
                status, bound = _prove_spread(prefix, prop, shape, cand, sign_all[cand],
                                              torch.zeros(len(cand), dtype=DT), (*root, pick), pool, neuron_seconds,
                                              opts, seed, device, earlier or None, rows, workers)  # fmt: skip
                # a neuron not proved stable keeps what its search reached: a narrower interval
                _narrow(flo, fhi, cand, sign_all[cand], bound)
                proved = torch.cat([proved, cand[status == CERTIFIED]])
                line["tried"], line["falsified"] = len(cand), int((status == FALSIFIED).sum())
            line["proved"] = len(proved)
        free = torch.nonzero(~((flo >= 0) | (fhi <= 0))).flatten()
        left = seconds - (time.perf_counter() - t0)
        line["proof_seconds"] = round(time.perf_counter() - tk, 2)
        if tighten and len(free) and left > 0:
            rows = _RowsTask(shipped, shape, prop, k) if shipped is not None else None
            line["tightened"] = _tighten(prefix, prop, shape, inputs, z, free, flo, fhi, lo_x, hi_x,
                                         TIGHTEN_POOL * left / (len(acts) - k), neuron_seconds, opts, seed, device,
                                         earlier or None, rows, workers)  # fmt: skip
        if bool(torch.isfinite(flo).any() or torch.isfinite(fhi).any()):
            out[k] = (flo, fhi)
        if stats is not None:
            stats.append({**line, "seconds": round(time.perf_counter() - tk, 2)})
        if seconds - (time.perf_counter() - t0) <= 0:
            break
    return out


def _prove_rows(prefix: nn.Module, prop: VnnProperty, shape, idx: torch.Tensor, sign: torch.Tensor,
                offset: torch.Tensor, root, pool: float, neuron_seconds: float, options, seed: int, device,
                facts: Facts | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The branch and bound of every row's question (can sign·z_idx + offset ≤ 0 somewhere on the box?) in one run
    of one verifier (:meth:`LocalVerifier.with_rows`: row r is the ball of label r), from the whole box's bound
    ``root`` = (intervals, α per row of that bound, the position of each row among that bound's rows), each row at
    most ``neuron_seconds`` and all of them together about ``pool`` seconds. Returns each row's status
    (CERTIFIED: sign·z_idx + offset > 0 on the whole box) and its anytime bound: sign·z_idx + offset ≥ it on the
    whole box (float64, the least over the row's leaves, :attr:`LocalResult.bound`; NaN where it has none)."""
    from dataclasses import replace

    _, chain, d = _box_chain(prefix, prop, shape)
    L = len(idx)
    opts = replace(options, max_seconds=neuron_seconds, mean_seconds=max(pool, 1e-3) / L)
    verifier = LocalVerifier.for_model(chain, (d,), options=opts, device=device)
    n = verifier.engine.num_classes
    coef = torch.zeros(L, n, dtype=DT)
    coef[torch.arange(L), idx] = -sign.to(DT)  # unsafe: sign·z_j + offset ≤ 0
    verifier.with_rows(coef, -offset.to(DT))
    if facts:
        verifier.with_facts(facts)
    intervals, alpha, pick = root
    verifier.with_start(intervals, None if alpha is None else {i: a[pick][:, None] for i, a in alpha.items()})
    res = verifier.run(torch.zeros(L, d), list(range(L)), [1.0], seed=seed)
    return res.status[:, 0], res.bound[:, 0]


class _RowsTask:
    """:func:`_prove_rows` on a worker process: the network cut before its ``layer``-th activation (as
    :func:`stabilise` cuts it), rebuilt there from the shipped model (once per worker: :class:`Shipped` and the
    captured operators are cached), for one share of a layer's rows."""

    def __init__(self, model: Shipped, shape: tuple[int, ...], prop: VnnProperty, layer: int) -> None:
        self.model, self.shape, self.prop, self.layer = model, tuple(shape), prop, layer

    def __call__(self, idx, sign, offset, root, pool, neuron_seconds, options, seed, facts):
        torch.set_num_threads(1)
        _, ops = _network_ops(self.model.get(), self.shape, torch.device("cpu"))
        acts = [i for i, op in enumerate(ops) if isinstance(op, Activation)]
        prefix = OperatorNetwork(ops[: acts[self.layer]])
        return _prove_rows(prefix, self.prop, self.shape, idx, sign, offset, root, pool, neuron_seconds, options,
                           seed, "cpu", facts)  # fmt: skip


def _prove_spread(prefix: nn.Module, prop: VnnProperty, shape, idx: torch.Tensor, sign: torch.Tensor,
                  offset: torch.Tensor, root, pool: float, neuron_seconds: float, options, seed: int, device,
                  facts: Facts | None, task: _RowsTask | None = None,
                  workers: Workers | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`_prove_rows`, its rows dealt round-robin over ``workers`` (a row's question does not depend on the
    others', so each share is a run of its own; the rows come easiest first, and dealing them in turn gives every
    share a like mix), every share with the whole ``pool`` of wall seconds: N processes give each row about N
    times the seconds one process would. Without ``task`` or with fewer than two workers: here, as one run."""
    n = 0 if task is None or workers is None or workers.inline else min(workers.count, len(idx))
    if n < 2:
        return _prove_rows(
            prefix, prop, shape, idx, sign, offset, root, pool, neuron_seconds, options, seed, device, facts
        )
    intervals, alpha, pick = root
    futures = []
    for j in range(n):
        part = torch.arange(j, len(idx), n)
        a = None if alpha is None else {i: v[pick[part]] for i, v in alpha.items()}
        futures.append(workers.executor.submit(task, idx[part], sign[part], offset[part],
                                               (intervals, a, torch.arange(len(part))), pool, neuron_seconds,
                                               options, seed, facts))  # fmt: skip
    status = torch.empty(len(idx), dtype=torch.int8)
    bound = torch.empty(len(idx), dtype=DT)
    for j, fut in enumerate(futures):
        part = torch.arange(j, len(idx), n)
        st, b = fut.result()
        status[part], bound[part] = st.to(status.dtype), b.to(DT)
    return status, bound


def _whole_box(model: nn.Module, prop: VnnProperty, shape, options, device,
               facts: Facts | None) -> tuple[LocalVerifier, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The verifier of ``model`` behind the property's box map (the verifier's own options, with ``facts``) and the
    whole box [−1, 1]^f as (centre, radius): what :func:`_by_disjunct` and :func:`_root_rows` bound once, each
    with its own rows, before any branch and bound."""
    _, chain, d = _box_chain(model, prop, shape)
    verifier = LocalVerifier.for_model(chain, (d,), options=options, device=device)
    if facts:
        verifier.with_facts(facts)
    dev = verifier.device
    center, radius = centre_radius(-torch.ones(1, d, dtype=DT, device=dev), torch.ones(1, d, dtype=DT, device=dev))
    return verifier, center, radius


def _root_rows(prefix: nn.Module, prop: VnnProperty, shape, idx: torch.Tensor, sign: torch.Tensor, options,
               device, facts: Facts | None) -> tuple[torch.Tensor, tuple]:  # fmt: skip
    """One bound on the property's whole box (α-CROWN, the verifier's own options) of sign·z_idx for each row, z
    being ``prefix``'s output (each row its own α). Returns the rows' lower bounds and (the bound's intervals, its
    α per row) for :func:`_prove_rows`."""
    verifier, center, radius = _whole_box(prefix, prop, shape, options, device, facts)
    dev = verifier.device
    spec = torch.zeros(1, len(idx), verifier.engine.num_classes, dtype=DT, device=dev)
    spec[0, torch.arange(len(idx)), idx.to(dev)] = sign.to(dev, DT)
    mb = verifier.engine.margins(center, radius, spec)
    intervals = {i: (lo[0], hi[0]) for i, (lo, hi) in mb.intervals.items()}
    alpha = None if mb.alpha is None else {i: a[0] for i, a in mb.alpha.items()}
    return mb.lower[0].cpu(), (intervals, alpha)


#: the share of a layer's seconds (what is left over the layers still to come) that narrowing its intervals may take
TIGHTEN_POOL = 1.0
#: where :func:`_tighten` asks for a bound: this share of the way from the least value an attack reached towards the
#: sound bound of the whole box
TIGHTEN_SHARE = 0.2


def _tighten(prefix: nn.Module, prop: VnnProperty, shape, inputs: torch.Tensor, z: torch.Tensor, free: torch.Tensor,
             flo: torch.Tensor, fhi: torch.Tensor, lo_x: torch.Tensor, hi_x: torch.Tensor, pool: float,
             neuron_seconds: float, options, seed: int, device, facts: Facts | None, task: _RowsTask | None = None,
             workers: Workers | None = None) -> int:  # fmt: skip
    """Narrower intervals for the ``free`` neurons (those not proved stable): for each, its lower and upper end as
    the whole box's bound gives them and as a batched PGD reaches them; the branch and bound (:func:`_prove_rows`)
    is asked whether the neuron stays above (below) a point ``TIGHTEN_SHARE`` of the way from what the PGD
    reached towards the bound (where it proves that, the search stops early; elsewhere it goes on lowest bound
    first), and the least bound over each end's leaves narrows ``flo``/``fhi`` in place (a tighter relaxation
    of an unstable ReLU; beyond the target where it was proved). ``task``/``workers``: see :func:`_prove_spread`.
    Returns how many ends were narrowed."""
    m = len(free)
    idx = torch.cat([free, free])
    sign = torch.cat([torch.ones(m), -torch.ones(m)]).to(DT)  # rows z_j (its lower end) and −z_j (its upper end)
    low, root = _root_rows(prefix, prop, shape, idx, sign, options, device, facts)
    low = torch.maximum(low, torch.cat([flo[free], -fhi[free]]))  # an end known already (an earlier round)
    least = _pgd_least(prefix, inputs, z, idx, sign, lo_x, hi_x, shape, stop_at_zero=False)
    target = least - TIGHTEN_SHARE * (least - low)
    _, bound = _prove_spread(prefix, prop, shape, idx, sign, -target, (*root, torch.arange(2 * m)), pool,
                             neuron_seconds, options, seed, device, facts, task, workers)  # fmt: skip
    # sign·z − target ≥ bound on the whole box (> 0 where certified: beyond the target); NaN: nothing learned
    before = torch.cat([flo[free], -fhi[free]])
    _narrow(flo, fhi, idx, sign, torch.maximum(low, torch.nan_to_num(bound.to(DT), nan=-math.inf) + target))
    return int((torch.cat([flo[free], -fhi[free]]) > before).sum())


def _narrow(flo: torch.Tensor, fhi: torch.Tensor, idx: torch.Tensor, sign: torch.Tensor, bound: torch.Tensor) -> None:
    """Intervals narrowed in place by the proved ``sign``·z_idx ≥ ``bound`` (a lower end where the sign is +, an
    upper end where it is −; NaN bounds, where nothing was computed, change nothing)."""
    bound = torch.nan_to_num(bound.to(DT), nan=-math.inf)
    up = sign > 0
    flo[idx[up]] = torch.maximum(flo[idx[up]], bound[up])
    fhi[idx[~up]] = torch.minimum(fhi[idx[~up]], -bound[~up])


def _can_flip(
    prefix: nn.Module,
    x: torch.Tensor,
    z: torch.Tensor,
    cand: torch.Tensor,
    sign: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    shape,
    steps: int = 30,
) -> torch.Tensor:
    """Which candidate neurons a batched PGD (:func:`_pgd_least`) turns to the other sign. Returns (len(cand),) 1
    where it reached ≤ 0: no fact to prove there (a cheap filter: a per-neuron branch and bound would spend its
    budget on each)."""
    if not len(cand):
        return torch.zeros(0, dtype=torch.long)
    return (_pgd_least(prefix, x, z, cand, sign[cand], lo, hi, shape, steps) <= 0).long()


def _pgd_least(prefix: nn.Module, x: torch.Tensor, z: torch.Tensor, idx: torch.Tensor, sign: torch.Tensor,
               lo: torch.Tensor, hi: torch.Tensor, shape, steps: int = 30,
               stop_at_zero: bool = True) -> torch.Tensor:  # fmt: skip
    """The least sign·z_idx a batched PGD reaches per row: from the sampled point ``x`` where it is least (``z``:
    the samples' values) and from the box's centre, signed-gradient steps (a tenth of the box's width, shrinking)
    down sign·z_idx, all rows in one batch (``stop_at_zero``: once every row is ≤ 0 at one start)."""
    m = len(idx)
    nearest = (sign * z[:, idx]).argmin(0)  # (m,) the sample where the row is least
    starts = torch.cat([x.flatten(1)[nearest], ((lo + hi) / 2).expand(m, -1)])  # (2m, D)
    rows = torch.cat([idx, idx])
    s = torch.cat([sign, sign]).to(DT)
    step = (hi - lo) / 10
    cur = starts.clone()
    least = torch.full((2 * m,), math.inf, dtype=DT)
    for t in range(steps):
        cur = cur.detach().requires_grad_(True)
        val = s * prefix(cur.reshape(-1, *shape)).gather(1, rows[:, None])[:, 0]
        least = torch.minimum(least, val.detach())
        if t == steps - 1 or (stop_at_zero and bool((torch.minimum(least[:m], least[m:]) <= 0).all())):
            break
        (g,) = torch.autograd.grad(val.sum(), cur)
        cur = torch.minimum(torch.maximum(cur - step * (1 - t / steps) * g.sign(), lo), hi)
    return torch.minimum(least[:m], least[m:])


def _robustness(model, plain, prop: VnnProperty, shape, label: int, options, seed: int, device,
                facts: Facts | None = None, start: dict | None = None,
                attack_only: bool = False) -> Answer:  # fmt: skip
    """The robustness form through the local verifier's branch and bound: on the box itself when it is a cube
    (as exported balls are), otherwise (a clipped pixel ball, a latent box whose sides differ, inputs fixed to
    one value) on the box written as the image of [−1, 1]^d, so that every box gets the same splitting.
    ``model`` is the caller's network (the key of its captured operators), ``plain`` its eval-mode copy.
    ``start``: as :func:`_general`'s (used on the box's chain; a cube is bounded on the network itself).
    ``attack_only``: the falsifier alone (sat or unknown)."""
    lo, hi = torch.as_tensor(prop.lo), torch.as_tensor(prop.hi)
    center = ((lo + hi) / 2).float().double()
    eps = float(torch.maximum(hi - center, center - lo).max())
    eps = float(np.nextafter(eps, np.inf))
    if float((hi - lo).min()) >= 0.999 * 2 * eps:
        verifier = LocalVerifier.for_model(model, shape, options=options, device=device)
        if facts:
            verifier.with_facts(facts)
        res = verifier.run(center.float().reshape(1, -1), [label], [eps], seed=seed, attack_only=attack_only)
        to_input = None
    else:
        to_input, chain, d = _box_chain(model, prop, shape)
        verifier = LocalVerifier.for_model(chain, (d,), options=options, device=device)
        if facts:
            verifier.with_facts(facts)
        if start:
            verifier.with_start(start)
        res = verifier.run(torch.zeros(1, d), [label], [1.0], seed=seed, attack_only=attack_only)
    return _verdict(res, plain, prop, shape, to_input)


def _verdict(res, model, prop: VnnProperty, shape, to_input) -> Answer:
    """The competition's answer from a one-ball run: unsat if certified, sat with a counterexample only if a plain
    forward pass of ``model`` at the witness (mapped back to the property's inputs) meets the property."""
    status = int(res.status[0, 0])
    if status == CERTIFIED:
        return Answer("unsat")
    if status == FALSIFIED:
        w = res.witness[0, 0]
        if to_input is not None:
            with torch.no_grad():
                w = to_input(w.reshape(1, -1)).reshape(-1)
        found = _confirm(model, prop, w, shape)
        if found is not None:
            return found
    return Answer("unknown")


class _Box(nn.Module):
    """s ∈ [−1, 1]^d ↦ c + r·s: the property's box (contained in the image of the cube) as the model's input."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        super().__init__()
        c = ((lo + hi) / 2).astype(np.float32)
        r = np.maximum(np.nextafter(hi - c.astype(np.float64), np.inf), np.nextafter(c - lo, np.inf))
        r32 = r.astype(np.float32)
        r32 = np.where(r32.astype(np.float64) < r, np.nextafter(r32, np.float32(np.inf)), r32)
        self.register_buffer("c", torch.as_tensor(c))
        self.register_buffer("r", torch.as_tensor(r32))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s * self.r + self.c


def _box_chain(model: nn.Module, prop: VnnProperty, shape) -> tuple[nn.Module, nn.Module, int]:
    """The property's box as a map from [−1, 1]^f, the model behind it (s ↦ model(box(s))) and f.

    Inputs fixed to one float32 value (lower = upper) are not free: they become the constant of a linear map
    from the f free inputs (``f`` < the input count), so that bounds carry f, not all, input directions (a
    generator instance fixes 49 thumbnail pixels and moves 8 latents: its bounds took 1.1 s, now 0.41 s) and splitting
    never looks at them. With every input free the map stays elementwise (a 784 × 784 matrix would cost more)."""
    box = _Box(prop.lo, prop.hi)
    fixed = (prop.lo == prop.hi) & (box.c.double().numpy() == prop.lo)  # a float32 value: the radius can be 0
    free = torch.as_tensor(np.flatnonzero(~fixed))
    if 0 < len(free) < len(prop.lo):
        lin = nn.Linear(len(free), len(prop.lo))
        with torch.no_grad():
            lin.weight.zero_()
            lin.weight[free, torch.arange(len(free))] = box.r[free]
            lin.bias.copy_(box.c)
        box = lin.requires_grad_(False)
    return box, BoxedNetwork(box, model, shape), len(free) if len(free) > 0 else len(prop.lo)


def _general(model, plain, prop: VnnProperty, shape, options, seed: int, device, facts: Facts | None = None,
             start: dict | None = None, attack_only: bool = False,
             stop: Callable[[], bool] | None = None) -> Answer:  # fmt: skip
    """Any other property through the same branch and bound: the box written as the image of [−1, 1]^d, each
    disjunct refuted by one of its constraints (``LocalVerifier.with_property``), ReLU or input splits as the
    input's size says, and the falsifier attacking one disjunct at a time. ``start``: the whole box's intervals,
    already bounded (:meth:`LocalVerifier.with_start`; op indices of the box's chain). ``attack_only``: the
    falsifier alone (sat or unknown). ``stop``: asked before every batch; True ends the branch and bound there
    (:attr:`LocalVerifier.stop_when`)."""
    to_input, chain, d = _box_chain(model, prop, shape)
    rows = [(c.coef, c.const, g) for g, conj in enumerate(prop.disjuncts) for c in conj]
    verifier = LocalVerifier.for_model(chain, (d,), options=options, device=device).with_property(
        torch.as_tensor(np.stack([r[0] for r in rows])), torch.as_tensor([r[1] for r in rows]),
        torch.as_tensor([r[2] for r in rows]),
    )  # fmt: skip
    if facts:
        verifier.with_facts(facts)
    if start:
        verifier.with_start(start)
    verifier.stop_when = stop
    res = verifier.run(torch.zeros(1, d), [0], [1.0], seed=seed, attack_only=attack_only)
    return _verdict(res, plain, prop, shape, to_input)


# --------------------------------------------------------------------------------------------------- a benchmark
RESULT_COLUMNS = ("onnx", "vnnlib", "result", "seconds", "message")
#: the generator-shaped instances' properties: the runner-up class beats the label, or any class does
VARIATION_FORMS = ("runner-up", "robust")
#: their latent boxes: ε × the latent's spread per dimension, or ε everywhere
VARIATION_BOXES = ("prior", "cube")


def read_instances(path: str | Path) -> list[dict[str, str]]:
    """A benchmark's ``instances.csv``: rows ``onnx, vnnlib, timeout`` (paths relative to its folder), with or
    without a header; a header may add ``expected`` (the published answer), which the runner compares."""
    import csv

    path = Path(path)
    try:
        lines = [r for r in csv.reader(path.read_text().splitlines()) if r and any(x.strip() for x in r)]
    except OSError as exc:
        raise VnnlibError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not lines:
        raise VnnlibError(f"{path} lists no instances")
    head = [x.strip() for x in lines[0]]
    if {"onnx", "vnnlib"} <= set(head):
        rows = [dict(zip(head, (x.strip() for x in r), strict=False)) for r in lines[1:]]
    else:
        rows = [dict(zip(("onnx", "vnnlib", "timeout"), (x.strip() for x in r), strict=False)) for r in lines]
    for i, r in enumerate(rows):
        try:
            ok = bool(r.get("onnx")) and bool(r.get("vnnlib")) and float(r.get("timeout", "")) > 0
        except ValueError:
            ok = False
        if not ok:
            raise VnnlibError(f"{path}, instance {i + 1}: expected 'onnx, vnnlib, timeout > 0', got {r}")
    return rows


def run_instances(
    instances: str | Path,
    out: str | Path,
    *,
    timeout_scale: float = 1.0,
    options: VerifyOptions | None = None,
    seed: int = 0,
    show_progress: bool = False,
    device: str | torch.device | None = None,
    stabilise_hidden: bool = True,
    tighten_hidden: bool = True,
    workers: Workers | None = None,
) -> list[dict[str, str]]:
    """Answer every instance of a benchmark in one process (no start-up per instance) and write ``out`` (CSV,
    :data:`RESULT_COLUMNS`) as the answers come, with each sat instance's counterexample in
    ``<out's folder>/counterexamples/``. Each instance gets its timeout × ``timeout_scale`` seconds (loading
    and parsing included). An instance that cannot be read or answered (a corrupt file, an unsupported
    operator) is recorded as ``error`` with the message, and the others go on. Instances already in ``out``
    are not run again: a killed run resumes. ``device``: where the bounds run (see :func:`answer`);
    ``stabilise_hidden``, ``tighten_hidden``, ``workers``: see :func:`answer` (a pool is started once for the
    whole benchmark, not per instance). Returns every row of ``out``."""
    import csv
    import time

    from ..models.zoo import load_classifier
    from ..runtime import progress, resolve_device

    if not (math.isfinite(timeout_scale) and timeout_scale > 0):
        raise GenrobustError(f"the timeout scale must be a number > 0, got {timeout_scale}")
    device = resolve_device(device)  # once, here: an absent device is the run's error, not every instance's
    base = Path(instances).parent
    todo = read_instances(instances)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cex_dir = out.parent / "counterexamples"
    done: list[dict[str, str]] = []
    if out.exists() and out.stat().st_size:
        with open(out, newline="") as f:
            done = list(csv.DictReader(f))
    seen = {(r["onnx"], r["vnnlib"]) for r in done}
    if not done:
        with open(out, "w", newline="") as f:
            csv.writer(f).writerow(RESULT_COLUMNS)
    opts = options or VerifyOptions(max_boxes=100_000)
    nets: dict[str, nn.Module] = {}
    bar = progress(len(todo), "instances", show_progress)
    for r in todo:
        bar.update(1)
        if (r["onnx"], r["vnnlib"]) in seen:
            continue
        t = time.perf_counter()
        budget = float(r["timeout"]) * timeout_scale
        message = ""
        try:
            if r["onnx"] not in nets:
                nets[r["onnx"]] = load_classifier(str(base / r["onnx"]))
            net = nets[r["onnx"]]
            prop = parse_vnnlib((base / r["vnnlib"]).read_text())
            left = budget - (time.perf_counter() - t)
            if left <= 0:
                result = "unknown"
            else:
                from dataclasses import replace

                got = answer(net, prop, getattr(net, "input_shape", None), options=replace(opts, max_seconds=left),
                             seed=seed, device=device, stabilise_hidden=stabilise_hidden,
                             tighten_hidden=tighten_hidden, workers=workers)  # fmt: skip
                result = got.result
                if result == "sat":
                    cex_dir.mkdir(exist_ok=True)
                    (cex_dir / f"{Path(r['onnx']).stem}__{Path(r['vnnlib']).stem}.txt").write_text(got.text())
        except Exception as exc:  # one bad instance must not stop a benchmark (Ctrl-C is no Exception)
            result, message = "error", " ".join(str(exc).split()) or type(exc).__name__
        row = {"onnx": r["onnx"], "vnnlib": r["vnnlib"], "result": result,
               "seconds": f"{time.perf_counter() - t:.3f}", "message": message}  # fmt: skip
        with open(out, "a", newline="") as f:
            csv.writer(f).writerow([row[c] for c in RESULT_COLUMNS])
        done.append(row)
    bar.close()
    return done


# --------------------------------------------------------------------------------------------------- exporting
def export_onnx(model: nn.Module, input_dim: int, path: str | Path) -> None:
    """``model`` (inputs (N, input_dim) → logits) as an ONNX file with a free batch dimension."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"input_names": ["X"], "output_names": ["Y"], "dynamic_axes": {"X": {0: "batch"}, "Y": {0: "batch"}},
              "opset_version": 17}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(model.eval(), (torch.zeros(1, input_dim),), str(path), dynamo=False, **kwargs)
        except TypeError:  # torch < 2.5 has no dynamo= argument
            torch.onnx.export(model.eval(), (torch.zeros(1, input_dim),), str(path), **kwargs)


def export_instances(
    classifier: nn.Module,
    generators,
    *,
    eps: list[float],
    n: int,
    seed: int,
    out: str | Path,
    classes: list[int] | None = None,
    timeout: float = 60.0,
) -> list[tuple[str, str, float]]:
    """Write ``onnx/class_{c}.onnx`` (C∘G_c, latent → logits), one property per centre and ε in ``vnnlib/``
    (the centres of :func:`genrobust.global_robustness` for ``seed``, labelled with their class) and
    ``instances.csv``; return its rows."""
    from ..compose import Composed
    from ..runtime import working_copy
    from ..sampling import latents

    out = Path(out)
    rows = []
    wanted = list(range(len(generators))) if classes is None else classes
    for c in wanted:
        model = Composed(working_copy(classifier), working_copy(generators[c]))
        onnx_path = Path("onnx") / f"class_{c}.onnx"
        export_onnx(model, generators.latent_dim, out / onnx_path)
        for i, z in enumerate(latents(seed, c, n, generators.latent_dim)):
            for e in eps:
                lo, hi = ball_box(z, e)
                prop = Path("vnnlib") / f"class_{c}_ball_{i}_eps_{e:g}.vnnlib"
                (out / prop).parent.mkdir(parents=True, exist_ok=True)
                note = (f"genrobust: is C(G_{c}(z')) = {c} for every |z' - z|_inf <= {e:g}? (class {c}, centre {i}, "
                        f"seed {seed}); sat = a counterexample exists")  # fmt: skip
                (out / prop).write_text(property_text(lo, hi, c, len(generators), note))
                rows.append((onnx_path.as_posix(), prop.as_posix(), float(timeout)))
    (out / "instances.csv").write_text("".join(f"{a},{b},{t:g}\n" for a, b, t in rows))
    return rows


def export_variation_instances(
    classifier: nn.Module,
    generator,
    *,
    eps: list[float],
    n: int,
    seed: int,
    out: str | Path,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    form: str = "runner-up",
    box: str = "prior",
    classes: list[int] | None = None,
    timeout: float = 60.0,
    device: str | torch.device | None = None,
) -> list[tuple[str, str, float]]:
    """Instances of the competition's generator-benchmark shape from an image-conditional generator
    (:class:`genrobust.models.variation.VariationGenerator`): ``onnx/variation.onnx`` is classifier ∘ decoder on the
    flat input [thumbnail, z]; per test image (``n`` per class, drawn by ``seed`` among the images whose
    reconstruction the classifier labels right) and ε, a property whose thumbnail inputs are fixed (lower = upper)
    and whose latent box is z ± ε·``latent_std`` (``box="prior"``: the encoder's spread per dimension, not a cube)
    or z ± ε (``"cube"``) around the image's latent mean z; ``form="runner-up"``: "the class second to the label
    at the centre reaches the label" (one conjunct), ``"robust"``: any class does. Returns ``instances.csv``'s
    rows. ``dataset``: where the test images come from (default: the dataset the generator was trained on, by its
    file's metadata, else MNIST). ``device``: where copies of the models encode and label the test images (None:
    where the generator is); the ONNX file is traced on the CPU."""

    from ..data import load_dataset
    from ..models.generators import module_device
    from ..models.variation import VariationGenerator, VariationModel
    from ..runtime import resolve_device, working_copy

    if not isinstance(generator, VariationGenerator):
        raise VnnlibError(f"an image-conditional instance needs a VariationGenerator, not {type(generator).__name__}")
    if form not in VARIATION_FORMS or box not in VARIATION_BOXES:
        raise VnnlibError(f"form must be one of {', '.join(VARIATION_FORMS)} and box one of "
                          f"{', '.join(VARIATION_BOXES)}, got {form!r}, {box!r}")  # fmt: skip
    if n < 1 or any(not (math.isfinite(e) and e > 0) for e in eps):
        raise VnnlibError(f"n must be ≥ 1 and every ε finite and > 0, got n = {n}, ε = {eps}")
    out = Path(out)
    dev = resolve_device(device) if device is not None else module_device(generator)
    model = VariationModel(working_copy(classifier), working_copy(generator)).eval()
    export_onnx(model, generator.input_dim, out / "onnx" / "variation.onnx")
    model.to(dev)  # this function's own copy, exported above; the caller's generator is copied if it lives elsewhere
    encoder = working_copy(generator, dev)
    dataset = dataset or getattr(generator, "genrobust_meta", {}).get("dataset", "mnist")
    test = load_dataset(dataset, "test", data_dir=data_dir)
    unknown = sorted(set(classes or ()) - set(test.labels.tolist()))
    if unknown:
        raise VnnlibError(f"classes {unknown} are not classes of {dataset} (0..{test.num_classes - 1})")
    images = torch.from_numpy(test.images).unsqueeze(1).float() / 255.0
    labels = torch.from_numpy(test.labels).long()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    width = generator.latent_std.double().numpy() if box == "prior" else np.ones(generator.latent_dim)
    wanted = sorted(set(labels.tolist())) if classes is None else classes
    found: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = {c: [] for c in wanted}
    for start in range(0, len(order), 512):  # the seed's order, until every class has its n centres
        idx = torch.tensor(order[start : start + 512])
        with torch.no_grad():
            batch = images[idx].to(dev)
            x = torch.cat([encoder.thumbnail(batch), encoder.encode(batch)], 1)
            x, y = x.cpu(), model(x).cpu()
        for j, i in enumerate(idx.tolist()):
            c = int(labels[i])
            if c in found and len(found[c]) < n and int(y[j].argmax()) == c:
                found[c].append((i, x[j], y[j]))
        if all(len(v) == n for v in found.values()):
            break
    k, rows = int(y.shape[1]), []
    for c in wanted:
        for i, centre, logits in found[c]:
            runner = int(logits.clone().index_fill_(0, torch.tensor([c]), -math.inf).argmax())
            x = centre.double().numpy()
            p = generator.config.thumb_numel
            side = generator.config.image_size // generator.config.pool
            for e in eps:
                lo, hi = x.copy(), x.copy()  # the thumbnail's inputs fixed: lower = upper
                lo[p:] = np.nextafter(x[p:] - e * width, -np.inf)
                hi[p:] = np.nextafter(x[p:] + e * width, np.inf)
                name = Path("vnnlib") / f"class_{c}_image_{i}_eps_{e:g}.vnnlib"
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                what = f"Y_{runner} >= Y_{c} (the runner-up)" if form == "runner-up" else f"some Y_j >= Y_{c}"
                note = (f"genrobust image-conditional instance: test image {i} (class {c}); inputs "
                        f"X_0..X_{p - 1} its {side}x{side} thumbnail (fixed), the "
                        f"rest its latent mean +- {e:g} x {'the latent spread' if box == 'prior' else '1'}; "
                        f"sat = some latent in the box gives {what}")  # fmt: skip
                rivals = [runner] if form == "runner-up" else None
                (out / name).write_text(property_text(lo, hi, c, k, note, rivals=rivals))
                rows.append(("onnx/variation.onnx", name.as_posix(), float(timeout)))
    (out / "instances.csv").write_text("".join(f"{a},{b},{t:g}\n" for a, b, t in rows))
    return rows
