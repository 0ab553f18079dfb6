"""The local check and the global robustness estimate: exact on a toy whose answer is known in closed form,
never contradicted by sampling or strong attacks on the built-in models, reproducible, clear on bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import genrobust as gr
from genrobust.bounds.capture import UnsupportedLayerError
from genrobust.estimate import latents
from genrobust.models.classifiers import ConvClassifier, ConvClassifierConfig
from genrobust.models.generators import GeneratorFamily, MLPGANConfig, MLPGenerator
from genrobust.stats import clopper_pearson
from genrobust.verify import CERTIFIED, FALSIFIED, UNKNOWN, LocalVerifier, VerifyOptions, verify_ball


def _linear_pair(seed: int):
    torch.manual_seed(seed)
    gen = nn.Sequential(nn.Linear(3, 8)).eval()
    clf = nn.Sequential(nn.Linear(8, 3)).eval()
    return gen, clf


def _exact_radius(gen, clf, z0: torch.Tensor, c: int) -> float:
    """min_j m_j(z0) / ‖∇m_j‖₁ for the affine margins m_j = logit_c − logit_j of C∘G (exact, float64)."""
    A, b = gen[0].weight.detach().double(), gen[0].bias.detach().double()
    W, w0 = clf[0].weight.detach().double(), clf[0].bias.detach().double()
    radii = []
    for j in range(3):
        if j != c:
            g = (W[c] - W[j]) @ A
            m = g @ z0.double() + (W[c] - W[j]) @ b + w0[c] - w0[j]
            radii.append(float(m / g.abs().sum()))
    return min(radii)


@pytest.mark.parametrize("seed", range(6))
def test_linear_toy_matches_the_closed_form(seed):
    gen, clf = _linear_pair(seed)
    v = LocalVerifier(clf, gen, latent_dim=3, options=VerifyOptions(max_boxes=4))
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))
    labels = nn.Sequential(gen, clf)(z).argmax(1)
    for i in range(5):
        r = _exact_radius(gen, clf, z[i], int(labels[i]))
        res = v.run(z[i : i + 1], labels[i : i + 1], [0.97 * r, 1.03 * r])
        assert res.status[0].tolist() == [CERTIFIED, FALSIFIED], (seed, i, r)
        w = res.witness[0, 1]
        assert float((w.double() - z[i].double()).abs().max()) <= 1.03 * r
        assert int(nn.Sequential(gen, clf)(w[None]).argmax()) != int(labels[i])
        assert 0.97 * r <= float(res.certified_radius[0]) and float(res.attack_radius[0]) <= 1.03 * r


@pytest.fixture(scope="module")
def builtin():
    return gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")


@pytest.mark.slow
def test_builtin_certificates_survive_sampling_and_strong_attacks(builtin):
    clf, gens = builtin
    z = latents(0, 8, 3, 10)
    labels = torch.full((3,), 8)
    v = LocalVerifier(clf, gens[8], latent_dim=10, options=VerifyOptions(max_boxes=4))
    res = v.run(z, labels, [0.003])
    assert (res.status[:, 0] == CERTIFIED).sum() >= 2
    model = nn.Sequential(gens[8], clf).eval()
    for i in torch.nonzero(res.status[:, 0] == CERTIFIED).flatten().tolist():
        s = torch.rand(3000, 10, generator=torch.Generator().manual_seed(i)) * 2 - 1
        s[:64] = torch.sign(s[:64])
        with torch.no_grad():
            assert (model(z[i] + 0.003 * s).argmax(1) == 8).all()
        lo, hi = gr.attacks.box_bounds(z[i : i + 1].repeat(8, 1), torch.full((8,), 0.003, dtype=torch.float64))
        found, _ = gr.attacks.pgd_in_boxes(model, torch.full((8,), 8), lo, hi, steps=60, restarts=8, seeds=range(8))
        assert not found.any()


def test_misclassified_centre_and_multi_eps_monotone(builtin):
    clf, gens = builtin
    z = latents(0, 8, 40, 10)
    pred = nn.Sequential(gens[8], clf)(z).argmax(1)
    wrong = int(torch.nonzero(pred != 8)[0])
    res = verify_ball(clf, gens[8], z[wrong], eps=[0.001, 0.5], label=8, options=VerifyOptions(max_boxes=1))
    assert res.status[0].tolist() == [FALSIFIED, FALSIFIED] and torch.equal(res.witness[0, 0], z[wrong])
    assert float(res.attack_radius[0]) == 0.0
    res = verify_ball(clf, gens[8], z[0], eps=[2.0, 0.002], options=VerifyOptions(max_boxes=2))
    assert res.eps == [0.002, 2.0]  # sorted
    assert res.status[0, 0] == CERTIFIED and res.status[0, 1] in (FALSIFIED, UNKNOWN)


def test_pixel_space_box_is_clipped_and_witnesses_stay_inside():
    clf = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():  # logits (x0, 1 − x0, 0.1): class 1 below x0 = 0.5, class 0 above
        clf[1].weight.zero_()
        clf[1].weight[0, 0], clf[1].weight[1, 0] = 1.0, -1.0
        clf[1].bias.copy_(torch.tensor([0.0, 1.0, 0.1]))
    clf.input_shape = (1, 2, 2)
    x = torch.tensor([[[0.3, 1.0], [0.0, 0.7]]])
    res = verify_ball(clf, None, x, eps=[0.19, 0.21, 5.0])
    assert res.labels.tolist() == [1]
    assert res.status[0].tolist() == [CERTIFIED, FALSIFIED, FALSIFIED]
    for e in (1, 2):  # witnesses lie in the box clipped to [0, 1], and cross x0 = 0.5
        w = res.witness[0, e]
        assert (w >= 0).all() and (w <= 1).all() and float((w - x.flatten()).abs().max()) <= res.eps[e]
        assert w[0] > 0.5 and int(res.witness_pred[0, e]) == 0


def test_attack_only_falsifies_what_the_attack_finds_and_certifies_nothing(monkeypatch):
    """``run(attack_only=True)`` (:func:`~genrobust.verify.vnnlib._by_disjunct` attacks before it bounds): the
    balls an attack breaks are falsified with re-checked witnesses, the rest stay unknown, and no bound runs."""
    clf = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():  # as above: class 1 below x0 = 0.5, class 0 above
        clf[1].weight.zero_()
        clf[1].weight[0, 0], clf[1].weight[1, 0] = 1.0, -1.0
        clf[1].bias.copy_(torch.tensor([0.0, 1.0, 0.1]))
    x = torch.tensor([[0.3, 1.0, 0.0, 0.7]])
    verifier = LocalVerifier(clf, None, input_shape=(1, 2, 2))

    def no_bounds(*args, **kwargs):
        raise AssertionError("attack_only ran a bound")

    monkeypatch.setattr(verifier.engine, "margins", no_bounds)
    res = verifier.run(x, [1], [0.19, 0.21], attack_only=True)
    assert res.status[0].tolist() == [UNKNOWN, FALSIFIED]  # 0.19 is robust: unknown, not certified
    w = res.witness[0, 1]
    assert w[0] > 0.5 and float((w - x[0]).abs().max()) <= 0.21 and int(res.witness_pred[0, 1]) == 0


def test_pgd_in_boxes_respects_unequal_widths():
    model = nn.Linear(2, 2).eval()
    with torch.no_grad():  # class 1 iff z0 > 1; the box reaches it only along dimension 0
        model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        model.bias.copy_(torch.tensor([0.0, -1.0]))
    lo, hi = torch.tensor([[0.5, -3.0], [0.0, -3.0]]), torch.tensor([[1.2, 3.0], [0.9, 3.0]])
    found, cand = gr.attacks.pgd_in_boxes(model, torch.tensor([0, 0]), lo, hi, seeds=[0, 1])
    assert found.tolist() == [True, False]
    assert (cand[0] >= lo[0]).all() and (cand[0] <= hi[0]).all() and cand[0, 0] > 1


def test_targeted_margins_find_what_the_leading_class_hides():
    """The falsifier's per-margin restarts: class 1 leads the other classes everywhere near the centre but never
    wins; class 2 wins only in one corner of four dimensions that class 1's gradient never moves. The
    untargeted search from uniform starts follows class 1 and fails; attacking the margin of class 2 finds the
    corner, and so do output-diversified starts (some climb class 2's logit first)."""
    model = nn.Linear(5, 3).eval()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0] * 5, [0.05, 0, 0, 0, 0], [0, 0.26, 0.26, 0.26, 0.26]]))
        model.bias.copy_(torch.tensor([0.0, -0.1, -1.0]))
    lo, hi = -torch.ones(4, 5), torch.ones(4, 5)
    y = torch.zeros(4, dtype=torch.long)
    found, _ = gr.attacks.pgd_in_boxes(model, y, lo, hi, seeds=range(4), odi_steps=0)
    assert not found.any()
    found, _ = gr.attacks.pgd_in_boxes(model, y, lo, hi, seeds=range(4))
    assert found.any()
    found, cand = gr.attacks.pgd_in_boxes(model, y, lo, hi, seeds=range(4), targets=torch.tensor([[1, 2]] * 4))
    assert found.all() and (model(cand).argmax(1) == 2).all() and (cand >= lo).all() and (cand <= hi).all()
    # more restarts than one batch of gradients (here 4 rows × 2 classes × 4 starts in batches of 5): each
    # restart keeps its own margin, and the batching changes nothing
    small, cand_small = gr.attacks.pgd_in_boxes(model, y, lo, hi, seeds=range(4), targets=torch.tensor([[1, 2]] * 4),
                                                batch_size=5)  # fmt: skip
    assert small.all() and torch.equal(cand_small, cand)


