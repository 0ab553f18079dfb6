"""Cutting planes over ReLU activation patterns (:mod:`genrobust.bounds.cuts`) and β's scaling: bounds with any
cuts and any multipliers hold on every sampled point that satisfies the cuts; a cut that forbids a side of a
neuron tightens the bound; branch and bound with inferred cuts answers as without them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genrobust as gr
from genrobust.bounds.capture import capture
from genrobust.bounds.cuts import Cuts, cut_from_splits
from genrobust.bounds.engine import BoundEngine, BoundOptions
from genrobust.bounds.ops import ReLU
from test_bounds import _margin_spec, _random_pair


def _pair(seed: int):
    gen, clf, d = _random_pair([seed, 3, 10], "ReLU", "ReLU", "none", 1, 1, False, False, True, 2)
    gen_ops = capture(gen, (d,))
    return d, gen_ops + capture(clf, (2, 6, 6)), len(gen_ops)


def _patterns(ops, cut_ops, z: torch.Tensor):
    """Each latent's margins' logits and its activation indicators (input > 0) at the ops ``cut_ops``."""
    h, out = z, {}
    with torch.no_grad():
        for i, op in enumerate(ops):
            if i in cut_ops:
                out[i] = (h > 0).double().reshape(len(z), -1)
            h = op.forward(h)
    return h, out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_cuts=st.integers(1, 4), lr=st.sampled_from([0.25, 2.0]))
def test_bounds_with_any_cuts_hold_where_the_cuts_do(seed, n_cuts, lr):
    """Random cuts (2–3 unstable neurons of the convolution's and the dense head's ReLUs, random signs, d from
    |S+| − 1 up) on random boxes, optimised multipliers: every sampled latent whose activation pattern meets
    its box's cuts has margins above the bound (the bound says nothing of the others)."""
    d, ops, anchor = _pair(seed)
    engine = BoundEngine(ops, anchor, BoundOptions(alpha_steps=6, alpha_lr=lr, refine_limit=1.0))
    g = torch.Generator().manual_seed(seed)
    B = 2
    center = torch.randn(B, d, dtype=torch.float64, generator=g)
    radius = torch.full((B, d), 0.3, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([0, 2]), 3)
    root = engine.margins(center, radius, spec)
    relus = [k for k in range(anchor, len(ops)) if type(ops[k]) is ReLU]
    coef = {k: torch.zeros(n_cuts, *ops[k].in_shape, dtype=torch.float64) for k in relus}
    const = torch.zeros(n_cuts, dtype=torch.float64)
    for c in range(n_cuts):
        for k in relus:
            lo, hi = root.intervals[k]
            unstable = torch.nonzero(((lo < 0) & (hi > 0))[c % B].flatten()).flatten()
            pick = unstable[torch.randperm(len(unstable), generator=g)[: 1 + c % 2]]
            coef[k][c].view(-1)[pick] = torch.randint(0, 2, (len(pick),), generator=g).double() * 2 - 1
        positive = sum(int((coef[k][c] > 0).sum()) for k in relus)
        const[c] = positive - 1 + int(torch.randint(0, 2, (1,), generator=g))
    mask = torch.rand(B, n_cuts, generator=g) < 0.8
    res = engine.margins(center, radius, spec, cuts=Cuts(coef, const, mask))
    z = (center + radius * (torch.rand(4000, B, d, dtype=torch.float64, generator=g) * 2 - 1)).reshape(-1, d)
    logits, pattern = _patterns(ops, relus, z)
    lhs = sum(pattern[k] @ coef[k].reshape(n_cuts, -1).T for k in relus).reshape(4000, B, n_cuts)
    holds = ((lhs <= const) | ~mask[None]).all(2)  # (samples, B)
    margins = torch.einsum("bmk,nbk->nbm", spec, logits.reshape(4000, B, 3))
    ok = (margins >= res.lower[None]) | ~holds[:, :, None]
    assert ok.all(), float((res.lower[None] - margins)[~ok].max())


def test_a_cut_that_forbids_a_side_of_a_neuron_tightens_the_bound_and_beta_scales_with_the_width():
    """On a random pair whose best branching neuron's inactive side is empty (PGD's least input is 0.0085 > 0
    while its interval reaches −0.0022), the cut z ≤ 0 (the active side forbidden, i.e. the inactive domain)
    lifts the worst margin from −0.13 above 0; the inactive split's bound, with β optimised as β times the
    neuron's interval width, certifies both margins in 20 steps where β itself is still below −0.1."""
    d, ops, anchor = _pair(7)
    g = torch.Generator().manual_seed(7)
    center = torch.randn(1, d, dtype=torch.float64, generator=g)
    radius = torch.full((1, d), 0.4, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([1]), 3)
    # (the instance was chosen with the rows stopped at the image; to the latent the root bound is another)
    engine = BoundEngine(ops, anchor, BoundOptions(alpha_steps=20, refine_limit=1.0, refine_to_latent=False))
    root = engine.margins(center, radius, spec, branch=True)
    k, n = int(root.branch[0][0, 0]), int(root.branch[1][0, 0])
    q = torch.zeros(1, *ops[k].in_shape, dtype=torch.float64)
    q.view(-1)[n] = 1.0
    cut = Cuts({k: q}, torch.zeros(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool))
    assert float(root.lower.min()) < -0.1
    assert float(engine.margins(center, radius, spec, cuts=cut).lower.min()) > 0
    split = {k: torch.zeros(1, *ops[k].in_shape, dtype=torch.int8)}
    split[k].view(-1)[n] = -1
    scaled = engine.margins(center, radius, spec, splits=split).lower
    plain = BoundEngine(ops, anchor, BoundOptions(alpha_steps=20, refine_limit=1.0, beta_per_width=False,
                                                  refine_to_latent=False))  # fmt: skip
    assert float(scaled.min()) > 0 > -0.1 > float(plain.margins(center, radius, spec, splits=split).lower.min())


