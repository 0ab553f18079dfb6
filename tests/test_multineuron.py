"""Multi-neuron relaxations of ReLU pairs (:mod:`genrobust.bounds.multineuron`): every facet holds at every point of
its octagon, whatever its shape; bounds that carry the facets (in the margins and in the hidden layers' rows)
stay below every sampled margin and are tighter than the single-neuron relaxation on a real competition network;
branch and bound with them answers as without them."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrobust.bounds.cuts import Cuts, NeuronPairs
from genrobust.bounds.multineuron import octagon_rows, pair_cuts, pair_facets
from genrobust.errors import GenrobustError
from genrobust.verify import VerifyOptions
from genrobust.verify.local import LocalVerifier

SHARED = Path(__file__).resolve().parents[2] / "shared" / "vnncomp" / "mnist_fc"


@settings(max_examples=60, deadline=None)
@given(
    c=st.lists(st.floats(-1, 1), min_size=2, max_size=2),
    m=st.lists(st.floats(-2, 2), min_size=4, max_size=4),
    slack=st.floats(0, 0.5),
)
def test_every_facet_holds_on_its_octagon(c, m, slack):
    """x = c + M·t, t ∈ [−1, 1]²: the intervals and octagon bounds of x are exact (or loosened by ``slack``); each
    facet's a·(x, ReLU x) ≤ d holds at 2,000 sampled t, the square's corners and the points where a coordinate of x
    is 0 (the hull's kinks)."""
    c, M = np.array(c), np.array(m).reshape(2, 2)
    rad = np.abs(M).sum(1)
    lo, hi = c - rad - slack, c + rad + slack
    rows = octagon_rows(2, np.array([[0, 1]]))
    octa = rows @ c - np.abs(rows @ M).sum(1) - slack
    facets = pair_facets(lo, hi, octa)
    t = np.random.default_rng(0).uniform(-1, 1, (2000, 2))
    t = np.vstack([t, list(itertools.product((-1, 1), repeat=2))])
    x = c + t @ M.T
    for i in (0, 1):  # points of the square where x_i = 0 (along an edge t_j = ±1), if any
        for j, s in itertools.product((0, 1), (-1.0, 1.0)):
            k = 1 - j
            if abs(M[i, k]) > 1e-9:
                tk = -(c[i] + M[i, j] * s) / M[i, k]
                if -1 <= tk <= 1:
                    tt = np.zeros(2)
                    tt[j], tt[k] = s, tk
                    x = np.vstack([x, c + M @ tt])
    v = np.hstack([x, np.maximum(x, 0)])
    for a, d in facets:
        assert (v @ a <= d + 1e-9 * (1 + np.abs(v) @ np.abs(a))).all(), (a, d, float((v @ a - d).max()))


def test_facets_cut_what_two_triangles_allow():
    """Two correlated neurons (|x_a − x_b| ≤ 0.1 on [−1, 1]²): the product of their triangles allows y_a = 0.5
    with y_b = 0 at x = 0, but the pair's ReLUs differ by at most 0.1 anywhere; some facet cuts that point off."""
    facets = pair_facets(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), np.array([-2.0, -2.0, -0.1, -0.1]))
    assert facets
    point = np.array([0.0, 0.0, 0.5, 0.0])
    assert max(float(a @ point - d) for a, d in facets) > 0.1


def _mlp(seed: int, d: int = 4, width: int = 8, depth: int = 3, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    layers: list[torch.nn.Module] = []
    n = d
    for _ in range(depth):
        lin = torch.nn.Linear(n, width)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, n, generator=g) / n**0.5)
            lin.bias.copy_(torch.randn(width, generator=g) * 0.1)
        layers += [lin, torch.nn.ReLU()]
        n = width
    out = torch.nn.Linear(n, classes)
    with torch.no_grad():
        out.weight.copy_(torch.randn(classes, n, generator=g) / n**0.5)
    return torch.nn.Sequential(*layers, out).eval()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), steps=st.sampled_from([0, 8, 30]))