def test_exhausted_balls_attack_their_undecided_sub_boxes(builtin, monkeypatch):
    clf, gens = builtin
    import genrobust.verify.local as local

    seen = []
    real = local.pgd_in_boxes

    def spy(model, y, lo, hi, **kw):
        seen.append((lo.clone(), hi.clone()))
        return real(model, y, lo, hi, **kw)

    monkeypatch.setattr(local, "pgd_in_boxes", spy)
    z = latents(0, 8, 1, 10)
    # seconds enough that only the boxes decide: with another job running, 60 s stopped the ball after its first box
    # (α on the near misses, or the lower lines that lean to the flat piece, prove one of its two children: without
    # them both are left to attack)
    # (coordinate halvings: the parts checked below are narrower than the ball along some dimension)
    opts = VerifyOptions(max_boxes=3, leaf_attacks=4, give_up=None, max_seconds=600, near_alpha=0, oblique=False,
                         bounds=gr.BoundOptions(lower_ratio=1.0))  # fmt: skip
    v = LocalVerifier(clf, gens[8], latent_dim=10, options=opts)
    res = v.run(z, [8], [0.02])  # this ball stays undecided after 3 boxes (measured)
    assert res.status[0, 0] == UNKNOWN and int(res.boxes[0, 0]) == 3
    assert len(seen) == 2  # the sub-box attack first, then the whole ball's
    leaf_lo, leaf_hi = seen[0]
    assert 1 < len(leaf_lo) <= 4
    assert ((leaf_hi - leaf_lo) < 0.04 - 1e-6).any(dim=1).all()  # split boxes, not the whole ball
    assert (leaf_lo >= z - 0.02).all() and (leaf_hi <= z + 0.02).all()


def test_a_hopeless_ball_is_not_split(builtin):
    """``give_up``: a ball whose whole-box bound is far below zero (relative to its centre's margin) costs one
    bound computation and an attack, not its whole budget; a ball the rule spares is split as before."""
    clf, gens = builtin
    z = latents(0, 8, 1, 10)
    runs = {}
    for give_up in (None, 0.0, 1e6):
        # seconds enough that only the boxes decide (on a loaded machine 60 s once stopped the spared ball early)
        opts = VerifyOptions(max_boxes=3, give_up=give_up, max_seconds=600)
        v = LocalVerifier(clf, gens[8], latent_dim=10, options=opts)
        runs[give_up] = v.run(z, [8], [0.02])  # undecided after 3 boxes (see above): its root bound is < 0
    assert int(runs[0.0].boxes[0, 0]) == 1 and runs[0.0].status[0, 0] == UNKNOWN
    assert int(runs[None].boxes[0, 0]) == int(runs[1e6].boxes[0, 0]) == 3
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(gr.GenrobustError, match="give_up"):
            VerifyOptions(give_up=bad)


def test_bad_input_is_refused_clearly(builtin):
    clf, gens = builtin
    v = LocalVerifier(clf, gens[1], latent_dim=10, options=VerifyOptions(max_boxes=1))
    z = latents(0, 1, 2, 10)
    for bad in (0.0, -1.0, math.nan, math.inf, []):
        with pytest.raises(gr.GenrobustError, match="ε"):
            v.run(z, [1, 1], bad)
    with pytest.raises(gr.GenrobustError, match=r"shape \(N, 10\)"):
        v.run(torch.zeros(2, 9), [1, 1], 0.01)
    with pytest.raises(gr.GenrobustError, match="NaN"):
        v.run(torch.full((1, 10), math.nan), [1], 0.01)
    with pytest.raises(gr.GenrobustError, match="labels"):
        v.run(z, [1, 12], 0.01)
    with pytest.raises(gr.GenrobustError, match="split"):
        VerifyOptions(split="random")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(gr.GenrobustError, match="attack_step_size must be > 0"):
            VerifyOptions(attack_step_size=bad)
    with pytest.raises(UnsupportedLayerError, match="GELU"):
        LocalVerifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.GELU()), gens[1], latent_dim=10)
    with pytest.raises(gr.GenrobustError, match="different devices"):
        LocalVerifier(clf, nn.Linear(10, 784).to("meta"), latent_dim=10)
    broken = gr.load_classifier("mnist-small")
    with torch.no_grad():
        broken.head[0].weight[0, 0] = math.nan
    with pytest.raises(gr.GenrobustError, match="NaN"):
        LocalVerifier(broken, gens[1], latent_dim=10)