def test_cuts_refuse_what_they_cannot_carry():
    """Cuts on a non-ReLU op, a mask of the wrong shape, NaN coefficients: one-line errors; a split domain gives
    the cut of its signs, none without splits."""
    d, ops, anchor = _pair(0)
    engine = BoundEngine(ops, anchor, BoundOptions(alpha_steps=2))
    center, radius = torch.zeros(1, d, dtype=torch.float64), torch.full((1, d), 0.1, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([0]), 3)
    relu = next(k for k in range(anchor, len(ops)) if type(ops[k]) is ReLU)
    q = torch.zeros(1, *ops[relu].in_shape, dtype=torch.float64)
    one = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(gr.GenrobustError, match="not a ReLU"):
        engine.margins(center, radius, spec, cuts=Cuts({relu - 1: q}, one, torch.ones(1, 1, dtype=torch.bool)))
    with pytest.raises(gr.GenrobustError, match="mask row per box"):
        engine.margins(center, radius, spec, cuts=Cuts({relu: q}, one, torch.ones(2, 1, dtype=torch.bool)))
    with pytest.raises(gr.GenrobustError, match="mask of shape"):
        Cuts({relu: q}, one, torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(gr.GenrobustError, match="NaN"):
        Cuts({relu: q * float("nan")}, one, torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(gr.GenrobustError, match="cuts and pair_neurons must be"):
        gr.verify.VerifyOptions(cuts=-1)
    marks = torch.tensor([[1, 0], [-1, 1]], dtype=torch.int8)
    coef, bound = cut_from_splits({relu: marks})
    assert bound == 1.0 and coef[relu].tolist() == [[1.0, 0.0], [-1.0, 1.0]]
    assert cut_from_splits({relu: torch.zeros(2, 2, dtype=torch.int8)}) is None


def test_branch_and_bound_with_inferred_cuts_answers_as_without(mnist_fc, monkeypatch):
    """A competition instance decided by ReLU branch and bound (256×2 ``prop_8_0.03``, plain bounds): with
    inferred cuts the answer is the same, cuts are made from the proved domains, and some are strengthened and
    carried by other boxes."""
    from genrobust.models.onnx_import import import_onnx
    from genrobust.verify import local
    from genrobust.verify.vnnlib import answer, parse_vnnlib

    net = import_onnx(mnist_fc / "onnx" / "mnist-net_256x2.onnx")
    prop = parse_vnnlib((mnist_fc / "vnnlib" / "prop_8_0.03.vnnlib").read_text())
    plain = BoundOptions(alpha_intermediate=0)
    seen = {"cuts": 0, "held": 0}
    made = local._batch_cuts

    def spy(batch, pools, ops, device):
        seen["cuts"] = max(seen["cuts"], sum(len(p) for p in pools.values()))
        out = made(batch, pools, ops, device)
        seen["held"] += 0 if out is None else int(out.mask.sum())
        return out

    monkeypatch.setattr(local, "_batch_cuts", spy)
    opts = gr.verify.VerifyOptions(bounds=plain, max_boxes=2000, max_seconds=60, cuts=32)
    assert answer(net, prop, options=opts).result == "unsat"
    assert seen["cuts"] > 0


def test_a_batch_carries_the_cuts_its_boxes_hold():
    """A ball's cut is carried by that ball's boxes inside the cut's latent box, unless a box's own split already
    meets it (a literal of the opposite sign); other balls' boxes and boxes outside carry nothing."""
    from genrobust.bounds.ops import Dense
    from genrobust.verify.local import _batch_cuts, _Box, _Search

    ops = [Dense(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), (3,)), ReLU((3,))]
    lo, hi = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    search = _Search(torch.zeros(2, dtype=torch.float64), 10.0, None, [], {}, {})
    search.add_cut(_Box(0, lo, hi, splits={1: torch.tensor([1, -1, 0], dtype=torch.int8)}), keep=4)
    half = hi.clone()
    half[0] = 0.5
    boxes = [
        _Box(0, lo, half, splits={1: torch.tensor([0, 0, 1], dtype=torch.int8)}),  # inside, agrees: holds
        _Box(0, lo, half, splits={1: torch.tensor([-1, 0, 0], dtype=torch.int8)}),  # its split meets the cut
        _Box(1, lo, half),  # another ball
        _Box(0, lo - 1, hi),  # outside the cut's box
    ]
    cuts = _batch_cuts(boxes, search.cuts, ops, torch.device("cpu"))
    assert cuts is not None and cuts.mask[:, 0].tolist() == [True, False, False, False]
    assert cuts.coef[1].tolist() == [[1.0, -1.0, 0.0]] and cuts.const.tolist() == [0.0]
    assert _batch_cuts(boxes[1:], search.cuts, ops, torch.device("cpu")) is None