def test_bounds_with_pair_facets_hold_on_sampled_points(seed, steps):
    """Random ReLU MLPs, a box around a random point: the facets of every unstable pair of every layer, carried
    by the margins (``steps`` of α/β/γ) and by the hidden layers' α-CROWN rows (``refine_cuts``), give bounds
    below the margins of 5,000 sampled points and corners; the tighter intervals too hold every sample."""
    net = _mlp(seed)
    ver = LocalVerifier.for_model(net, (4,))
    eng = ver.engine
    g = torch.Generator().manual_seed(seed)
    center = torch.randn(1, 4, dtype=torch.float64, generator=g)
    radius = torch.full((1, 4), 0.6, dtype=torch.float64)
    spec = ver._spec(torch.tensor([0]))
    root = eng.margins(center, radius, spec)
    neurons = {k: torch.nonzero(((lo < 0) & (hi > 0))[0].flatten()).flatten().tolist()
               for k, (lo, hi) in root.intervals.items()}  # fmt: skip
    cuts = pair_cuts(eng, center, radius, root.intervals, neurons)
    if cuts is None:
        return
    res = eng.margins(center, radius, spec, parent=root.intervals, steps=torch.tensor([steps]), cuts=cuts,
                      refine_cuts=True)  # fmt: skip
    s = torch.rand(5000, 4, dtype=torch.float64, generator=g) * 2 - 1
    s = torch.cat([s, torch.tensor(list(itertools.product((-1.0, 1.0), repeat=4)), dtype=torch.float64)])
    z = center + radius * s
    with torch.no_grad():
        logits = net.double()(z)
        h, pre = z, {}
        for i, op in enumerate(eng.ops):
            if i in res.intervals:
                pre[i] = h
            h = op.forward(h)
    margins = logits @ spec[0].T
    assert (margins >= res.lower - 1e-9).all(), float((res.lower - margins).max())
    for i, (lo, hi) in res.intervals.items():
        assert (pre[i] >= lo - 1e-9).all() and (pre[i] <= hi + 1e-9).all()


