"""Hidden neurons proved stable on a property's box (verify.vnnlib.stabilise) and the bound engine's facts: a fact
holds at every sampled point, facts only tighten bounds and are really used, answers with them stay sound, and
they decide a real competition instance's root that the bounds alone leave open."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import genrobust as gr
from genrobust.bounds.capture import OperatorNetwork, capture
from genrobust.bounds.engine import BoundEngine, BoundOptions
from genrobust.errors import GenrobustError
from genrobust.verify.vnnlib import Constraint, VnnProperty, answer, parse_vnnlib, stabilise


def _deep(d: int, seed: int, width: int = 24) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [nn.Linear(d if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 3)).eval()


def _hidden_inputs(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Every ReLU's input at the points x (float64, as the facts are stated for the real network)."""
    out, h = [], x.double()
    for m in net:
        if isinstance(m, nn.ReLU):
            out.append(h)
        h = m.double()(h) if isinstance(m, nn.Linear) else m(h)
    net.float()
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), width=st.floats(0.05, 0.4), tighten=st.booleans())
def test_facts_hold_at_every_sampled_point(seed, width, tighten):
    """Random three-layer ReLU networks on 40-input boxes: every neuron :func:`stabilise` calls stable keeps its
    sign, and every interval it narrows (``tighten``) holds, at 20,000 sampled points and at the box's corners of
    the first layer's extreme directions."""
    d = 40
    net = _deep(d, seed)
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 1, d)
    hi = lo + width
    prop = VnnProperty(lo, hi, [[Constraint(np.array([1.0, -1.0, 0.0]), 0.0)]])
    facts = stabilise(net, prop, seconds=20, neuron_seconds=0.5, tighten=tighten)
    assert set(facts) <= {1, 2}  # the first ReLU's inputs are exact already: never a fact
    x = torch.as_tensor(lo + (hi - lo) * rng.random((20_000, d)))
    w = net[0].weight.detach().double()
    corners = torch.as_tensor(np.where(w.numpy() > 0, hi, lo))  # each first-layer neuron's maximiser
    x = torch.cat([x, corners, torch.as_tensor(np.where(w.numpy() > 0, lo, hi))])
    seen = _hidden_inputs(net, x)
    for k, (flo, fhi) in facts.items():
        assert flo.shape == fhi.shape == (seen[k].shape[1],)
        assert bool((seen[k] >= flo).all() and (seen[k] <= fhi).all()), k


def test_stabilise_proves_neurons_and_answers_with_them_stay_sound():
    """On a fixed network the stage proves many neurons (sampling sees them with one sign) and not every one; the
    answers with its facts agree with a dense sample (unsat only where no point meets the property)."""
    d = 40
    net = _deep(d, 3)
    rng = np.random.default_rng(3)
    lo = rng.uniform(-1, 1, d)
    hi = lo + 0.15
    x = torch.as_tensor(lo + (hi - lo) * rng.random((50_000, d)), dtype=torch.float32)
    with torch.no_grad():
        y = net(x).double().numpy()
    top = (y[:, 1] - y[:, 0]).max()
    props = {t: VnnProperty(lo, hi, [[Constraint(np.array([-1.0, 1.0, 0.0]), -t)]]) for t in
             (top + 0.05 * abs(top) + 0.01, top - 0.05 * abs(top) - 0.01)}  # fmt: skip
    facts = stabilise(net, next(iter(props.values())), seconds=60, neuron_seconds=1.0)
    proved = sum(int((f[0] >= 0).sum() + (f[1] <= 0).sum()) for f in facts.values())
    assert proved >= 5
    seen = _hidden_inputs(net, x)
    unstable = sum(int(((h > 0).any(0) & (h < 0).any(0)).sum()) for h in seen[1:])
    assert proved + unstable <= 2 * 24
    for t, prop in props.items():
        got = answer(net, prop, options=gr.verify.VerifyOptions(max_boxes=100_000, max_seconds=20), facts=facts)
        reach = bool((y[:, 1] - y[:, 0] - t >= 1e-5).any())
        if got.result == "unsat":
            assert not reach
        elif got.result == "sat":
            out = net(torch.as_tensor(got.x, dtype=torch.float32)[None]).detach().double()[0].numpy()
            assert out[1] - out[0] >= t - 1e-5
        assert got.result == ("sat" if reach else "unsat")