def _tiny_family_and_classifier():
    torch.manual_seed(0)
    cfg = MLPGANConfig(latent_dim=4, hidden=(16,), image_size=28, num_classes=10)
    fam = GeneratorFamily(per_class=[MLPGenerator(cfg) for _ in range(10)])
    clf = ConvClassifier(ConvClassifierConfig(a=2, b=2, c=8)).eval()
    with torch.no_grad():  # class 0 robustly everywhere: class 0's balls are certified, every other's falsified
        clf.head[-1].bias[0] = 20.0
    return clf, fam


def test_global_robustness_statistics_centres_and_chunking():
    clf, fam = _tiny_family_and_classifier()
    kw = dict(eps=[0.001, 0.05], n=12, classes=[0, 3], options=VerifyOptions(max_boxes=2))
    a = gr.global_robustness(clf, fam, chunk=5, seed=3, **kw)
    b = gr.global_robustness(clf, fam, chunk=12, seed=3, **kw)
    for c in (0, 3):
        assert torch.equal(a.local[c].status, b.local[c].status)  # chunking changes nothing
        assert torch.equal(a.local[c].centers, latents(3, c, 12, 4))  # the correctness estimator's centres
    for cls in a.classes:
        for r in cls.per_eps:
            assert r.certified + r.falsified + r.unknown == r.n == 12
            assert r.lower == pytest.approx(clopper_pearson(r.certified, 12, 0.95)[0])
            assert r.upper == pytest.approx(clopper_pearson(12 - r.falsified, 12, 0.95)[1])
            assert r.lower <= r.upper
        assert cls.per_eps[0].certified == (12 if cls.cls == 0 else 0)
        assert cls.per_eps[0].falsified == (0 if cls.cls == 0 else 12)
        # monotone in ε: certified shrinks, falsified grows
        assert cls.per_eps[0].certified >= cls.per_eps[1].certified
        assert cls.per_eps[0].falsified <= cls.per_eps[1].falsified
    d = a.to_dict()
    assert d["kind"] == "robustness" and d["format_version"] == 2 and set(d["verdicts"]) == {"0.001", "0.05"}
    assert "class" in a.table()
    with pytest.raises(gr.GenrobustError, match="was not checked"):
        a.verdict(0.2)


def test_sequential_stops_early_when_the_answer_is_clear():
    clf, fam = _tiny_family_and_classifier()
    res = gr.global_robustness(clf, fam, eps=[0.01], n=400, classes=[0, 3], sequential=True, chunk=20,
                               options=VerifyOptions(max_boxes=1))  # fmt: skip
    robust, broken = res.classes[0].per_eps[0], res.classes[1].per_eps[0]
    assert robust.verdict == "holds" and robust.n < 400 and robust.decided_at == robust.n
    assert broken.verdict == "fails" and broken.n < 400 and robust.certified == robust.n


def test_global_robustness_refuses_bad_arguments(builtin):
    clf, gens = builtin
    for kw, msg in ((dict(n=0), "n must"), (dict(delta=1.5), "delta"), (dict(seed=-1), "seed"),
                    (dict(classes=[]), "classes"), (dict(classes=[10]), "out of range"),
                    (dict(n=5, start=5), "start must be in 0..n"), (dict(start=-1), "start must be"),
                    (dict(start=2, sequential=True), "sequential run starts at the first centre")):  # fmt: skip
        with pytest.raises(gr.GenrobustError, match=msg):
            gr.global_robustness(clf, gens, **{"eps": 0.01, **kw})


def test_the_latent_ball_is_rounded_outward():
    """The root box holds every real point of B(z, ε), not only the float64 ones."""
    from fractions import Fraction

    gen, clf = _linear_pair(0)
    v = LocalVerifier(clf, gen, latent_dim=3)
    z = torch.randn(1, 3, generator=torch.Generator().manual_seed(3))
    for eps in (0.1, 0.03, 1e-7):
        lo, hi = v._ball(z, eps)
        for zi, a, b in zip(z[0].double().tolist(), lo[0].tolist(), hi[0].tolist(), strict=True):
            assert Fraction(a) <= Fraction(zi) - Fraction(eps) and Fraction(b) >= Fraction(zi) + Fraction(eps)


def _bump() -> nn.Module:
    """1-D input, class 0 everywhere but a bump of class 1 at distance 0.041–0.059 from 0."""
    l1, l2 = nn.Linear(1, 3), nn.Linear(3, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.ones(3, 1))
        l1.bias.copy_(torch.tensor([-0.041, -0.05, -0.059]))
        l2.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 1.0]]))
        l2.bias.copy_(torch.tensor([1e-6, 0.0]))
    return nn.Sequential(l1, nn.ReLU(), l2)


def test_a_whole_network_is_built_by_the_one_constructor_and_its_boxes_are_not_clipped():
    """``for_model`` is ``LocalVerifier(model, None, input_shape=…, pixel_range=None)``: the same chain and answers,
    boxes not clipped to a pixel range (the bump's inputs are negative too), and the caller's model untouched."""
    net = _bump().train()
    flags = [m.training for m in net.modules()]
    a = LocalVerifier.for_model(net, (1,))
    b = LocalVerifier(net, None, input_shape=(1,), pixel_range=None)
    assert not a.pixel and not b.pixel and [type(op) for op in a.engine.ops] == [type(op) for op in b.engine.ops]
    z = torch.tensor([[-0.5], [0.0], [0.05]])
    ra, rb = a.run(z, [0, 0, 1], [0.001]), b.run(z, [0, 0, 1], [0.001])
    assert torch.equal(ra.status, rb.status) and (ra.status[:2, 0] == CERTIFIED).all()
    lo, _ = a._ball(z[:1].double(), 0.1)
    assert float(lo[0, 0]) < -0.5  # no clipping at 0
    assert [m.training for m in net.modules()] == flags and all(p.requires_grad for p in net.parameters())
    with pytest.raises(gr.GenrobustError, match="a whole network needs its input_shape"):
        LocalVerifier(net, None, pixel_range=None)


def test_a_witness_falsifies_every_checked_eps_whose_ball_holds_it(monkeypatch):
    """A witness found at a larger ε that lies within a smaller one falsifies that one too (the smaller ε's
    own attack may miss it): on the bump, with a one-step attack, statuses and attack radii agree. (The attack
    is made weak on purpose, uniform starts and one short step, so that it finds the bump for some balls and
    ε only.)"""
    import functools

    import genrobust.verify.local as local

    monkeypatch.setattr(local, "pgd_in_boxes", functools.partial(gr.attacks.pgd_in_boxes, step_size=2.5, odi_steps=0))
    opts = VerifyOptions(max_boxes=1, attack_steps=1, attack_restarts=2, leaf_attacks=0, give_up=None)
    v = LocalVerifier.for_model(_bump(), (1,), options=opts)
    eps = [0.06 + 0.0001 * k for k in range(10)]
    res = v.run(torch.zeros(100, 1), [0] * 100, eps, seed=0)
    radius = res.attack_radius
    for e, value in enumerate(eps):
        inside = radius <= value  # a witness within this ε
        assert (res.status[inside, e] == FALSIFIED).all()
    assert (res.status == FALSIFIED).any()