def test_pool_errors_and_concat():
    """A pool refuses pairs on a non-ReLU op, of the wrong shape, NaN coefficients, columns outside the pool;
    joining pools keeps each constraint's column; ``only_ops`` drops the columns of other ops."""
    net = _mlp(0)
    eng = LocalVerifier.for_model(net, (4,)).engine
    relu = next(k for k, op in enumerate(eng.ops) if op.name == "ReLU")
    ok = NeuronPairs(torch.tensor([[0, 1]]), torch.ones(1, 4, dtype=torch.float64), torch.tensor([0]), (8,))
    one = Cuts({}, torch.tensor([1.0], dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool), {relu: ok})
    one.check_ops(eng.ops)
    with pytest.raises(GenrobustError, match="not a ReLU"):
        Cuts({}, one.const, one.mask, {relu - 1: ok}).check_ops(eng.ops)
    with pytest.raises(GenrobustError, match="do not fit"):
        Cuts({}, one.const, one.mask, {relu: NeuronPairs(ok.index, ok.coef, ok.cut, (9,))}).check_ops(eng.ops)
    with pytest.raises(GenrobustError, match="NaN"):
        Cuts({}, one.const, one.mask, {relu: NeuronPairs(ok.index, ok.coef * np.nan, ok.cut, (8,))})
    with pytest.raises(GenrobustError, match="outside the pool"):
        Cuts({}, one.const, one.mask, {relu: NeuronPairs(ok.index, ok.coef, torch.tensor([3]), (8,))})
    two = Cuts.concat([None, one, one])
    assert len(two) == 2 and two.pairs[relu].cut.tolist() == [0, 1]
    assert two.only_ops([relu]) is two and two.only_ops([relu + 2]) is None
    with pytest.raises(GenrobustError, match="gamma"):
        eng.margins(torch.zeros(1, 4), torch.ones(1, 4), torch.ones(1, 2, 3), cuts=one,
                    gamma=torch.zeros(1, 2, 5))  # fmt: skip
    with pytest.raises(GenrobustError, match="pair_neurons"):
        VerifyOptions(pair_neurons=-1)


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/vnncomp/mnist_fc")
def test_pairs_tighten_a_competition_root_and_bab_answers_the_same():
    """mnist_fc 256×4 `prop_0_0.05` (unsat, open here): the facets of the root's 32 costliest neurons' pairs lift
    its worst margin past what α (20 steps) reaches alone (−2.33; with the facets about −1.9), and branch and
    bound with them (``verify-vnnlib --pair-neurons``) answers the 256×2 `prop_6_0.03` instance as the competition
    did; a negative count is refused."""
    from click.testing import CliRunner

    from genrobust.cli import main
    from genrobust.models.onnx_import import import_onnx
    from genrobust.verify.vnnlib import _box_chain, parse_vnnlib

    torch.manual_seed(0)
    prop = parse_vnnlib((SHARED / "vnnlib" / "prop_0_0.05.vnnlib").read_text())
    model = import_onnx(SHARED / "onnx" / "mnist-net_256x4.onnx")
    _, chain, d = _box_chain(model, prop, (1, 28, 28))
    ver = LocalVerifier.for_model(chain, (d,))
    eng = ver.engine
    spec = ver._spec(torch.tensor([prop.robustness_label()]))
    c, r = torch.zeros(1, d, dtype=torch.float64), torch.ones(1, d, dtype=torch.float64)
    root = eng.margins(c, r, spec, branch=32)
    steps = torch.tensor([20])
    alpha = float(eng.margins(c, r, spec, steps=steps).lower.min())
    chosen: dict[int, list[int]] = {}
    for op, n in zip(root.branch[0][0].tolist(), root.branch[1][0].tolist(), strict=True):
        chosen.setdefault(op, []).append(n)
    cuts = pair_cuts(eng, c, r, root.intervals, chosen)
    assert cuts is not None and len(cuts) > 500
    tight = float(eng.margins(c, r, spec, steps=steps, cuts=cuts).lower.min())
    assert tight > alpha + 0.2, (alpha, tight)
    assert tight < 0  # unsat, but not from the root alone

    net2, prop6 = SHARED / "onnx" / "mnist-net_256x2.onnx", SHARED / "vnnlib" / "prop_6_0.03.vnnlib"
    args = ["verify-vnnlib", str(net2), str(prop6), "--max-seconds", "60", "--pair-neurons", "16"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and res.output.strip() == "unsat", res.output
    bad = CliRunner().invoke(main, [*args[:3], "--pair-neurons", "-1"])
    assert bad.exit_code != 0 and "--pair-neurons" in bad.output


def test_branch_and_bound_with_pairs_carries_the_multipliers_and_stays_sound(monkeypatch):
    """ReLU branch and bound with ``pair_neurons`` on random MLPs and wide boxes: children start from their
    parent's γ (the engine is handed a start), and every ball it certifies has no sampled point of another
    class among 20,000 (corners included); the answers agree with branch and bound without pairs where both
    decide."""
    starts = []
    real = LocalVerifier.__dict__["_bound"]

    def spy(self, run, batch, *args, **kw):
        starts.append(any(item.gamma is not None for item in batch))
        return real(self, run, batch, *args, **kw)

    monkeypatch.setattr(LocalVerifier, "_bound", spy)
    for seed in range(6):
        net = _mlp(seed, d=4, width=12, depth=3)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(1, 4, generator=g)
        label = int(net(z).argmax(1))
        eps = 0.35
        got = {}
        for pairs in (0, 8):
            opts = VerifyOptions(branch="relu", pair_neurons=pairs, max_boxes=200, max_seconds=60, give_up=None)
            got[pairs] = int(LocalVerifier.for_model(net, (4,), options=opts).run(z, [label], [eps]).status[0, 0])
        s = torch.rand(20_000, 4, generator=g) * 2 - 1
        s = torch.cat([s, torch.tensor(list(itertools.product((-1.0, 1.0), repeat=4)))])
        with torch.no_grad():
            robust = bool((net(z + eps * s).argmax(1) == label).all())
        if got[8] == 1:
            assert robust
        if got[0] != 0 and got[8] != 0:
            assert got[0] == got[8]
    assert any(starts)