def test_engine_facts_only_tighten_and_are_used():
    """Facts intersect the engine's intervals: narrower intervals (the signs sampling sees) never loosen a
    margin's bound; a (deliberately false) fact moves it, so facts are not ignored; bad facts and budgets are
    refused by name."""
    d = 6
    net = _deep(d, 1)
    ops = capture(net, (d,))
    center = torch.zeros(2, d, dtype=torch.float64)
    radius = torch.full((2, d), 0.4, dtype=torch.float64)
    spec = torch.tensor([[[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]]], dtype=torch.float64).expand(2, -1, -1)
    acts = [i for i, op in enumerate(ops) if not op.linear]
    plain = BoundEngine(ops, 0, BoundOptions(alpha_intermediate=0)).margins(center, radius, spec).lower
    x = (torch.rand(20_000, d, dtype=torch.float64) * 2 - 1) * 0.4
    h = _hidden_inputs(net, x)[1]
    pos = (h > 0).all(0)
    lo = torch.where(pos, 0.0, -math.inf)
    true_fact = BoundEngine(ops, 0, BoundOptions(alpha_intermediate=0)).with_facts({acts[1]: (lo, torch.full_like(lo,
                                                                                    math.inf))})  # fmt: skip
    assert bool((true_fact.margins(center, radius, spec).lower >= plain - 1e-9).all())
    mixed = ((h > 0).any(0) & (h < 0).any(0)).nonzero().flatten()
    assert len(mixed)
    false_hi = torch.full((h.shape[1],), math.inf, dtype=torch.float64)
    false_hi[mixed] = 0.0  # "never positive": false, so the bound must change
    moved = (
        BoundEngine(ops, 0, BoundOptions(alpha_intermediate=0))
        .with_facts({acts[1]: (torch.full_like(false_hi, -math.inf), false_hi)})
        .margins(center, radius, spec)
        .lower
    )
    assert not torch.equal(moved, plain)
    engine = BoundEngine(ops, 0)
    with pytest.raises(GenrobustError, match="not one"):
        engine.with_facts({0: (lo, lo)})
    with pytest.raises(GenrobustError, match="empty"):
        engine.with_facts({acts[1]: (torch.ones_like(lo), torch.zeros_like(lo))})
    with pytest.raises(GenrobustError, match="activations"):
        gr.verify.LocalVerifier.for_model(net, (d,)).with_facts({5: (lo, lo)})
    box = VnnProperty(np.zeros(d), np.ones(d), [[Constraint(np.array([1.0, -1.0, 0.0]), 0.0)]])
    for bad in ({"seconds": 0.0}, {"seconds": math.nan}, {"seconds": 5.0, "neuron_seconds": -1.0}):
        with pytest.raises(GenrobustError, match="seconds > 0"):
            stabilise(net, box, **bad)


def test_an_operator_network_is_the_network_cut_before_a_layer():
    """A prefix of the captured operators runs forward like the network up to that layer and is captured back as
    those operators (the cut the stabilisation checks)."""
    net = _deep(5, 2)
    ops = capture(net, (5,))
    cut = OperatorNetwork(ops[:3])  # Dense, ReLU, Dense: the second layer's inputs
    x = torch.randn(7, 5)
    with torch.no_grad():
        want = net[2](net[1](net[0](x)))
    assert torch.allclose(cut(x), want, atol=1e-5) and cut(x).dtype == torch.float32
    assert capture(cut, (5,)) == ops[:3]
    with pytest.raises(GenrobustError, match="shape"):
        capture(cut, (4,))