def test_a_witness_inside_a_certified_box_is_reported_not_hidden(monkeypatch):
    """Were a certificate ever contradicted by a float32 witness found at a larger ε, the run says so (here the
    branch and bound is replaced by one that certifies everything, to force the contradiction)."""

    def certify_all(self, run, balls, e):
        for i in balls:
            run.status[i, e] = CERTIFIED

    monkeypatch.setattr(LocalVerifier, "_branch_and_bound", certify_all)
    opts = VerifyOptions(max_boxes=1, attack_steps=20, attack_restarts=16, leaf_attacks=0, give_up=None)
    v = LocalVerifier.for_model(_bump(), (1,), options=opts)
    with pytest.warns(gr.GenrobustWarning, match="float32 counterexample lies in the box certified at ε = 0.06"):
        res = v.run(torch.zeros(4, 1), [0] * 4, [0.06, 0.07], seed=0)
    assert (res.status[:, 0] == CERTIFIED).all() and (res.status[:, 1] == FALSIFIED).any()


def test_the_seconds_budget_is_kept_not_overrun(builtin, monkeypatch):
    """A ball splits only while its two children still fit in ``max_seconds`` at its cost per box so far (once,
    the check came after the fact and balls overran a 10 s budget by up to 5 s). A fake clock makes every bound
    cost 1 s per box, so the test says what is decided, not how fast this machine is."""
    import types

    import genrobust.verify.local as local

    clf, gens = builtin
    clock = [0.0]
    monkeypatch.setattr(local, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    z = latents(0, 8, 1, 10)
    v = LocalVerifier(
        clf,
        gens[8],
        latent_dim=10,
        options=VerifyOptions(max_boxes=64, max_seconds=3.5, give_up=None, leaf_attacks=0, oblique=False),
    )  # fmt: skip  (an oblique cut certifies this ball in 3)
    real = v.engine.margins

    def costly(center, *args, **kw):
        clock[0] += len(center)  # 1 s per box
        return real(center, *args, **kw)

    monkeypatch.setattr(v.engine, "margins", costly)
    res = v.run(z, [8], [0.02])  # undecided after 3 boxes (see above)
    assert res.status[0, 0] == UNKNOWN and int(res.boxes[0, 0]) == 3  # 1 + 2 children = 3 s; 2 more would be 5
    assert float(res.seconds[0]) <= 3.5


def test_with_a_pool_of_seconds_a_hopeless_ball_is_attacked_first_and_split_last(builtin, monkeypatch):
    """``mean_seconds`` turns the give-up rule into an order: the hopeless-looking ball is attacked at once, and
    its children are bounded once no other ball waits, as far as the pool allows (fake clock: 1 s per box)."""
    import types

    import genrobust.verify.local as local

    clf, gens = builtin
    clock = [0.0]
    monkeypatch.setattr(local, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    z = latents(0, 8, 1, 10)
    runs = {}
    for pool in (None, 3.0):
        opts = VerifyOptions(max_boxes=64, max_seconds=100, give_up=0.0, mean_seconds=pool, leaf_attacks=2)
        v = LocalVerifier(clf, gens[8], latent_dim=10, options=opts)
        real, events = v.engine.margins, []

        def costly(center, *args, real=real, events=events, **kw):
            clock[0] += len(center)
            events.append("bound")
            return real(center, *args, **kw)

        real_attack = v._attack_leaves

        def attack(leaves, *args, real_attack=real_attack, events=events):
            events.append("attack")
            return real_attack(leaves, *args)

        monkeypatch.setattr(v.engine, "margins", costly)
        monkeypatch.setattr(v, "_attack_leaves", attack)
        runs[pool] = (v.run(z, [8], [0.02]), events)
    res, events = runs[None]  # no pool: one bound, an attack, unknown (the rule as a stop)
    assert int(res.boxes[0, 0]) == 1 and events == ["bound", "attack"] and res.status[0, 0] == UNKNOWN
    res, events = runs[3.0]  # a pool of 3 s: the root (1 s), the attack, then both children (2 s)
    assert int(res.boxes[0, 0]) == 3 and events[:3] == ["bound", "attack", "bound"]
    assert float(res.seconds[0]) <= 3.0
    with pytest.raises(gr.GenrobustError, match="mean_seconds"):
        VerifyOptions(mean_seconds=0.0)


def test_relu_branching_decides_what_bounds_alone_leave_open_and_never_wrongly():
    """Branch and bound on the classifier's ReLUs (β-CROWN's splits) in pixel space, where halving 16 input
    dimensions is the slow way: at ε = 0.15 (α-CROWN alone certifies
    every ball at 0.1) it certifies every ball that bounds alone leave open, with fewer boxes than input
    splitting; ``auto`` (per box, whichever split the margins' pass rates higher) does too; no certified ball
    holds a sampled or attacked counterexample."""
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    clf = clf.eval()
    x = torch.rand(30, 16)
    labels = clf(x).argmax(1)
    runs = {}
    for name, opts in (("bounds", VerifyOptions(max_boxes=1)),
                       ("relu", VerifyOptions(branch="relu", max_boxes=200, give_up=None)),
                       ("latent", VerifyOptions(branch="latent", max_boxes=200, give_up=None)),
                       ("auto", VerifyOptions(branch="auto", max_boxes=200, give_up=None))):  # fmt: skip
        runs[name] = LocalVerifier(clf, None, input_shape=(1, 4, 4), options=opts).run(x, labels, [0.15])
    open_before = runs["bounds"].status[:, 0] == UNKNOWN
    assert int(open_before.sum()) >= 5
    for name in ("relu", "auto"):
        assert (runs[name].status[:, 0] == CERTIFIED).all(), name
    assert int(runs["relu"].boxes.sum()) < int(runs["latent"].boxes.sum())
    g = torch.Generator().manual_seed(1)
    for i in torch.nonzero(open_before).flatten().tolist():
        s = (x[i] + 0.15 * (torch.rand(20_000, 16, generator=g) * 2 - 1)).clamp(0, 1)
        assert (clf(s).argmax(1) == labels[i]).all()
        lo, hi = (x[i] - 0.15).clamp(0, 1)[None], (x[i] + 0.15).clamp(0, 1)[None]
        found, _ = gr.attacks.pgd_in_boxes(clf, labels[i : i + 1], lo, hi, steps=100, restarts=16, seeds=[i])
        assert not found.any()
    with pytest.raises(gr.GenrobustError, match="branching"):
        VerifyOptions(branch="neurons")
    with pytest.raises(gr.GenrobustError, match="beta_steps"):
        VerifyOptions(beta_steps=-1)


def _twin_relus() -> tuple[nn.Module, nn.Module]:
    """C∘G whose margin is 1 + 2·z0 + 3·(relu(z1) − relu(z1)): the identity as generator, a classifier whose two
    copies of relu(z1) cancel exactly but not in a linear relaxation (one copy's lower line, the other's upper
    line), while the margin's linear part leans on z0."""
    gen = nn.Sequential(nn.Linear(2, 2))
    clf = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        gen[0].weight.copy_(torch.eye(2))
        gen[0].bias.zero_()
        clf[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
        clf[0].bias.copy_(torch.tensor([10.0, 0.0, 0.0]))  # the first neuron is always active
        clf[2].weight.copy_(torch.tensor([[2.0, 3.0, -3.0], [0.0, 0.0, 0.0]]))
        clf[2].bias.copy_(torch.tensor([1.0 - 20.0, 0.0]))
    return gen.eval(), clf.eval()


def test_the_unstable_split_halves_the_dimension_that_moves_unstable_neurons():
    """``split="unstable"`` (the default) halves the latent dimension that spans most of the unstable ReLUs'
    intervals, not the one the margin's linear part leans on (``"gap"``). On the twin-ReLU toy the whole box
    (ε = 0.3) bounds the margin by 1 − 0.6 − 0.9 < 0 (the true minimum is 0.4): halving z1 makes both ReLUs
    stable and certifies both halves (3 boxes); halving z0 first leaves the worse half's bound where it was."""
    gen, clf = _twin_relus()
    z = torch.zeros(1, 2)
    assert VerifyOptions().split == "unstable"
    runs = {}
    for split in ("unstable", "cost", "gap"):  # "cost": the same shares, weighed by their intercepts' cost
        v = LocalVerifier(clf, gen, latent_dim=2, options=VerifyOptions(max_boxes=3, give_up=None, split=split))
        runs[split] = v.run(z, [0], [0.3])
        if split == "unstable":
            mb = v.engine.margins(z.double(), torch.full((1, 2), 0.3, dtype=torch.float64), v._spec(torch.tensor([0])))
            reach = v._reach(z.double(), torch.full((1, 2), 0.3, dtype=torch.float64), mb.intervals,
                             torch.ones(1, dtype=torch.bool))  # fmt: skip
            assert float(reach[0, 0]) == 0.0 and float(reach[0, 1]) > 0.0  # z0 moves only a stable neuron
            assert float(mb.lower.min()) < 0 and abs(float(mb.coef[0, 0, 0])) > abs(float(mb.coef[0, 0, 1]))
    for split in ("unstable", "cost"):
        assert runs[split].status[0, 0] == CERTIFIED and int(runs[split].boxes[0, 0]) == 3
    assert runs["gap"].status[0, 0] == UNKNOWN


def test_the_cost_split_weighs_neurons_without_bounding_them_as_relu_candidates():
    """``split="cost"`` asks the margins' pass for the worst margin's costliest neurons (up to 4,096) to weigh
    the latent split; they must not reach FSB's choice among ReLU candidates, which bounds both children of each
    (on the built-in models that was a 24 GB round). Many unstable ReLUs here, so the pass returns many."""
    torch.manual_seed(2)
    gen = nn.Sequential(nn.Linear(3, 8)).eval()
    clf = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).eval()
    v = LocalVerifier(clf, gen, latent_dim=3, options=VerifyOptions(max_boxes=9, give_up=None, split="cost"))
    z = torch.zeros(1, 3)
    label = int(clf(gen(z)).argmax())
    mb = v.engine.margins(z.double(), torch.ones(1, 3, dtype=torch.float64), v._spec(torch.tensor([label])),
                          branch=64)  # fmt: skip
    assert int((mb.branch[0][0] >= 0).sum()) > 2  # several candidates the guard must keep from FSB
    v.engine.split_bounds = None  # calling it fails the test
    res = v.run(z, [label], [0.5])
    assert res.status[0, 0] == CERTIFIED and int(res.boxes[0, 0]) > 1  # split by latent halves, and certified


def test_a_pool_of_seconds_sets_a_roots_cost_aside_for_the_balls_still_waiting_and_shares_the_rest():
    """With a pool, the balls whose whole box still waits get the mean root's cost from it, and what is left goes
    to the balls being split: at the start of a run most balls end at their root, and an equal share for all of
    them would stop the first ball split after its root with much of the pool unspent."""
    from genrobust.verify.local import _Search

    seconds = torch.tensor([2.5, 2.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    search = _Search(seconds, 30.0, 25.0, [], {}, {}, root_costs=[2.5, 2.5])
    # ball 1 is split, ball 0 certified, balls 2–4 wait for their root: 25 − 5 − 3 × 2.5 = 12.5 for ball 1
    assert search.limit(1, competing=1, pending=3) == pytest.approx(2.5 + 12.5)
    assert search.limit(1, competing=2, pending=3) == pytest.approx(2.5 + 6.25)
    assert search.limit(1, competing=1, pending=0) == pytest.approx(2.5 + 20.0)  # nothing waits: all of it
    assert search.limit(1, competing=1, pending=10) == pytest.approx(2.5)  # the roots take it all: nothing more
    assert _Search(seconds, 4.0, 25.0, [], {}, {}).limit(1, 1, 0) == 4.0  # the ball's own budget still caps it
    assert _Search(seconds, 4.0, None, [], {}, {}).limit(1, 1, 3) == 4.0  # no pool: the ball's budget alone


def test_with_a_pool_the_first_ball_split_gets_its_children_while_the_others_wait_for_their_root(builtin, monkeypatch):
    """Through a run (fake clock: 1 s per box, a pool of 2 s a ball): ball 0 of class 8 needs splitting at ε = 0.02,
    balls 1 and 2 certify at their root. Its children fit the pool once the two waiting roots are set aside (6 − 1 −
    2 × 1 = 3 s left, two children cost 2); an equal share of the three balls (5/3 s) would have stopped it at its
    root."""
    import types

    import genrobust.verify.local as local

    clf, gens = builtin
    clock = [0.0]
    monkeypatch.setattr(local, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    opts = VerifyOptions(max_boxes=64, max_seconds=100, give_up=None, mean_seconds=2.0, batch_boxes=1, leaf_attacks=0)
    v = LocalVerifier(clf, gens[8], latent_dim=10, options=opts)
    real = v.engine.margins

    def costly(center, *args, **kw):
        clock[0] += len(center)
        return real(center, *args, **kw)

    monkeypatch.setattr(v.engine, "margins", costly)
    res = v.run(latents(0, 8, 3, 10), [8, 8, 8], [0.02])
    assert res.status[1:, 0].tolist() == [CERTIFIED, CERTIFIED] and res.boxes[1:, 0].tolist() == [1, 1]
    assert int(res.boxes[0, 0]) > 1  # the split ball's children were bounded
    assert float(res.seconds.sum()) <= 6.0 + 1e-9  # and the pool was kept


def _four_twin_pairs() -> tuple[nn.Module, nn.Module]:
    """C∘G on a 4-dimensional latent whose margin is 1 + Σ_k 3·(relu(z_k) − relu(z_k)) ≡ 1: each pair cancels
    exactly but costs a linear relaxation 3·r_k·... (0.9 at half-width 0.3) until z_k's interval excludes 0. So at
    ε = 0.3 around 0 the whole box is bounded by 1 − 3.6, and a box is certified exactly when at least three of
    the four dimensions have been halved: depth 3 for every leaf."""
    gen = nn.Sequential(nn.Linear(4, 4))
    clf = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        gen[0].weight.copy_(torch.eye(4))
        gen[0].bias.zero_()
        clf[0].weight.copy_(torch.eye(4).repeat_interleave(2, 0))
        clf[0].bias.zero_()
        clf[2].weight.copy_(torch.tensor([[3.0, -3.0] * 4, [0.0] * 8]))
        clf[2].bias.copy_(torch.tensor([1.0, 0.0]))
    return gen.eval(), clf.eval()


def test_a_split_makes_as_many_halvings_at_once_as_its_bound_needs(monkeypatch):
    """``fan``: the boxes between a whole box and the leaves that certify cost as much as a leaf and decide
    nothing, so an undecided box is cut into 2^h parts at once, h predicted from its gap m − b against the centre's
    margin m (a factor ``FAN_RHO`` per halving, or the ball's own once measured). On the four-pairs toy the leaves
    certify at depth 3: split in two box by box that is 1 + 2 + 4 + 8 = 15 bounds, fanned out 1 + 8 = 9, the
    same certificate. Every fan is an exact partition of its box."""
    from genrobust.verify import local

    gen, clf = _four_twin_pairs()
    z = torch.zeros(1, 4)
    made: list[list] = []
    real = LocalVerifier._children

    def spy(self, *args, **kwargs):
        kids = real(self, *args, **kwargs)
        made.append(kids)
        return kids

    monkeypatch.setattr(LocalVerifier, "_children", spy)
    runs = {}
    for fan in (1, 3):
        made.clear()
        v = LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(max_boxes=64, give_up=None, fan=fan))
        mb = v.engine.margins(z.double(), torch.full((1, 4), 0.3, dtype=torch.float64), v._spec(torch.tensor([0])))
        assert float(mb.lower.min()) == pytest.approx(1 - 3.6, abs=1e-6)
        runs[fan] = v.run(z, [0], [0.3])
        assert runs[fan].status[0, 0] == CERTIFIED
        if fan == 3:
            assert [len(k) for k in made] == [8]  # one fan of 8 from the whole box, whose leaves all certify
            lo, hi = (t[0] for t in v._ball(z, 0.3))  # the whole box (z ± ε rounded outwards)
            kids = made[0]
            assert all(bool((k.lo >= lo).all() and (k.hi <= hi).all()) for k in kids)
            assert sum(float((k.hi - k.lo).prod()) for k in kids) == pytest.approx(float((hi - lo).prod()), rel=1e-12)
            for a, b in itertools.combinations(kids, 2):  # interiors apart: some dimension where they only touch
                assert bool(((a.hi <= b.lo) | (b.hi <= a.lo)).any())
            halved = torch.stack([(k.hi - k.lo) < (hi - lo) for k in kids])
            assert bool((halved.sum(1) == 3).all())  # three distinct dimensions halved in every part
            assert {k.levels for k in kids} == {3}
    assert int(runs[1].boxes[0, 0]) == 15 and int(runs[3].boxes[0, 0]) == 9
    assert runs[3].options["fan"] == 3 and "fan" not in runs[1].options

    # the prediction: log(gap / m) / log(1 / ρ), rounded up (less a slack), capped by ``fan``
    v = LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(fan=3))
    root = local._Box(0, torch.zeros(4), torch.ones(4))
    rho = local.FAN_RHO
    assert v._fan_levels(root, -5.0, 10.0) == 1  # gap 15: log 1.5 / log(1/ρ) < 1
    assert v._fan_levels(root, -10.0, 10.0) == math.ceil(math.log(2) / math.log(1 / rho) - local.FAN_SLACK) == 2
    assert v._fan_levels(root, -200.0, 10.0) == 3  # capped
    assert v._fan_levels(root, 5.0, 10.0) == 1  # not below the margin: nothing to predict
    assert v._fan_levels(root, -10.0, -1.0) == 1  # a misclassified centre
    # the ball's own factor once a box has a parent: (30 / 50)^(1/2) per halving after two halvings
    child = local._Box(0, torch.zeros(4), torch.ones(4), bound=-40.0, levels=2)
    own_rho = (30 / 50) ** 0.5
    wide = LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(fan=6))
    assert wide._fan_levels(child, -20.0, 10.0) == math.ceil(math.log(3) / math.log(1 / own_rho) - local.FAN_SLACK)
    assert wide._fan_levels(child, -20.0, 10.0) > wide._fan_levels(root, -20.0, 10.0)  # this ball shrinks slower
    assert LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(fan=1))._fan_levels(root, -200.0, 10.0) == 1
    for bad in (0, local.MAX_FAN + 1):
        with pytest.raises(gr.GenrobustError, match="fan must be between 1 and"):
            VerifyOptions(fan=bad)


def test_deferred_parts_go_on_only_if_all_of_them_fit_in_the_balls_seconds():
    """A hopeless-looking ball's parts wait until no other ball does; then they go on only if every one of them
    fits in the ball's seconds at its last box's cost (a fan leaves 2^h of them, not two)."""
    from genrobust.verify.local import _Box, _Search

    def search(n_parts: int) -> _Search:
        s = _Search(torch.zeros(1, dtype=torch.float64), 5.0, None, [], {0: n_parts}, {0: 1.0})
        s.later = [_Box(0, torch.zeros(2), torch.ones(2), bound=-3.0) for _ in range(n_parts)]
        return s

    four, eight = search(4), search(8)
    assert len(four.next_batch(2)) == 2 and 0 not in four.done  # 4 × 1 s fit in 5 s
    assert eight.next_batch(2) == [] and 0 in eight.done and eight.low[0] == -3.0  # 8 × 1 s do not: leaves


def test_deferred_balls_go_on_one_at_a_time_the_most_promising_first():
    """With a pool, the deferred (hopeless-looking) balls go on once no other ball waits, one at a time and the
    highest whole-box bound over its margin first, with what the pool has left; a ball whose parts no longer fit
    in it ends. An equal share of the pool among them held none's first fan (stop 67)."""
    from genrobust.verify.local import _Box, _Search

    seconds = torch.tensor([2.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    # a pool of 30 s, 8 spent: 22 left; four deferred balls with 4 parts each at 2 s (8 s each)
    s = _Search(seconds, 60.0, 30.0, [], dict.fromkeys(range(4), 4), dict.fromkeys(range(4), 2.0))
    s.later = [_Box(b, torch.zeros(2), torch.ones(2), bound=-5.0 * (b + 1)) for b in range(4) for _ in range(4)]
    s.promise = {0: -9.0, 1: -4.0, 2: -30.0, 3: -6.0}
    batch = s.next_batch(2)
    assert [x.ball for x in batch] == [1, 1] and not s.done  # ball 1 (−4 × its margin) first, alone
    assert {x.ball for x in s.later} == {0, 2, 3} and {x.ball for x in s.queue} == {1}
    s.next_batch(2)  # ball 1's last two parts
    s.done.add(1)
    seconds[1] += 10.0  # ball 1 took 10 s: 12 left, one fan of 8 s fits
    assert {x.ball for x in s.next_batch(2)} == {3} and s.done == {1}  # then ball 3 (−6)
    s.next_batch(2)
    s.done.add(3)
    seconds[3] += 5.0  # 7 s left: no fan of 8 s fits any more, and the last two balls end as leaves
    assert s.next_batch(2) == [] and s.done == {0, 1, 2, 3} and s.low[0] == -5.0 and s.low[2] == -15.0


def test_a_balls_boxes_are_bounded_together_before_another_balls():
    """A batch's seconds are shared equally among its boxes, so a split ball's part bounded beside another ball's
    whole box would pay half of that root. A batch takes the first open box's ball's boxes first, then others in
    queue order; a decided ball's boxes become leaves."""
    from genrobust.verify.local import _Box, _Search

    s = _Search(torch.zeros(3, dtype=torch.float64), 5.0, None, [], {0: 3, 1: 1, 2: 1}, {0: 1.0, 1: 1.0, 2: 1.0})
    a1, root, a2, gone, a3 = (_Box(b, torch.zeros(2), torch.ones(2), bound=-float(k)) for k, b in
                              enumerate((0, 1, 0, 2, 0)))  # fmt: skip
    s.queue = [a1, root, a2, gone, a3]
    s.done.add(2)
    ids = lambda batch: [id(x) for x in batch]  # noqa: E731
    assert ids(s.next_batch(2)) == ids([a1, a2])  # ball 0's parts together, not a1 beside ball 1's root
    assert 2 in s.low and s.low[2] == -3.0  # ball 2 was decided: its box is a leaf, not bounded
    assert ids(s.next_batch(2)) == ids([root, a3])  # ball 1 has one box: the batch is filled in queue order
    assert s.next_batch(2) == []


def test_near_misses_get_alpha_on_their_margins_and_others_do_not(monkeypatch):
    """``near_alpha``: α-CROWN on the margins closes a share of a box's gap, so it is spent only on the boxes the
    plain bound leaves short of a proof by at most ``near_share`` × the centre's margin. On the four-pairs toy
    (margin exactly 1, plain bound 1 − 12ε, the best slopes 1 − 6ε) the ε = 0.09 box is such a near miss (−0.08):
    α proves it whole, where without it the box is split (1 + 2 bounds). At ε = 0.3 (−2.6) the whole box is not
    tuned, and the search is the plain one."""
    from genrobust.bounds.engine import BoundEngine

    gen, clf = _four_twin_pairs()
    z = torch.zeros(1, 4)
    tuned: list[int] = []
    real = BoundEngine._optimise_alpha

    def spy(self, rows, relax, forms_at, box_at, absmax, stop, lower, coef, start, splits=None, steps=None, *a, **k):
        tuned.append(int((steps > 0).sum()) if steps is not None else len(lower))
        return real(self, rows, relax, forms_at, box_at, absmax, stop, lower, coef, start, splits, steps, *a, **k)

    monkeypatch.setattr(BoundEngine, "_optimise_alpha", spy)
    runs = {}
    for near in (0, 5):
        v = LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(max_boxes=64, give_up=None, near_alpha=near))
        mb = v.engine.margins(z.double(), torch.full((1, 4), 0.09, dtype=torch.float64), v._spec(torch.tensor([0])))
        assert float(mb.lower.min()) == pytest.approx(1 - 12 * 0.09, abs=1e-6)  # a near miss: −0.08 of margin 1
        runs[near] = v.run(z, [0], [0.09])
        assert runs[near].status[0, 0] == CERTIFIED
    assert int(runs[0].boxes[0, 0]) == 3 and int(runs[5].boxes[0, 0]) == 1
    assert runs[5].options["near_alpha"] == 5 and "near_alpha" not in runs[0].options
    tuned.clear()
    far = LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(max_boxes=64, give_up=None)).run(z, [0], [0.3])
    plain = LocalVerifier(clf, gen, latent_dim=4, options=VerifyOptions(max_boxes=64, give_up=None, near_alpha=0))
    assert far.status[0, 0] == CERTIFIED
    # the whole box (−2.6) is far from a proof: α is asked for only once, for the fan's eight parts (near misses
    # or proofs already: those it skips), and the search is the plain one
    assert tuned == [8] and int(far.boxes[0, 0]) == int(plain.run(z, [0], [0.3]).boxes[0, 0]) == 9
    # the engine's gate alone: α only where the plain bound reaches ``tune_above``
    center, radius = torch.zeros(2, 4, dtype=torch.float64), torch.full((2, 4), 0.09, dtype=torch.float64)
    spec = plain._spec(torch.tensor([0, 0]))
    gated = plain.engine.margins(center, radius, spec, steps=torch.tensor([5, 5]),
                                 tune_above=torch.tensor([-0.15, -0.05], dtype=torch.float64))  # fmt: skip
    assert float(gated.lower[0].min()) > 0 > float(gated.lower[1].min())  # tuned, and left plain (−0.08 < −0.05)
    for bad in ({"near_alpha": -1}, {"near_share": 0.0}, {"near_share": math.inf}):
        with pytest.raises(gr.GenrobustError, match="near_alpha must be"):
            VerifyOptions(**bad)


def test_oblique_parts_cover_their_domain_each_in_the_box_that_bounds_it():
    """An oblique split's parts: every point of the cut box (a box and its half-spaces) lies in some part (its
    half-spaces and its box), every part's points lie in its narrowed box, and the cuts run across the top
    eigenvectors of the directions given; a box is cut so only where the top direction holds enough of them."""
    from genrobust.verify.local import OBLIQUE_SHARE, _top_share, oblique_parts

    # cut only where one direction holds the weight: a rank-one moment is all top direction, an isotropic one 1/d
    u = torch.tensor([[1.0, 2.0, 0.0, -1.0]], dtype=torch.float64)
    assert _top_share(u.T @ u) == pytest.approx(1.0) and _top_share(torch.eye(4, dtype=torch.float64)) == 0.25
    assert _top_share(torch.zeros(4, 4, dtype=torch.float64)) == 0.0 < 0.25 < OBLIQUE_SHARE < 1.0
    with pytest.raises(gr.GenrobustError, match="oblique must be True or False"):
        VerifyOptions(oblique="no")  # a string would be truthy

    g = torch.Generator().manual_seed(3)
    lo = torch.tensor([-1.0, 0.0, 2.0, -0.5], dtype=torch.float64)
    hi = lo + torch.tensor([2.0, 0.5, 1.0, 1.0], dtype=torch.float64)
    planes = torch.tensor([[1.0, -1.0, 0.5, 0.0, -0.4]], dtype=torch.float64)  # z0 − z1 + z2/2 ≥ −0.4
    M = torch.randn(4, 4, dtype=torch.float64, generator=g)
    parts = oblique_parts(lo, hi, planes, M @ M.T, 2)
    # one plane per cut, and the box's own where the part does not imply it (dropping it only widens a domain)
    assert len(parts) == 4 and all(len(q) in (2, 3) for _, _, q in parts)
    z = lo + (hi - lo) * torch.rand(20_000, 4, dtype=torch.float64, generator=g)

    def holds(q, pts):
        return ((pts @ q[:, :-1].T) >= q[:, -1]).all(1)

    z = z[holds(planes, z)]
    covered = torch.zeros(len(z), dtype=torch.bool)
    for a, b, q in parts:
        mine = holds(q, z)
        assert bool(((z[mine] >= a) & (z[mine] <= b)).all())  # the part's box bounds it
        assert bool((a >= lo).all() and (b <= hi).all())
        covered |= mine
        assert 0 < int(mine.sum()) < len(z)  # through the middle: every part holds some of the domain
    assert bool(covered.all())
    top = torch.linalg.eigh(M @ M.T)[1][:, -1] / ((hi - lo) / 2)  # the first cut's normal over z
    first = parts[0][2][-2, :-1]
    assert abs(float(first @ top) / float(first.norm() * top.norm())) == pytest.approx(1.0)


def test_an_oblique_cut_falls_inside_a_part_cut_across_nearly_the_same_direction_before():
    """A part of ball (0, 43) of the built-in models at ε = 0.05 (stop 71's verifier), cut five times across nearly
    the same direction: the multipliers' coordinate ascent put the least p·z at −3.63 where it is −2.85, the next
    cut through the middle of that range fell on the part's edge, and the part's child was the part again, four
    times over. The cut now goes through the middle of the exact range (a linear program: any cut is sound), so
    both sides hold about half of it, and the half-spaces the others imply are dropped."""
    from genrobust.bounds.planes import drop_implied, lp_range
    from genrobust.verify.local import oblique_parts

    # fmt: off
    lo = torch.tensor([
        -0.7436957836151125, 0.31428806185722347, 2.3530621051788327, -1.5239668369293216, -0.09696360677480698,
        -0.4408167183399201, 0.20508025288581846, 1.4563301324844358, 1.3879693269729612, 1.0047666549682615,
    ], dtype=torch.float64)
    hi = torch.tensor([
        -0.6436957836151121, 0.41428806185722356, 2.4530621051788333, -1.4739668369293213, -0.04696360677480697,
        -0.34081671833992, 0.3050802528858185, 1.5563301324844363, 1.4879693269729617, 1.104766654968262,
    ], dtype=torch.float64)
    planes = torch.tensor([
        [-7.228623760965753, 5.25025214200818, 3.4227144923833137, 10.540248542888676, 7.745975098549256,
         -3.601364803049648, -3.3916851090497704, 3.082245426896997, -6.891458313087798, 7.476905511099162,
         2.0268967900522323],
        [9.31292163766541, -6.854929426529136, -3.872715256080181, -12.767479207639129, -9.673586899600982,
         4.273339687324844, 4.22409628141566, -3.429340333957494, 7.993200342080544, -8.682094168761495,
         -3.3228041953152623],
        [9.426316424379815, -6.7421609726308, -3.9664897854278336, -12.826876973471068, -9.835907280192485,
         4.272427708798352, 4.108873585695448, -3.3758798097570346, 7.946935447146856, -8.657337551363037,
         -2.725643683081027],
        [9.446670503051052, -6.6998013397775384, -4.006469275715059, -12.82403614488399, -9.903782475552019,
         4.274475650721011, 4.087998997773695, -3.3650231677813203, 7.9351531402029085, -8.655239199027381,
         -2.826876546167836],
        [9.461621612101721, -6.6724060029205505, -4.023774799268058, -12.835323780512242, -9.927449322044664,
         4.284975102786117, 4.050786569199897, -3.361059344075271, 7.939861892231375, -8.650606572690387,
         -2.8507363377085304]], dtype=torch.float64)
    # fmt: on
    kept = drop_implied(lo, hi, planes)
    assert 1 <= len(kept) < len(planes)  # the second plane is implied by the later, tighter ones
    v = planes[-1, :-1] * (hi - lo) / 2  # the last cut's direction over the box's coordinates
    # the part as the verifier holds it, with all five half-spaces: stop 71's cut fell on its edge (a share of 0)
    parts = oblique_parts(lo, hi, planes, torch.outer(v, v), 1)
    assert len(parts) == 2
    p = parts[0][2][-1, :-1]  # this cut's normal over z
    low, high = lp_range(lo, hi, planes, p)
    for a, b, q in parts:
        assert len(q) <= len(kept) + 1  # the implied half-spaces are gone, the cut is there
        side = lp_range(a, b, q, p)  # each side's range along the cut: about half of the part's
        assert side is not None and 0.4 < (side[1] - side[0]) / (high - low) < 0.6
        assert bool((a >= lo).all() and (b <= hi).all())


def test_an_oblique_cut_bounds_a_built_in_balls_parts_far_tighter_than_a_halving(builtin):
    """Version 14's split: on ball (0, 36) of the built-in models at ε = 0.05 the open neurons' latent coefficients
    share one direction, and the two parts of a cut across it are bounded far tighter than the two halves of the
    coordinate the ``unstable`` rule picks (docs/verify-complete.md, stop 70: −5.7 against −34.0 from the whole
    box's −67.6); neither bound is contradicted by sampled latents of the ball."""
    clf, gens = builtin
    z = latents(0, 0, 37, gens.latent_dim)[36:37]
    least = {}
    for oblique in (True, False):
        opts = VerifyOptions(max_boxes=3, fan=1, give_up=None, near_alpha=0, oblique=oblique, max_seconds=600)
        r = LocalVerifier(clf, gens[0], latent_dim=gens.latent_dim, options=opts).run(z, [0], [0.05])
        assert int(r.boxes[0, 0]) == 3 and r.status[0, 0] == UNKNOWN
        least[oblique] = float(r.bound[0, 0])
    assert least[True] > -10.0 and least[False] < -20.0
    s = z + 0.05 * (2 * torch.rand(4000, gens.latent_dim, generator=torch.Generator().manual_seed(0)) - 1)
    with torch.no_grad():
        logits = clf(gens[0](s)).double()
    margins = logits[:, :1] - logits[:, 1:]
    assert float(margins.min()) > least[True]