def test_stabilised_facts_decide_a_competition_root_the_bounds_leave_open(mnist_fc):
    """mnist_fc 256×2 ``prop_4_0.03`` (unsat by ten tools): one bound on the whole box (no α on the hidden layers,
    CROWN's adaptive lower lines: the default's lines that lean to the flat piece prove it alone) leaves it open;
    with the second hidden layer's neurons proved stable first (247 of 256), the same one bound proves it."""
    from genrobust.models.onnx_import import import_onnx

    net = import_onnx(mnist_fc / "onnx" / "mnist-net_256x2.onnx")
    prop = parse_vnnlib((mnist_fc / "vnnlib" / "prop_4_0.03.vnnlib").read_text())
    one = gr.verify.VerifyOptions(bounds=BoundOptions(alpha_intermediate=0, lower_ratio=1.0), max_boxes=1,
                                  max_seconds=30)  # fmt: skip
    assert answer(net, prop, options=one, stabilise_hidden=False).result == "unknown"
    facts = stabilise(net, prop, seconds=600)  # ends when every candidate is tried: about 30 s on one thread
    assert set(facts) == {1} and int((facts[1][0] >= 0).sum() + (facts[1][1] <= 0).sum()) >= 200
    assert answer(net, prop, options=one, stabilise_hidden=False, facts=facts).result == "unsat"


def test_a_whole_box_started_from_given_bounds_answers_as_from_scratch():
    """``LocalVerifier.with_start``: a property's whole box bounded from the intervals and α of one earlier bound
    of the same box (the hidden layers refined once for many properties, as :func:`stabilise` does per layer)
    gives the answers the verifier gives from scratch, which agree with a dense sample; a (deliberately false)
    start moves the answer, so it is used; bad starts are refused by name."""
    from genrobust.verify.vnnlib import _box_chain

    d = 20
    net = _deep(d, 5)
    rng = np.random.default_rng(5)
    lo = rng.uniform(-1, 1, d)
    hi = lo + 0.3
    x = torch.as_tensor(lo + (hi - lo) * rng.random((50_000, d)), dtype=torch.float32)
    with torch.no_grad():
        y = net(x).double().numpy()
    opts = gr.verify.VerifyOptions(max_boxes=2_000, max_seconds=20, give_up=None, attack_first=False)
    _, chain, n = _box_chain(net, VnnProperty(lo, hi, [[Constraint(np.ones(3), 0.0)]]), (d,))
    engine = gr.verify.LocalVerifier.for_model(chain, (n,), options=opts).engine
    center = torch.zeros(1, n, dtype=torch.float64)
    radius = torch.nextafter(torch.ones(1, n, dtype=torch.float64), torch.tensor(math.inf, dtype=torch.float64))
    spec = torch.tensor([[[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [1.0, 0.0, -1.0]]], dtype=torch.float64)
    root = engine.margins(center, radius, spec)
    intervals = {i: (a[0], b[0]) for i, (a, b) in root.intervals.items()}
    decided = certified = 0
    for r, row in enumerate(spec[0].numpy()):
        seen = y @ row
        low, gap = float(root.lower[0, r]), float(seen.min() - root.lower[0, r])  # the true minimum lies between
        for t in (
            low + 0.1 * gap,
            low + 0.5 * gap,
            np.quantile(seen, 0.02),
        ):  # below every sampled value (unsat) or not
            rows = (  # unsafe: −row·y + t ≥ 0, i.e. row·y ≤ t
                torch.as_tensor(-row[None]),
                torch.tensor([float(t)]),
                torch.tensor([0]),
            )
            got = {}
            for name, start in (("scratch", None), ("start", (intervals, {i: a[0, r : r + 1] for i, a in
                                                                         (root.alpha or {}).items()}))):  # fmt: skip
                v = gr.verify.LocalVerifier.for_model(chain, (n,), options=opts).with_property(*rows)
                if start is not None:
                    v.with_start(*start)
                got[name] = int(v.run(torch.zeros(1, n), [0], [1.0]).status[0, 0])
            assert got["scratch"] == got["start"], (r, t)
            if got["start"] == gr.verify.CERTIFIED:  # sat answers are re-checked by the verifier itself
                assert not bool((y @ row <= t).any())
            decided += got["start"] != gr.verify.UNKNOWN
            certified += got["start"] == gr.verify.CERTIFIED
    assert decided >= 6 and certified >= 2
    hidden = max(intervals)
    false = dict(intervals)
    mid = (intervals[hidden][0] + intervals[hidden][1]) / 2  # every neuron pinned to one value: false, consistent
    false[hidden] = (mid, mid)
    row = spec[0, 0].numpy()
    t = float((y @ row).min()) + 0.5 * float(np.ptp(y @ row))  # met by many sampled points
    v = gr.verify.LocalVerifier.for_model(chain, (n,), options=gr.verify.VerifyOptions(max_boxes=1))
    v.with_property(torch.as_tensor(-row[None]), torch.tensor([t]), torch.tensor([0]))
    bound = v.engine.margins(center, radius, spec[:, :1]).lower
    v.with_start(false)
    assert not torch.equal(v.engine.margins(center, radius, spec[:, :1], **v._batch_args(
        [gr.verify.local._Box(0, center[0], radius[0])], [0])).lower, bound)  # fmt: skip
    with pytest.raises(GenrobustError, match="nonlinear"):
        v.with_start({0: intervals[hidden]})
    with pytest.raises(GenrobustError, match="lower ≤ upper"):
        v.with_start({hidden: (intervals[hidden][1] + 1, intervals[hidden][1])})
    with pytest.raises(GenrobustError, match="shaped"):
        v.with_start({hidden: (intervals[hidden][0][:3], intervals[hidden][1][:3])})


def _layer_rows(width: float, layers: int):
    """A 12-input net, a box of the given width, the network cut before its ``layers``-th operator (a hidden
    layer's inputs), that layer's values z at 50,000 sampled points (float64), and the box as a [−1, 1]^n chain."""
    from genrobust.verify.vnnlib import _box_chain

    d = 12
    net = _deep(d, 8)
    rng = np.random.default_rng(8)
    lo = rng.uniform(-1, 1, d)
    hi = lo + width
    prefix = OperatorNetwork(capture(net, (d,))[:layers])
    x = torch.as_tensor(lo + (hi - lo) * rng.random((50_000, d)), dtype=torch.float32)
    with torch.no_grad():
        z = prefix(x).double()
    _, chain, n = _box_chain(prefix, VnnProperty(lo, hi, [[Constraint(np.ones(z.shape[1]), 0.0)]]), (d,))
    return z, chain, n


def test_one_row_per_label_answers_each_row_as_its_own_property():
    """``LocalVerifier.with_rows``: balls of one box with labels 0..L−1 each check their own row (here: can a hidden
    neuron of the network cut before its layer reach the other sign?), all in one branch and bound; every
    certified row holds at a dense sample, every falsified one has a witness that meets its row, and each answer
    agrees with the same row checked alone as a property; rows and labels that do not fit are refused by name."""
    z, chain, n = _layer_rows(0.4, 3)  # the second hidden layer's inputs
    sign = torch.where(z.mean(0) >= 0, 1.0, -1.0).to(torch.float64)
    L = z.shape[1]
    coef = torch.zeros(L, L, dtype=torch.float64)
    coef[torch.arange(L), torch.arange(L)] = -sign  # unsafe: sign·z_j ≤ 0
    opts = gr.verify.VerifyOptions(max_boxes=5_000, max_seconds=10, give_up=None, attack_first=False)
    v = gr.verify.LocalVerifier.for_model(chain, (n,), options=opts).with_rows(coef, torch.zeros(L))
    res = v.run(torch.zeros(L, n), list(range(L)), [1.0])
    status = res.status[:, 0]
    assert int((status == gr.verify.CERTIFIED).sum()) >= 3 and int((status == gr.verify.FALSIFIED).sum()) >= 3
    for j in range(L):
        seen = sign[j] * z[:, j]
        if status[j] == gr.verify.CERTIFIED:
            assert bool((seen > 0).all()), j
        elif status[j] == gr.verify.FALSIFIED:
            with torch.no_grad():
                assert float(sign[j] * v.plain.net(res.witness[j, 0][None])[0, j]) <= 0
        alone = gr.verify.LocalVerifier.for_model(chain, (n,), options=opts)
        alone.with_property(coef[j : j + 1], torch.zeros(1), torch.zeros(1, dtype=torch.long))
        assert int(alone.run(torch.zeros(1, n), [0], [1.0]).status[0, 0]) == int(status[j]), j
    fresh = gr.verify.LocalVerifier.for_model(chain, (n,), options=opts)
    with pytest.raises(GenrobustError, match="rows need"):
        fresh.with_rows(coef[:, :3], torch.zeros(L))
    with pytest.raises(GenrobustError, match="NaN"):
        fresh.with_rows(coef * math.nan, torch.zeros(L))
    with pytest.raises(GenrobustError, match="labels must be"):
        v.run(torch.zeros(1, n), [L], [1.0])


def _narrow_box():
    """A 40-input net and a narrow box (width 0.15) on which some hidden neurons change sign: the net, the rng
    that drew the box (for the samples), the box and a property on it."""
    d = 40
    net = _deep(d, 3)
    rng = np.random.default_rng(3)
    lo = rng.uniform(-1, 1, d)
    hi = lo + 0.15
    return net, rng, lo, hi, VnnProperty(lo, hi, [[Constraint(np.array([1.0, -1.0, 0.0]), 0.0)]])


def test_tighten_narrows_the_intervals_of_neurons_that_change_sign():
    """``stabilise(tighten=True)``: neurons that do change sign on the box (sampling sees both) get a narrower
    interval than the bound of the whole box, and every narrowed interval holds at a dense sample."""
    net, rng, lo, hi, prop = _narrow_box()
    stats: list[dict] = []
    facts = stabilise(net, prop, seconds=60, neuron_seconds=1.0, stats=stats, tighten=True)
    assert sum(line.get("tightened", 0) for line in stats) >= 4
    assert all(0 <= line["proof_seconds"] <= line["seconds"] for line in stats)  # the sign proofs, then narrowing
    x = torch.as_tensor(lo + (hi - lo) * rng.random((50_000, len(lo))))
    seen = _hidden_inputs(net, x)
    narrowed = 0
    for k, (flo, fhi) in facts.items():
        assert bool((seen[k] >= flo).all() and (seen[k] <= fhi).all()), k
        both = (seen[k] > 0).any(0) & (seen[k] < 0).any(0)
        narrowed += int((both & (torch.isfinite(flo) | torch.isfinite(fhi))).sum())
    assert narrowed >= 2


def test_a_budgeted_search_bounds_each_row_soundly_and_better_than_its_root():
    """``LocalResult.bound``: rows whose question cannot be proved (sign·z_j ≥ just below its sampled least) end
    unknown, and the least bound over their leaves (boxes bounded lowest first) still holds at every sampled
    point, is at least the whole box's bound, and rises above it for most rows; certified rows' bounds are > 0."""
    z, chain, n = _layer_rows(1.0, 5)  # the third hidden layer's inputs
    L = z.shape[1]
    sign = torch.where(torch.arange(L) % 2 == 0, 1.0, -1.0).to(torch.float64)
    least = (sign * z).amin(0)
    coef = torch.zeros(L, L, dtype=torch.float64)
    coef[torch.arange(L), torch.arange(L)] = -sign  # unsafe: sign·z_j − target_j ≤ 0

    def search(boxes: int, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        opts = gr.verify.VerifyOptions(max_boxes=boxes, max_seconds=20, give_up=None, attack_first=False)
        v = gr.verify.LocalVerifier.for_model(chain, (n,), options=opts).with_rows(coef, target)
        res = v.run(torch.zeros(L, n), list(range(L)), [1.0])
        return res.status[:, 0], res.bound[:, 0]

    _, gap = search(1, least)  # the whole box's bound, below the sampled least
    assert bool((gap < 0).all())
    # halfway between the whole box's bound and the sampled least: beyond reach of 40 boxes; the first 4 are easy
    target = least + 0.5 * gap
    target[:4] = least[:4] - 10.0
    _, root = search(1, target)
    status, low = search(40, target)
    assert bool((status[:4] == gr.verify.CERTIFIED).all()) and bool((low[:4] > 0).all())
    open_rows = status == gr.verify.UNKNOWN
    assert int(open_rows.sum()) >= L // 4
    assert bool(torch.isfinite(low).all() and torch.isfinite(root).all())
    assert bool((low + target <= least).all())  # sound: sign·z_j ≥ low + target wherever it was sampled
    assert bool((low >= root - 1e-9).all())
    assert int((low[open_rows] > root[open_rows] + 1e-6).sum()) >= int(open_rows.sum()) // 2


def test_a_second_round_starts_from_the_first_rounds_facts():
    """``stabilise(facts=...)`` from an earlier round's facts (or a caller's): neurons stable by them are not proved
    again, every interval only narrows, all of them still hold at a dense sample, and the given facts are not
    changed."""
    net, rng, lo, hi, prop = _narrow_box()
    first_stats: list[dict] = []
    first = stabilise(net, prop, seconds=30, neuron_seconds=0.5, stats=first_stats, tighten=True)
    snapshot = {k: (flo.clone(), fhi.clone()) for k, (flo, fhi) in first.items()}
    stats: list[dict] = []
    second = stabilise(net, prop, seconds=30, neuron_seconds=0.5, stats=stats, facts=first, tighten=True)
    assert sum(line["known"] for line in stats) >= sum(line["proved"] for line in first_stats) > 0
    assert all(line["known"] == 0 for line in first_stats)
    x = torch.as_tensor(lo + (hi - lo) * rng.random((50_000, len(lo))))
    seen = _hidden_inputs(net, x)
    for k, (flo, fhi) in second.items():
        was_lo, was_hi = snapshot[k]
        assert bool((flo >= was_lo).all() and (fhi <= was_hi).all()), k
        assert bool((seen[k] >= flo).all() and (seen[k] <= fhi).all()), k
    for k, (flo, fhi) in first.items():  # the caller's facts are not changed
        assert torch.equal(flo, snapshot[k][0]) and torch.equal(fhi, snapshot[k][1])


def test_stabilise_spread_over_worker_processes_proves_what_one_process_proves(counted_pool):
    """``stabilise(workers=...)``: each layer's neuron proofs and narrowing run as shares on a pool of two spawned
    processes (every share really submitted there), prove per layer what one process proves when the budget
    lets every candidate finish, and every fact and narrowed interval holds at a dense sample."""
    net, rng, lo, hi, prop = _narrow_box()
    alone: list[dict] = []
    here = stabilise(net, prop, seconds=120, neuron_seconds=2.0, stats=alone, tighten=True)
    spread: list[dict] = []
    workers, counting = counted_pool
    facts = stabilise(net, prop, seconds=120, neuron_seconds=2.0, stats=spread, tighten=True, workers=workers)
    assert counting.calls >= 2 * len(spread)  # two shares of proofs (or of narrowing) per layer, at least
    assert [line["proved"] for line in spread] == [line["proved"] for line in alone]
    assert sum(line["proved"] for line in spread) >= 5 and set(facts) == set(here)
    x = torch.as_tensor(lo + (hi - lo) * rng.random((50_000, len(lo))))
    seen = _hidden_inputs(net, x)
    for k, (flo, fhi) in facts.items():
        assert bool((seen[k] >= flo).all() and (seen[k] <= fhi).all()), k
