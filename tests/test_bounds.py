"""The bound engine: sound on every sampled point of random networks (hypothesis), exact where it must be,
and clear about what it cannot bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import genrobust as gr
from genrobust.bounds.capture import ACTIVATION_BUILDERS, UnsupportedLayerError, capture
from genrobust.bounds.engine import BoundEngine, BoundOptions, open_rows, reach_maps, refutation
from genrobust.bounds.ops import Conv, Dense, ReLU, Rows, gamma, to_dense
from genrobust.models.layers import Affine, ConcatConstant

#: One example module per row of the engine's activation table, so a new row is property-tested without touching
#: this file; constructor arguments where the defaults would not exercise a rule (a leak, torch's softplus tail).
_ARGS = {nn.LeakyReLU: (0.2,), nn.Softplus: (1.0, 2.0)}
ACTS = {t.__name__: (lambda t=t: t(*_ARGS.get(t, ()))) for t in ACTIVATION_BUILDERS}


def _margin_spec(labels: torch.Tensor, k: int) -> torch.Tensor:
    eye = torch.eye(k, dtype=torch.float64)
    spec = eye[labels][:, None, :] - eye[None, :, :]
    keep = ~torch.eye(k, dtype=torch.bool)[labels]
    return spec[keep].reshape(len(labels), k - 1, k)


def _random_pair(
    draw_ints: list[int], act_g: str, act_c: str, pool: str, pad: int, stride: int, bn: bool, cond: bool,
    deep: bool = False, convs: int = 1, chans: int = 2,
):  # fmt: skip
    seed, d, h = draw_ints
    torch.manual_seed(seed)
    gen_layers: list[nn.Module] = [ConcatConstant(torch.tensor([0.0, 1.0]))] if cond else []
    gen_layers += [nn.Linear(d + (2 if cond else 0), h), ACTS[act_g]()]
    if deep:  # two hidden layers: the generator's own backward refinement passes a nonlinearity
        gen_layers += [nn.Linear(h, h), ACTS[act_g]()]
    # one channel: the classifier's patch rows go back into the generator as windows of its flat pixels
    gen_layers += [nn.Linear(h, chans * 6 * 6), nn.Tanh(), Affine(0.5, 0.5), nn.Unflatten(1, (chans, 6, 6))]
    # with more convolutions (8 channels, padded), the classifier's refinement runs patch rows: windows that stick
    # out of the map, and a transposed convolution for sparse float32 patches instead of the Toeplitz GEMM
    width = 8 if convs > 1 else 4
    clf_layers: list[nn.Module] = [nn.Conv2d(chans, width, 3, stride=stride, padding=pad)]
    for k in range(1, convs):
        clf_layers += [ACTS[act_c](), nn.Conv2d(width, width if k < convs - 1 else 4, 3, padding=1)]
    if bn:
        b = nn.BatchNorm2d(4)
        b.running_mean.uniform_(-0.3, 0.3)
        b.running_var.uniform_(0.5, 2.0)
        b.weight.data.uniform_(-1.5, 1.5)
        clf_layers.append(b)
    clf_layers.append(ACTS[act_c]())
    side = (6 + 2 * pad - 3) // stride + 1
    if pool == "avg":
        clf_layers.append(nn.AvgPool2d(2))
        side //= 2
    elif pool == "max":
        clf_layers.append(nn.MaxPool2d(2))
        side //= 2
    clf_layers += [nn.Flatten(), nn.Linear(4 * side * side, 8), nn.Dropout(0.2), ACTS[act_c](), nn.Linear(8, 3)]
    return nn.Sequential(*gen_layers).eval(), nn.Sequential(*clf_layers).eval(), d


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ints=st.tuples(st.integers(0, 10_000), st.integers(2, 4), st.integers(4, 12)),
    act_g=st.sampled_from(sorted(ACTS)),
    act_c=st.sampled_from(sorted(ACTS)),
    pool=st.sampled_from(["none", "avg", "max"]),
    pad=st.integers(0, 1),
    stride=st.integers(1, 2),
    bn=st.booleans(),
    cond=st.booleans(),
    eps=st.sampled_from([0.01, 0.1, 0.5]),
    mode=st.sampled_from(["crown", "forward", "interval"]),
    refine32=st.booleans(),
    limit=st.sampled_from([0.0, 0.9]),
    deep=st.booleans(),
    gen_backward=st.booleans(),
    lazy=st.booleans(),
    convs=st.integers(1, 3),
    alpha=st.sampled_from(["off", "default", "any"]),
    to_latent=st.booleans(),
    cells=st.sampled_from([0, 0, 1, 3]),
    row_cells=st.sampled_from([0, 0, 1, 2]),
    chans=st.integers(1, 2),
    ratio=st.sampled_from([1.0, 2.0, 0.0, math.inf]),
)
def test_bounds_contain_every_sampled_point(
    ints, act_g, act_c, pool, pad, stride, bn, cond, eps, mode, refine32, limit, deep, gen_backward, lazy, convs,
    alpha, to_latent, cells, row_cells, chans, ratio,
):  # fmt: skip
    gen, clf, d = _random_pair(list(ints), act_g, act_c, pool, pad, stride, bn, cond, deep, convs, chans)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (chans, 6, 6))
    opts = BoundOptions(mode=mode, refine_dtype=torch.float32 if refine32 else torch.float64, row_chunk=7,
                        refine_limit=limit, generator_backward=gen_backward,
                        margins_to_latent=gen_backward, lazy_last=lazy, alpha_steps=0 if alpha == "off" else 3,
                        alpha_intermediate=0 if alpha == "off" else 2, alpha_lr=0.5,
                        alpha_maps=0 if alpha == "off" else 2, alpha_map_layers=2,
                        refine_to_latent=to_latent, generator_cells=cells, row_cells=row_cells,
                        lower_ratio=ratio)  # fmt: skip
    engine = BoundEngine(ops, len(gen_ops), opts)
    B = 3
    center = torch.randn(B, d, dtype=torch.float64)
    radius = torch.full((B, d), eps, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    spec = _margin_spec(labels, 3)
    start = None
    if alpha == "any":  # any start, in range or not, NaN included (the engine's default there)
        start = {k: torch.randn(B, 2, *op.out_shape) * 2 for k, op in enumerate(ops) if getattr(op, "tunable", False)}
        for a in start.values():
            a[0] = torch.nan
    res = engine.margins(center, radius, spec, alpha=start)
    s = torch.rand(400, B, d, dtype=torch.float64) * 2 - 1
    s[:8] = torch.sign(s[:8])  # corners too
    z = (center + radius * s).reshape(-1, d)
    model = nn.Sequential(gen, clf).double()
    with torch.no_grad():
        logits = model(z).reshape(400, B, 3)
        margins = torch.einsum("bmk,nbk->nbm", spec, logits)
        assert (margins >= res.lower[None]).all(), float((res.lower[None] - margins).max())
        if mode == "crown":
            x = z.reshape(400, B, d)
            for i, (lo, hi) in res.intervals.items():  # every kept interval holds the sampled pre-activations
                h = x.reshape(-1, d)
                for op in ops[:i]:
                    h = op.forward(h)
                h = h.reshape(400, B, *h.shape[1:])
                assert (h >= lo[None] - 1e-12).all() and (h <= hi[None] + 1e-12).all(), i


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    act_c=st.sampled_from(sorted(ACTS)),
    pad=st.integers(0, 1),
    stride=st.integers(1, 2),
    convs=st.integers(2, 3),
    chans=st.integers(1, 2),
    layers=st.integers(1, 3),
    eps=st.sampled_from([0.1, 0.3, 0.6]),
    refine32=st.booleans(),
)
def test_alpha_on_maps_bounds_contain_every_sampled_point(seed, act_c, pad, stride, convs, chans, layers, eps,
                                                          refine32):  # fmt: skip
    """Soundness of α on the convolutions' neurons (``alpha_maps``) over random generator ∘ classifier pairs: every
    activation, padding and stride, windows that stick out of the maps, float32 or float64 rows. (The general
    property test above rarely leaves a convolution's neurons unstable and refinable; here every box is refined.)"""
    gen, clf, d = _random_pair([seed, 3, 10], "ReLU", act_c, "none", pad, stride, False, False, False, convs, chans)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (chans, 6, 6))
    opts = BoundOptions(refine_dtype=torch.float32 if refine32 else torch.float64, refine_limit=1.0, lazy_last=False,
                        alpha_maps=3, alpha_map_layers=layers, alpha_lr=0.5)  # fmt: skip
    engine = BoundEngine(ops, len(gen_ops), opts)
    center = torch.randn(2, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    radius = torch.full((2, d), eps, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([0, 2]), 3)
    res = engine.margins(center, radius, spec)
    s = torch.rand(500, 2, d, dtype=torch.float64) * 2 - 1
    s[:8] = torch.sign(s[:8])
    z = (center + radius * s).reshape(-1, d)
    with torch.no_grad():
        logits = nn.Sequential(gen, clf).double()(z).reshape(500, 2, 3)
        assert (torch.einsum("bmk,nbk->nbm", spec, logits) >= res.lower[None]).all()
        for i, (lo, hi) in res.intervals.items():
            h = z
            for op in ops[:i]:
                h = op.forward(h)
            h = h.reshape(500, 2, *h.shape[1:])
            assert (h >= lo[None] - 1e-12).all() and (h <= hi[None] + 1e-12).all(), i


def test_alpha_on_convolution_rows_tunes_each_row_in_its_window(monkeypatch):
    """α-CROWN on the last convolutions' neurons (``alpha_maps``): the patch rows' slopes live in each row's window
    (padding and stride move and clip it), and the bounds are those of whole-map rows (convolutions without
    patches) up to the float32 steps' rounding; tighter than plain refinement, below every sampled point; and a
    box that inherits its intervals there (a split's child) keeps them without α."""
    gen, clf, d = _random_pair([11, 3, 10], "ReLU", "ReLU", "none", 1, 2, False, False, False, 3, 2)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (2, 6, 6))
    center = torch.randn(2, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    radius = torch.full((2, d), 0.4, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([0, 1]), 3)
    kw = {"refine_dtype": torch.float64, "refine_limit": 1.0, "lazy_last": False}
    plain = BoundEngine(ops, len(gen_ops), BoundOptions(**kw)).margins(center, radius, spec)
    tuned_engine = BoundEngine(ops, len(gen_ops), BoundOptions(**kw, alpha_maps=6, alpha_map_layers=2))
    maps = sorted(tuned_engine._alpha_map_ops)
    assert len(maps) == 2 and all(len(ops[k].in_shape) == 3 for k in maps)
    tuned = tuned_engine.margins(center, radius, spec)
    # the first tuned layer starts from the same plain rows (later layers' plain passes may move either way: the
    # adaptive lower slope is not monotone in the intervals below)
    (lo, hi), (lo0, hi0) = tuned.intervals[maps[0]], plain.intervals[maps[0]]
    assert (lo >= lo0).all() and (hi <= hi0).all() and float((hi0 - lo0).sum() - (hi - lo).sum()) > 1e-3
    widths = [float(sum((r.intervals[k][1] - r.intervals[k][0]).sum() for k in maps)) for r in (plain, tuned)]
    assert widths[1] < widths[0] - 1e-3, widths
    with monkeypatch.context() as m:  # the same rows over whole maps: the windows lose nothing
        m.setattr(Conv, "patches", False)
        dense = BoundEngine(ops, len(gen_ops), BoundOptions(**kw, alpha_maps=6, alpha_map_layers=2))
        whole = dense.margins(center, radius, spec)
    for k in maps:
        torch.testing.assert_close(tuned.intervals[k], whole.intervals[k], rtol=1e-3, atol=2e-5)  # float32 steps
    s = torch.rand(3000, 2, d, dtype=torch.float64) * 2 - 1
    s[:16] = torch.sign(s[:16])
    with torch.no_grad():
        logits = nn.Sequential(gen, clf).double()((center + radius * s).reshape(-1, d)).reshape(3000, 2, 3)
    assert (torch.einsum("bmk,nbk->nbm", spec, logits) >= tuned.lower[None]).all()
    child = tuned_engine.margins(center, radius, spec, parent=plain.intervals)  # inherits: no α on the maps
    for k in maps:
        torch.testing.assert_close(child.intervals[k], plain.intervals[k])


def test_interval_is_loosest_and_crown_tightest_on_the_builtin_models():
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    gen_ops = capture(gens[8], (10,))
    ops = gen_ops + capture(clf, (1, 28, 28))
    z = gr.estimate.latents(0, 8, 2, 10).double()
    spec = _margin_spec(torch.tensor([8, 8]), 10)
    r = torch.full_like(z, 0.003)
    worst = {}
    for mode in ("interval", "forward", "crown"):
        worst[mode] = BoundEngine(ops, len(gen_ops), BoundOptions(mode=mode)).margins(z, r, spec).lower.min(1).values
    assert (worst["interval"] <= worst["crown"]).all() and (worst["forward"] <= worst["crown"]).all()
    assert (worst["crown"] > 0).all()  # both balls are certified at ε = 0.003


def test_refinement_certifies_at_eps_001_and_skips_only_hopeless_boxes():
    """At ε = 0.01 thousands of the classifier's neurons are unstable before refinement; refining them is what
    certifies (a cap on their number once silently turned this ball's +8.87 into −263; it is +9.8 since the
    generator's pixels get backward forms). At ε = 0.5 every neuron is unstable: the box keeps its cheaper bounds
    and costs no backward pass in the classifier."""
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    gen_ops = capture(gens[8], (10,))
    ops = gen_ops + capture(clf, (1, 28, 28))
    engine = BoundEngine(ops, len(gen_ops), BoundOptions(lazy_last=False))
    z = gr.estimate.latents(0, 8, 2, 10)[1:].double()
    spec = _margin_spec(torch.tensor([8]), 10)
    res = engine.margins(z, torch.full_like(z, 0.01), spec)
    assert float(res.lower.min()) > 5 and res.refined > 1000 and res.refined_generator >= 784
    # lazily, the last dense layer is left unrefined once the box is certified without it: fewer neurons, still > 0
    lazy = BoundEngine(ops, len(gen_ops)).margins(z, torch.full_like(z, 0.01), spec)
    assert 0 < float(lazy.lower.min()) <= float(res.lower.min()) and lazy.refined < res.refined
    wide = engine.margins(z, torch.full_like(z, 0.5), spec)
    assert wide.refined == 0
    s = torch.rand(300, 10, dtype=torch.float64) * 2 - 1
    model = torch.nn.Sequential(gens[8], clf).double().eval()
    with torch.no_grad():
        margins = (spec[0] @ model(z + 0.5 * s).T).T
    assert (margins >= wide.lower).all()


def _built_in_ball_0_3():
    """The built-in models' ball (0, 3) at ε = 0.05: a wide ball whose whole-box bound is open (−10.9)."""
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    gen_ops = capture(gens[0], (10,))
    ops = gen_ops + capture(clf, (1, 28, 28))
    z = gr.estimate.latents(0, 0, 100, 10)[3:4].double()
    return clf, gens, gen_ops, ops, z, _margin_spec(torch.tensor([0]), 10), torch.full_like(z, 0.05)


def test_generator_cells_tighten_the_generators_intervals_and_the_margins_of_a_wide_ball():
    """``generator_cells``: each box's generator intervals are the union of its 2^m cells' bounds. On ball (0, 3)
    of the built-in models at ε = 0.05 the pixels' pre-tanh intervals shrink and the worst margin rises (rows
    stopped at the image; stop 44: −10.9 → −7.6 with 4 cells); every sampled latent of the box stays inside the
    tighter intervals and above the bound."""
    clf, gens, gen_ops, ops, z, spec, r = _built_in_ball_0_3()
    at_image = {"lazy_last": False, "refine_to_latent": False}  # where the generator's slack shows most
    plain = BoundEngine(ops, len(gen_ops), BoundOptions(**at_image)).margins(z, r, spec)
    celled = BoundEngine(ops, len(gen_ops), BoundOptions(**at_image, generator_cells=2))
    cells = celled.margins(z, r, spec)
    tanh = max(k for k in range(len(gen_ops)) if not gen_ops[k].linear)
    width = [float((res.intervals[tanh][1] - res.intervals[tanh][0]).sum()) for res in (plain, cells)]
    assert width[1] < 0.97 * width[0]
    assert float(cells.lower.min()) > float(plain.lower.min()) + 2
    s = torch.rand(2000, 10, dtype=torch.float64) * 2 - 1
    s[:64] = torch.sign(s[:64])  # corners too
    with torch.no_grad():
        h = z + 0.05 * s
        for op in ops[:tanh]:
            h = op.forward(h)
        lo, hi = cells.intervals[tanh]
        assert (h >= lo).all() and (h <= hi).all()
        margins = (spec[0] @ torch.nn.Sequential(gens[0], clf).double().eval()(z + 0.05 * s).T).T
    assert (margins >= cells.lower).all()

    # a ReLU split's child settled past the generator inherits its parent's cell-tightened intervals: no cells again
    def refuse(*a, **k):
        raise AssertionError("the cells were bounded again for a settled child")

    celled._cell_intervals = refuse
    child = celled.margins(z, r, spec, parent=cells.intervals, settled=torch.tensor([len(gen_ops) + 1]))
    assert torch.equal(child.intervals[tanh][0], lo) and (margins >= child.lower).all()
    for bad in (-1, 13):
        with pytest.raises(gr.GenrobustError, match="generator_cells halves at most 12"):
            BoundOptions(generator_cells=bad)


def test_row_cells_carry_each_row_through_every_cells_generator_and_certify_a_ball_the_box_leaves_open():
    """``row_cells``: the rows that go on to the latent (refinement rows and margins) are bounded once more per cell
    of the box, each through that cell's own generator relaxation, and keep the least of the cells' bounds where it
    is tighter. Ball (0, 86) of the built-in models at ε = 0.05: the whole box's worst margin is −2.7, with four
    cells +2.3 (stop 50), both with CROWN's adaptive lower lines (``lower_ratio=1``: with the default's lines the
    whole box is +1.2 already); the classifier's intervals narrow, and sampled latents (corners too) stay inside
    them and above the bound."""
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    gen_ops = capture(gens[0], (10,))
    ops = gen_ops + capture(clf, (1, 28, 28))
    z = gr.estimate.latents(0, 0, 100, 10)[86:87].double()
    spec, r = _margin_spec(torch.tensor([0]), 10), torch.full_like(z, 0.05)
    plain = BoundEngine(ops, len(gen_ops), BoundOptions(lower_ratio=1.0)).margins(z, r, spec)
    res = BoundEngine(ops, len(gen_ops), BoundOptions(row_cells=2, lower_ratio=1.0)).margins(z, r, spec)
    assert float(plain.lower.min()) < -1 and float(res.lower.min()) > 1
    for k, (lo, hi) in res.intervals.items():  # (CROWN is not monotone in its intervals: sums, not each neuron)
        if k > len(gen_ops):
            assert float((hi - lo).sum()) < float((plain.intervals[k][1] - plain.intervals[k][0]).sum()), k
    s = torch.rand(2000, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    s[:64] = torch.sign(s[:64])
    with torch.no_grad():
        h = z + 0.05 * s
        for k, op in enumerate(ops):
            if k in res.intervals:
                assert (h >= res.intervals[k][0]).all() and (h <= res.intervals[k][1]).all(), k
            h = op.forward(h)
        margins = (spec[0] @ torch.nn.Sequential(gens[0], clf).double().eval()(z + 0.05 * s).T).T
    assert (margins >= res.lower).all()
    for bad in (-1, 13):
        with pytest.raises(gr.GenrobustError, match="row_cells halves at most 12"):
            BoundOptions(row_cells=bad)


def test_refinement_to_the_latent_goes_on_from_the_image_only_for_neurons_left_unstable():
    """``refine_to_latent``: every classifier row is carried to the image once, minimised there, and goes on
    through the generator only where its neuron is still unstable. On ball (0, 3) of the built-in models at
    ε = 0.05 that certifies the whole box (worst margin −6.4 to the image, positive to the latent); every refined
    layer is narrower, the first one behind the image included (only linear layers before it: at the image its
    rows would give what the image's forms give, to the latent they are tighter), and sampled latents (corners
    too) stay inside its intervals and above the bound. Both with CROWN's adaptive lower lines (``lower_ratio=1``):
    with the default's, the pass to the image gives −2.7."""
    clf, gens, gen_ops, ops, z, spec, r = _built_in_ball_0_3()
    plain = BoundEngine(ops, len(gen_ops), BoundOptions(refine_to_latent=False, lower_ratio=1.0)).margins(z, r, spec)
    deep = BoundEngine(ops, len(gen_ops), BoundOptions(refine_to_latent=True, lower_ratio=1.0))
    seen = {"image": 0, "latent": 0}
    backward = deep._backward

    def counted(j, rows, *a, state=None, keep=False, **k):
        if keep:
            seen["image"] += len(rows.A)
        if state is not None:
            seen["latent"] += len(rows.A)
        return backward(j, rows, *a, state=state, keep=keep, **k)

    deep._backward = counted
    res = deep.margins(z, r, spec)
    assert float(plain.lower.min()) < -5 and float(res.lower.min()) > 0
    assert 0 < seen["latent"] < 0.7 * seen["image"]
    for k, (lo, hi) in res.intervals.items():  # (CROWN is not monotone in its intervals: sums, not each neuron)
        if k > len(gen_ops):  # the first activation too: behind one convolution, the image's forms are all it had
            assert float((hi - lo).sum()) < float((plain.intervals[k][1] - plain.intervals[k][0]).sum()), k
    s = torch.rand(2000, 10, dtype=torch.float64) * 2 - 1
    s[:64] = torch.sign(s[:64])
    with torch.no_grad():
        h = z + 0.05 * s
        for k, op in enumerate(ops):
            if k in res.intervals:
                lo, hi = res.intervals[k]
                assert (h >= lo).all() and (h <= hi).all(), k
            h = op.forward(h)
        margins = (spec[0] @ torch.nn.Sequential(gens[0], clf).double().eval()(z + 0.05 * s).T).T
    assert (margins >= res.lower).all()


@pytest.mark.parametrize("act", ["LeakyReLU", "ReLU", "Tanh"])
def test_the_folded_generator_gives_the_plain_passs_bounds_at_less_cost(act):
    """:mod:`genrobust.bounds.symbolic`: rows carried through the generator's dense layers folded per box (stable
    neurons are exact lines) bound exactly what the plain pass bounds: in float64 the intervals and margins agree to
    rounding; in float32 both stay below that and within 1e-4 of each other; sampled latents stay inside. A tanh
    generator (no neuron stable) folds too."""
    gen, clf, d = _random_pair([7, 3, 12], act, "ReLU", "none", 1, 1, False, False, deep=True, convs=2)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (2, 6, 6))
    center = torch.randn(4, d, dtype=torch.float64)
    radius = torch.full_like(center, 0.3)
    spec = _margin_spec(torch.tensor([0, 1, 2, 0]), 3)
    res = {}
    for fold in (False, True):
        for dt in (torch.float64, torch.float32):
            opts = BoundOptions(refine_to_latent=True, fold_generator=fold, refine_dtype=dt, refine_limit=1.0)
            engine = BoundEngine(ops, len(gen_ops), opts)
            carried = []
            if fold:
                real = engine._folded

                def spied(*a, real=real, carried=carried, **k):
                    out = real(*a, **k)
                    carried.append(out)
                    return out

                engine._folded = spied
            res[fold, dt] = engine.margins(center, radius, spec)
            assert not fold or (carried and all(f is not None and f.top == 4 for f in carried))
    plain, folded = res[False, torch.float64], res[True, torch.float64]
    assert torch.allclose(plain.lower, folded.lower, rtol=1e-9, atol=1e-9)
    for k, (lo, hi) in plain.intervals.items():
        assert torch.allclose(lo, folded.intervals[k][0], atol=1e-9) and torch.allclose(hi, folded.intervals[k][1],
                                                                                          atol=1e-9), k  # fmt: skip
    f32_plain, f32_fold = res[False, torch.float32], res[True, torch.float32]
    assert (f32_fold.lower <= folded.lower + 1e-9).all() and torch.allclose(f32_fold.lower, f32_plain.lower, atol=1e-4)
    s = torch.rand(3000, 4, d, dtype=torch.float64) * 2 - 1
    s[:16] = torch.sign(s[:16])
    z = (center + radius * s).reshape(-1, d)
    with torch.no_grad():
        logits = nn.Sequential(gen, clf).double()(z).reshape(3000, 4, 3)
    margins = torch.einsum("bmk,nbk->nbm", spec, logits)
    assert (margins >= f32_fold.lower[None]).all()


@pytest.mark.parametrize("gathered", [True, False], ids=["gathered", "per-box"])
@pytest.mark.parametrize("kind", ["dense", "conv-dense-rows", "conv-patch-rows"])
def test_float32_steps_through_a_linear_layer_round_within_their_per_neuron_guard(kind, gathered, monkeypatch):
    """The guard of a float32 row's step back through a linear op (``_reach_guard``): over the whole input box, the
    computed step's value moves from the exact one by at most γ_n·Σ|A|·|W||x| + γ_m·Σ|A|·|b| (patch rows: each
    channel's largest |W||x| and |b|). Checked against the
    float64 step (whose own error is 10⁹ times smaller) at the worst point of the box, with weights and rows of
    mixed magnitudes so that roundings are large; and the guard is far below the layer-wide ‖A‖₁·max one. Dense
    rows take the layer's reach gathered per row (small layers) or box by box (``GATHER_BYTES``): both are checked."""
    import genrobust.bounds.engine as engine_module

    monkeypatch.setattr(engine_module, "GATHER_BYTES", 1 << 40 if gathered else 0)
    torch.manual_seed(3)
    B, R = 2, 64
    if kind == "dense":
        w = torch.randn(300, 500) * torch.rand(300, 1) * 10
        op = Dense(w, torch.randn(300) * 50, (500,))
    else:
        w = torch.randn(16, 8, 3, 3) * torch.rand(16, 1, 1, 1) * 10
        op = Conv(w, torch.randn(16) * 50, (8, 12, 12), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    channel = torch.rand(B, op.in_shape[0], *([1] * (len(op.in_shape) - 1)), dtype=torch.float64)
    size = torch.rand(B, *op.in_shape, dtype=torch.float64) * channel * 5
    ball = torch.arange(R) % B
    if kind == "conv-patch-rows":
        A = torch.randn(R, 16, 4, 4)
        off = torch.randint(0, 9, (R, 2))
        rows = Rows(A, ball, off)
    else:
        rows = Rows(torch.randn(R, *op.out_shape) * torch.rand(R, 1).reshape(R, *([1] * len(op.out_shape))), ball)
    guard = BoundEngine._reach_guard(rows, reach_maps(op, size), op)
    got, b32 = op.backward(rows)
    exact, b64 = op.backward(Rows(rows.A.double(), ball, rows.off))
    if rows.off is not None:
        got, exact = to_dense(got, op.in_shape), to_dense(exact, op.in_shape)
    diff = (got.A.double() - exact.A).abs().reshape(R, -1)
    worst = (diff * size[ball].reshape(R, -1)).sum(1) + (b32.double() - b64).abs()
    assert (worst <= guard).all() and float((worst / guard).max()) > 1e-4  # sound, and not vacuous (γₙ is a worst case)
    m = rows.A[0].numel()
    layer_wide = rows.A.abs().reshape(R, -1).sum(1).double() * (
        gamma(op.dot_length(rows) + 1, torch.float32) * op.apply(size, "abs").flatten(1).amax(1)[ball]
        + gamma(m + 1, torch.float32) * op.max_bias)  # fmt: skip
    assert float((guard / layer_wide).median()) < 0.8


def test_generator_backward_forms_tighten_the_image_and_keep_the_margins_coefficients():
    """The pixels' backward forms cut the first convolution's widths (7× the sampled ones → under 2.5× at
    ε = 0.03) and lift the margins; the margins' backward pass to the latent keeps its coefficients (a rounding
    tie with the latent box once zeroed them, and the split heuristic reads them)."""
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    gen_ops = capture(gens[8], (10,))
    ops = gen_ops + capture(clf, (1, 28, 28))
    anchor = len(gen_ops)
    z = gr.estimate.latents(0, 8, 2, 10)[1:].double()
    r = torch.full_like(z, 0.03)
    spec = _margin_spec(torch.tensor([8]), 10)
    off = BoundOptions(generator_backward=False, margins_to_latent=False, refine=False)
    loose = BoundEngine(ops, anchor, off).margins(z, r, spec)
    tight = BoundEngine(ops, anchor, BoundOptions(refine=False)).margins(z, r, spec)
    conv1 = anchor + 1  # the ReLU after the first convolution: its input intervals
    s = torch.rand(4000, 10, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        pre = ops[anchor].forward(gens[8].double()(z + 0.03 * s))
    sampled = (pre.amax(0) - pre.amin(0)).clamp(min=1e-6)
    ratio = {k: float(((b.intervals[conv1][1] - b.intervals[conv1][0])[0] / sampled).median())
             for k, b in (("loose", loose), ("tight", tight))}  # fmt: skip
    assert ratio["loose"] > 5 and ratio["tight"] < 2.5, ratio
    assert (tight.lower > loose.lower).all()
    assert (tight.coef.abs().sum(2) > 0).all()  # every margin keeps a linear function of the latent


def test_capture_refuses_what_it_cannot_bound():
    with pytest.raises(UnsupportedLayerError, match="GELU"):
        capture(nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)), (3,))

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.a(x)

    with pytest.raises(UnsupportedLayerError, match="not a chain"):
        capture(Residual(), (3,))
    with pytest.raises(UnsupportedLayerError, match="MaxPool2d"):
        capture(nn.Sequential(nn.MaxPool2d(3, stride=1)), (1, 6, 6))
    with pytest.raises(gr.GenrobustError, match="shape"):
        capture(nn.Linear(3, 2), (4,))


def test_capture_reads_forward_arithmetic_and_the_generators():
    class Inline(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x):
            return torch.tanh(self.fc(x) * 2 - 1).view(-1, 1, 2, 3).flatten(1).relu()

    model = Inline()
    ops = capture(model, (4,))
    assert [o.name for o in ops] == ["Dense", "mul", "sub", "Tanh", "Reshape", "Reshape", "ReLU"]
    x = torch.randn(5, 4, dtype=torch.float64)
    h = x
    for op in ops:
        h = op.forward(h)
    assert torch.allclose(h, model.double()(x), atol=1e-12)
    for name in ("mnist-gan", "fashion-mnist-cgan"):  # per-class and conditional families are chains too
        g = gr.load_generators(name)[3]
        z = torch.randn(4, 10, dtype=torch.float64)
        h = z
        for op in capture(g, (10,)):
            h = op.forward(h)
        assert torch.allclose(h, g.double()(z), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_window_table_gathers_the_same_windows_as_gather_patches(dtype):
    """Patch rows read their relaxation lines from an unfolded table: the same values, zeros outside the map."""
    from genrobust.bounds.ops import WindowTable, gather_patches

    torch.manual_seed(0)
    maps = torch.randn(3, 4, 5, 7, 6, dtype=dtype)  # (B, lines, C, H, W)
    ph, pw = 3, 4
    off = torch.stack([torch.randint(-2, 7 - ph + 3, (50,)), torch.randint(-3, 6 - pw + 2, (50,))], 1)
    ball = torch.randint(0, 3, (50,))
    pad = (int(-off[:, 0].min()), int(off[:, 0].max()) + ph - 7, int(-off[:, 1].min()), int(off[:, 1].max()) + pw - 6)
    table = WindowTable(maps.reshape(3, 20, 7, 6), ph, pw, tuple(max(0, p) for p in pad))
    got = table.gather(ball, off).reshape(50, 4, 5, ph, pw)
    assert torch.equal(got, gather_patches(maps, ball, off, ph, pw))


@pytest.mark.parametrize("ph, pw", [(3, 3), (5, 4), (9, 9)])
def test_patches_over_a_one_channel_image_go_back_as_windows_of_its_flat_pixels(ph, pw):
    """Behind the reshape that made the image, a patch row is the band of pixel rows it touches: the same
    coefficients as the dense row (positions outside the image dropped, patches taller than it included), and
    an elementwise step on the band meets each pixel's own constant."""
    from genrobust.bounds.ops import Reshape, Scale, gather_windows

    torch.manual_seed(ph * pw)
    H, W, R = 7, 6, 60
    op = Reshape((H * W,), (1, H, W))
    assert op.patches and not Reshape((2 * H * W,), (2, H, W)).patches
    off = torch.stack([torch.randint(-ph + 1, H, (R,)), torch.randint(-pw + 1, W, (R,))], 1)
    rows = Rows(torch.randn(R, 1, ph, pw, dtype=torch.float64), torch.randint(0, 3, (R,)), off)
    band, bias = op.backward(rows)
    assert band.A.shape == (R, min(ph, H) * W) and not bias.any()
    assert bool((band.off[:, 0] >= 0).all()) and bool((band.off[:, 0] + band.A.shape[1] <= H * W).all())
    dense, _ = op.backward(to_dense(rows, (1, H, W)))
    assert torch.equal(to_dense(band, (H * W,)).A, dense.A)
    scale = Scale(torch.randn(H * W), torch.randn(H * W), (H * W,))
    got, got_bias = scale.backward(band)
    want, want_bias = scale.backward(dense)
    assert torch.allclose(to_dense(got, (H * W,)).A, want.A, atol=0) and torch.allclose(got_bias, want_bias)
    maps = torch.randn(3, 4, H * W, dtype=torch.float64)
    lines = gather_windows(maps, band.ball, band.off[:, 0], band.A.shape[1])
    at = band.off[:, :1] + torch.arange(band.A.shape[1])
    assert torch.equal(lines, maps[band.ball][torch.arange(R)[:, None, None], torch.arange(4)[None, :, None],
                                              at[:, None, :]])  # fmt: skip


def test_bounds_run_in_ieee_float32_whatever_the_callers_tf32_settings():
    """TF32 (cuDNN's default for float32 convolutions) or bfloat16 GEMMs would void the float32 rounding guards:
    the engine switches them off while it works and gives the caller's settings back."""
    b = torch.backends
    knobs = [b.cuda.matmul, b.cudnn.conv, b.mkldnn.matmul, b.mkldnn.conv]
    old = [k.fp32_precision for k in knobs]
    seen = []
    gen, clf, d = _random_pair([1, 3, 8], "ReLU", "ReLU", "none", 1, 1, False, False, False, 3)
    gen_ops = capture(gen, (d,))
    engine = BoundEngine(gen_ops + capture(clf, (2, 6, 6)), len(gen_ops))
    inner = engine._margins

    def spy(*args):
        seen.append([k.fp32_precision for k in knobs])
        return inner(*args)

    engine._margins = spy
    try:
        for k in knobs:
            k.fp32_precision = "tf32"
        c = torch.zeros(1, d, dtype=torch.float64)
        engine.margins(c, torch.full_like(c, 0.1), _margin_spec(torch.tensor([0]), 3))
        assert seen == [["ieee"] * 4] and [k.fp32_precision for k in knobs] == ["tf32"] * 4
    finally:
        for k, v in zip(knobs, old, strict=True):
            k.fp32_precision = v


def test_dense_backward_takes_unit_rows_directly_and_equals_the_gemm():
    from genrobust.bounds.ops import Dense, Rows

    torch.manual_seed(0)
    layer = Dense(torch.randn(30, 20), torch.randn(30), (20,))
    A = torch.zeros(6, 30, dtype=torch.float64)
    A[0, 3], A[1, 3], A[2, 7], A[3, 0], A[4, 29], A[5, 5] = 1, -1, 2.5, 1, -1, 1
    for extra in (False, True):  # one non-zero per row (the shortcut), then a row with two (the GEMM)
        if extra:
            A[5, 6] = 1
        if extra:
            with pytest.raises(gr.GenrobustError, match="one non-zero"):
                layer.backward(Rows(A, torch.zeros(6, dtype=torch.long), unit=True))
        rows, bias = layer.backward(Rows(A, torch.zeros(6, dtype=torch.long), unit=not extra))
        assert torch.equal(rows.A, A @ layer.w["all"]) and torch.allclose(bias, A @ layer.b, rtol=0, atol=1e-12)


def _sampled_margin_check(net: nn.Module, ops, x0: torch.Tensor, eps: float) -> None:
    """The captured chain computes the network, and its bounds hold on sampled points of the box."""
    net = net.double()
    with torch.no_grad():
        y = x0
        for op in ops:
            y = op.forward(y)
        assert torch.allclose(y, net(x0), atol=1e-12)  # the engine's network is the user's network
        pts = x0 + eps * (2 * torch.rand(2000, x0.shape[1], dtype=torch.float64) - 1)
        out = net(pts)
    for mode in ("crown", "interval"):
        spec = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]], dtype=torch.float64)
        mb = BoundEngine(ops, anchor=0, options=BoundOptions(mode=mode)).margins(x0, torch.full_like(x0, eps), spec)
        assert (mb.lower[0] <= (out @ spec[0].T).min(0).values).all(), mode


def test_per_channel_scales_act_on_the_channel_axis_whatever_the_rank():
    """A (C,) BatchNorm1d or adapter vector on (C, L) examples scales the C rows (found in review: with C == L
    the engine once scaled the columns and certified a box 30% misclassified)."""
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
    bn.weight.data, bn.bias.data = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.3, 0.0, -1.0])
    adapter = gr.models.layers.ImageAdapter((0.0, 1.0), (-1.0, 1.0), mean=(0.1, 0.2, 0.3), std=(0.5, 2.0, 1.0))
    for norm in (bn, adapter):
        net = nn.Sequential(nn.Linear(2, 9), nn.Unflatten(1, (3, 3)), norm, nn.Flatten(), nn.Tanh(), nn.Linear(9, 2))
        net = net.eval()
        _sampled_margin_check(net, capture(net, (2,)), torch.tensor([[0.7, -0.4]], dtype=torch.float64), 1e-2)
    from genrobust.bounds.ops import Scale

    with pytest.raises(gr.GenrobustError, match="4 channels for inputs of shape \\(3, 5\\)"):
        Scale(torch.ones(4), 0.0, (3, 5))


def test_functional_dropout_is_bounded_only_when_it_cannot_drop():
    class Net(nn.Module):
        def __init__(self, training_arg: bool) -> None:
            super().__init__()
            self.a, self.b, self.training_arg = nn.Linear(3, 4), nn.Linear(4, 2), training_arg

        def forward(self, x):
            h = self.a(x)
            h = F.dropout(h, 0.5, training=self.training) if self.training_arg else F.dropout(h, 0.5)
            return self.b(torch.relu(h))

    with pytest.raises(UnsupportedLayerError, match="drops at random even in eval mode"):
        capture(Net(False), (3,))  # F.dropout's default is training=True, in eval mode too
    ops = capture(Net(True), (3,))  # traced in eval mode: training=False
    assert [op.name for op in ops] == ["Dense", "ReLU", "Dense"]


def test_capture_traces_in_eval_mode_and_gives_every_flag_back():
    """The caller's model is never changed: a training model with a frozen batch norm inside comes back so,
    while the captured chain computes what the model computes in eval mode (running statistics, no dropout)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2),
                        nn.BatchNorm1d(2))  # fmt: skip
    for bn in (net[1], net[5]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    net.train()
    net[5].eval()  # frozen by the caller
    ops = capture(net, (3,))
    assert net.training and net[1].training and net[3].training and not net[5].training
    x = torch.randn(5, 3, dtype=torch.float64)
    h = x
    for op in ops:
        h = op.forward(h)
    net.eval()
    torch.testing.assert_close(h, net.double()(x))


@pytest.mark.parametrize("origin", [True, False])
def test_a_batchs_relu_step_gathers_its_boxes_lines_or_takes_them_box_by_box_with_the_same_rows(origin, monkeypatch):
    """``relax_step_by_ball``: rows sorted by box take their box's lines as views, one step per box, or (below
    ``GATHER_BYTES``: small layers, where the loop's calls cost more than the copy) one step on lines gathered per
    row. The new rows are the same products either way; the intercepts' float64 sums and their Σ|·| agree to the
    rounding the guard pays."""
    import genrobust.bounds.steps as steps

    g = torch.Generator().manual_seed(0)
    boxes, rows, n = 5, 7, 40
    A = torch.randn(boxes * rows, n, generator=g)
    k = 3 if origin else 4
    maps = torch.rand(boxes, k, n, generator=g)
    ball = torch.arange(boxes).repeat_interleave(rows)
    out = {}
    for limit in (0, 1 << 40):
        monkeypatch.setattr(steps, "GATHER_BYTES", limit)
        out[limit] = steps.relax_step_by_ball(A, maps, ball, origin, origin)
    (new0, sum0, abs0), (new1, sum1, abs1) = out[0], out[1 << 40]
    assert torch.equal(new0, new1)
    assert torch.allclose(sum0, sum1, rtol=1e-5, atol=1e-6) and torch.allclose(abs0, abs1, rtol=1e-5, atol=1e-6)
    for b in range(boxes):  # each box's rows on its own lines
        own = steps.relax_step(A[ball == b], maps[b : b + 1], origin, origin)
        assert torch.equal(own[0], new1[ball == b])


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 0.5])
def test_relu_lines_hold_at_both_ends_in_exact_arithmetic(slope):
    """The chord above a (leaky) ReLU is rounded: checked with exact rationals at l and u (enough for lines
    against a convex piecewise-linear f), on intervals where u ≪ |l| that once broke the leaky chord by 1e-14."""
    from fractions import Fraction

    from genrobust.bounds.ops import LeakyReLU, ReLU

    torch.manual_seed(1)
    act = LeakyReLU((1,), slope) if slope else ReLU((1,))
    lo = -torch.exp(torch.empty(3000, dtype=torch.float64).uniform_(-5, 5))
    up = torch.exp(torch.empty(3000, dtype=torch.float64).uniform_(-40, 0)) * (-lo)
    s = Fraction(slope)
    for alpha in (None, torch.ones(3000, dtype=torch.float64), torch.rand(3000, dtype=torch.float64)):
        al, bl, au, bu = (t.tolist() for t in act.relax(lo, up, alpha))  # α-CROWN's lower lines too
        for i, (l_, u_) in enumerate(zip(lo.tolist(), up.tolist(), strict=True)):
            for x, fx in ((Fraction(l_), s * Fraction(l_)), (Fraction(u_), Fraction(u_))):
                assert Fraction(au[i]) * x + Fraction(bu[i]) >= fx
                assert Fraction(al[i]) * x + Fraction(bl[i]) <= fx


def test_relus_default_lower_line_leans_to_the_flat_piece_and_tightens_a_built_in_ball():
    """``BoundOptions.lower_ratio``: without α an unstable (leaky) ReLU's lower line has slope 1 where
    u ≥ ratio·(−l), else the leak's s, and α-CROWN starts from the same lines. On the built-in ball (0, 3) at
    ε = 0.05, ratio 2 (the default) lifts the whole box's worst margin from +7.38 (CROWN's adaptive rule, ratio 1)
    to +9.22, and both bounds hold on sampled latents."""
    from genrobust.bounds.ops import LeakyReLU, ReLU

    lo = torch.tensor([-1.0, -1.0, -1.0, -1.0, 0.5, -2.0], dtype=torch.float64)
    up = torch.tensor([0.5, 1.0, 1.5, 2.5, 1.0, -1.0], dtype=torch.float64)
    for act, s in ((ReLU((6,)), 0.0), (LeakyReLU((6,), 0.2), 0.2)):
        assert act.relax(lo, up)[0].tolist() == [s, 1, 1, 1, 1, s]  # CROWN's rule: the side of least area
        assert act.relax(lo, up, ratio=2.0)[0].tolist() == [s, s, s, 1, 1, s]
        assert act.relax(lo, up, ratio=math.inf)[0].tolist() == [s, s, s, s, 1, s]
        for r in (1.0, 2.0):
            start = act.alpha_init(lo, up, ratio=r)
            assert torch.equal(act.relax(lo, up, start, ratio=7.0)[0], act.relax(lo, up, ratio=r)[0])
    clf, gens, gen_ops, ops, z, spec, r = _built_in_ball_0_3()
    worst = {}
    for ratio in (1.0, 2.0):
        res = BoundEngine(ops, len(gen_ops), BoundOptions(lower_ratio=ratio)).margins(z, r, spec)
        worst[ratio] = float(res.lower.min())
        s = torch.rand(300, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 - 1
        s[:10] = s[:10].sign()
        with torch.no_grad():
            margins = (spec[0] @ torch.nn.Sequential(gens[0], clf).double().eval()(z + r * s).T).T
        assert (margins >= res.lower).all()
    assert BoundOptions().lower_ratio == 2.0
    assert worst[2.0] > worst[1.0] + 1.5, worst
    for bad in (-1.0, math.nan):
        with pytest.raises(gr.GenrobustError, match="lower_ratio"):
            BoundOptions(lower_ratio=bad)


@pytest.mark.parametrize("module_type", list(ACTIVATION_BUILDERS), ids=lambda t: t.__name__)
def test_every_activation_rule_holds_on_sampled_points_for_any_alpha(module_type):
    """Each row of the activation table: its interval holds f([l, u]), its lines sandwich f on [l, u] with slopes
    in [0, 1] (the engine's guards rely on it), for the default relaxation and for any α in [0, 1] (α-CROWN's
    optimised lines must be sound whether or not the optimisation converged)."""
    module = ACTS[module_type.__name__]()
    op = ACTIVATION_BUILDERS[module_type](module, (1,))
    g = torch.Generator().manual_seed(0)
    n = 4000
    scale = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-6, 3, generator=g))
    a, b = torch.randn(n, dtype=torch.float64, generator=g) * scale, torch.randn(n, dtype=torch.float64, generator=g)
    lo, up = torch.minimum(a, a + b * scale), torch.maximum(a, a + b * scale)
    up[:50] = lo[:50]  # degenerate intervals
    t = torch.rand(64, n, dtype=torch.float64, generator=g)
    t[0], t[1] = 0.0, 1.0  # both ends
    x = torch.minimum(torch.maximum(lo + t * (up - lo), lo), up)  # rounding must not leave [l, u]
    with torch.no_grad():
        fx = module.double()(x)
    il, iu = op.interval(lo, up)
    assert (il <= fx).all() and (fx <= iu).all()
    alphas = (None, torch.zeros(n), torch.ones(n), torch.rand(n, generator=g), torch.full((n,), 7.0))
    for alpha, ratio in [(a, 1.0) for a in alphas] + [(None, r) for r in (0.0, 0.5, 2.0, 3.7, math.inf)]:
        al, bl, au, bu = op.relax(lo, up, None if alpha is None else alpha.double(), ratio=ratio)
        assert ((al >= 0) & (al <= 1) & (au >= 0) & (au <= 1)).all()
        assert (al * x + bl <= fx).all(), float((al * x + bl - fx).max())
        assert (fx <= au * x + bu).all(), float((fx - au * x - bu).max())


@pytest.mark.parametrize("name", ["Tanh", "Sigmoid"])
def test_s_shaped_lines_across_zero_are_tangents_that_clear_the_far_end(name):
    """Across 0 an S-shaped curve is bounded above by the tangent (at a point between 0 and u) that passes over
    (l, f(l)), below by the tangent that passes under (u, f(u)), or by the chord where no tangent does: sound on a
    dense grid of every interval (narrow, wide, lopsided ones that take the chord), and much tighter than two
    parallel lines of the smaller endpoint slope (what they replaced)."""
    from genrobust.bounds import ops as ops_mod

    op = getattr(ops_mod, name)((1,))
    g = torch.Generator().manual_seed(3)
    n = 3000
    lo = -torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-6, 2.5, generator=g))
    up = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-6, 2.5, generator=g))
    al, bl, au, bu = (t[:, None] for t in op.relax(lo, up))
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    x = torch.minimum(torch.maximum(lo[:, None] + t * (up - lo)[:, None], lo[:, None]), up[:, None])
    x = torch.cat([x, torch.zeros(n, 1, dtype=torch.float64)], 1)  # the inflection point itself
    fx = op.forward(x)
    assert (al * x + bl <= fx).all() and (fx <= au * x + bu).all()
    assert ((al >= 0) & (al <= 1) & (au >= 0) & (au <= 1)).all()
    k = torch.minimum(op.deriv(lo), op.deriv(up))[:, None]
    parallel = (op.forward(up)[:, None] + k * (x - up[:, None])) - (op.forward(lo)[:, None] + k * (x - lo[:, None]))
    gap = (au * x + bu) - (al * x + bl)
    ratio = gap.mean(1) / parallel.mean(1)
    assert (ratio <= 1 + 1e-9).all()  # never looser
    wide = (up - lo) > 1
    assert float(ratio[wide].mean()) < 0.6, float(ratio[wide].mean())


def test_alpha_optimisation_only_tightens_and_hands_its_slopes_to_the_children():
    """α-CROWN on the margins: never below the plain bound (the best step is kept, and the plain lines are its
    start), tighter on a network with unstable ReLUs, still below every sampled margin; its slopes come back per
    box and margin for the children, and a start from them is at least as tight again."""
    gen, clf, d = _random_pair([3, 3, 10], "ReLU", "ReLU", "none", 1, 1, False, False, True, 2)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (2, 6, 6))
    center = torch.randn(3, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    radius = torch.full((3, d), 0.3, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([0, 1, 2]), 3)
    plain = BoundEngine(ops, len(gen_ops), BoundOptions()).margins(center, radius, spec)
    tuned_engine = BoundEngine(ops, len(gen_ops), BoundOptions(alpha_steps=8))
    tuned = tuned_engine.margins(center, radius, spec)
    assert (tuned.lower >= plain.lower).all() and (tuned.lower > plain.lower + 1e-6).any()
    # the dense head's inputs, each neuron's rows with their own slopes (carried to the latent: the generator's
    # ReLUs are on the path): inside the plain intervals, and tighter
    wide, kw = torch.full_like(radius, 1.0), {"refine_to_latent": True, "refine_limit": 1.0}  # unstable at the head
    ref = BoundEngine(ops, len(gen_ops), BoundOptions(**kw)).margins(center, wide, spec)
    got = BoundEngine(ops, len(gen_ops), BoundOptions(**kw, alpha_intermediate=8)).margins(center, wide, spec)
    k = max(got.intervals)
    (lo, hi), (lo0, hi0) = got.intervals[k], ref.intervals[k]
    assert (lo >= lo0).all() and (hi <= hi0).all() and (hi - lo).sum() < (hi0 - lo0).sum() - 1e-6
    assert tuned.alpha and all(a.shape[:2] == (3, 2) for a in tuned.alpha.values())
    again = tuned_engine.margins(center, radius, spec, alpha=tuned.alpha)
    assert (again.lower >= tuned.lower - 1e-9).all()
    s = torch.rand(2000, 3, d, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        logits = nn.Sequential(gen, clf).double()((center + radius * s).reshape(-1, d)).reshape(2000, 3, 3)
    assert (torch.einsum("bmk,nbk->nbm", spec, logits) >= again.lower[None]).all()
    for bad in (
        {"alpha_steps": -1},
        {"alpha_intermediate": -1},
        {"alpha_lr": 0.0},
        {"alpha_maps": -1},
        {"alpha_map_layers": 0},
    ):
        with pytest.raises(gr.GenrobustError, match="alpha"):
            BoundOptions(**bad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), steps=st.sampled_from([0, 4]), eps=st.sampled_from([0.1, 0.5]),
       share=st.sampled_from([0.2, 1.0]))  # fmt: skip
def test_relu_splits_bound_their_domain_with_any_multiplier(seed, steps, eps, share):
    """β-CROWN's ground: a box with ReLU splits (some inputs of the dense head's ReLU ≥ 0, others ≤ 0) is
    bounded on its domain: every sampled latent that satisfies the splits has margins above the bound, for
    the clamped intervals alone and with optimised multipliers; a domain the bounds show empty gets the largest
    bound, and no sampled latent lies in it."""
    gen, clf, d = _random_pair([seed, 3, 10], "ReLU", "ReLU", "none", 1, 1, False, False, True, 2)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (2, 6, 6))
    k = max(i for i, op in enumerate(ops) if not op.linear)  # the dense head's ReLU
    g = torch.Generator().manual_seed(seed)
    B = 4
    center = torch.randn(B, d, dtype=torch.float64, generator=g)
    radius = torch.full((B, d), eps, dtype=torch.float64)
    split = torch.randint(-1, 2, (B, *ops[k].in_shape), generator=g) * (torch.rand(B, *ops[k].in_shape, generator=g)
                                                                        < share)  # fmt: skip
    spec = _margin_spec(torch.tensor([0, 1, 2, 0]), 3)
    engine = BoundEngine(ops, len(gen_ops), BoundOptions(alpha_steps=steps, refine_limit=1.0))
    res = engine.margins(center, radius, spec, splits={k: split})
    s = torch.rand(3000, B, d, dtype=torch.float64, generator=g) * 2 - 1
    z = (center + radius * s).reshape(-1, d)
    with torch.no_grad():
        h = z
        for op in ops[:k]:
            h = op.forward(h)
        pre = h.reshape(3000, B, -1)
        inside = ((pre * split.reshape(1, B, -1)) >= 0).all(2)  # (3000, B): the latents of each box's domain
        logits = nn.Sequential(gen, clf).double()(z).reshape(3000, B, 3)
    margins = torch.einsum("bmk,nbk->nbm", spec, logits)
    ok = (margins >= res.lower[None]) | ~inside[:, :, None]
    assert ok.all(), float((res.lower[None] - margins)[~ok].max())
    huge = res.lower.min(1).values == torch.finfo(torch.float64).max
    assert not inside[:, huge].any()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), steps=st.sampled_from([0, 4]))
def test_a_relu_split_child_keeps_its_parents_intervals_and_stays_sound(seed, steps):
    """A ReLU split's children (the parent's box, one more constraint) bounded with ``settled``: layers up to
    the split keep the parent's intervals unrefined, later ones are refined again; the branching choice is an
    unstable ReLU of the classifier, and every sampled latent of each child's domain lies above its bound."""
    gen, clf, d = _random_pair([seed, 3, 10], "ReLU", "ReLU", "none", 1, 1, False, False, True, 2)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (2, 6, 6))
    engine = BoundEngine(ops, len(gen_ops), BoundOptions(refine_limit=1.0))
    g = torch.Generator().manual_seed(seed)
    center = torch.randn(1, d, dtype=torch.float64, generator=g)
    radius = torch.full((1, d), 0.4, dtype=torch.float64)
    spec = _margin_spec(torch.tensor([seed % 3]), 3)
    assert engine.margins(center, radius, spec).branch is None  # only when asked
    root = engine.margins(center, radius, spec, branch=True)
    k, n = int(root.branch[0][0, 0]), int(root.branch[1][0, 0])
    if k < 0:  # nothing unstable on the worst margin's path
        return
    assert k >= len(gen_ops) and isinstance(ops[k], ReLU) and float(root.branch[2][0, 0]) > 0
    lo_k, hi_k = root.intervals[k]
    assert lo_k.flatten()[n] < 0 < hi_k.flatten()[n]
    split = torch.zeros(2, *ops[k].in_shape, dtype=torch.int8)
    split.view(2, -1)[0, n], split.view(2, -1)[1, n] = 1, -1
    parent = {i: (a.repeat(2, *[1] * (a.ndim - 1)), b.repeat(2, *[1] * (b.ndim - 1)))
              for i, (a, b) in root.intervals.items()}  # fmt: skip
    twice = (center.repeat(2, 1), radius.repeat(2, 1), spec.repeat(2, 1, 1))
    kids = engine.margins(*twice, parent=parent, splits={k: split}, settled=torch.tensor([k, k]),
                          steps=torch.tensor([steps, steps]))  # fmt: skip
    for i, (lo_i, hi_i) in root.intervals.items():  # inside the parent's, and not refined again up to the split
        assert (kids.intervals[i][0] >= lo_i).all() and (kids.intervals[i][1] <= hi_i).all()
    unsettled = engine.margins(*twice, parent=parent, splits={k: split})
    assert kids.refined <= unsettled.refined
    s = torch.rand(4000, d, dtype=torch.float64, generator=g) * 2 - 1
    z = center + radius * s
    with torch.no_grad():
        h = z
        for op in ops[:k]:
            h = op.forward(h)
        x = h.reshape(len(z), -1)[:, n]
        logits = nn.Sequential(gen, clf).double()(z)
    margins = logits @ spec[0].T
    for side, child in ((0, x >= 0), (1, x <= 0)):
        assert (margins[child] >= kids.lower[side][None]).all()
    with pytest.raises(gr.GenrobustError, match="parent"):
        engine.margins(center, radius, spec, settled=torch.tensor([k]))


def test_refutation_reads_a_disjunction_of_conjunctions():
    """Rows refute constraints; a disjunct is refuted by any one of its rows, the property by every disjunct:
    the certificate is the worst disjunct's best row, and its row is the one to work on."""
    lower = torch.tensor([[0.5, -2.0, -1.0, 0.3], [-0.5, -2.0, -1.0, 0.3]], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1])
    cert, row = refutation(lower, groups)
    assert cert.tolist() == [0.3, -0.5] and row.tolist() == [3, 0]
    assert open_rows(lower, groups).tolist() == [[False] * 4, [True, True, False, False]]
    cert, row = refutation(lower)  # robustness: every row its own disjunct
    assert cert.tolist() == [-2.0, -2.0] and row.tolist() == [1, 1]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_fsb_estimates_bound_each_child_and_properties_shift_by_their_constants(seed):
    """:meth:`BoundEngine.split_bounds`, FSB's cheap estimate of every candidate's two children, is a sound
    lower bound of the rows on each child's domain (sampled), offsets included; candidates come best first."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    ops = capture(net, (6,))
    engine = BoundEngine(ops, 0, BoundOptions(classifier_forward=False, alpha_intermediate=0))
    g = torch.Generator().manual_seed(seed)
    center = torch.randn(1, 6, dtype=torch.float64, generator=g)
    radius = torch.full((1, 6), 0.5, dtype=torch.float64)
    spec = torch.randn(1, 4, 3, dtype=torch.float64, generator=g)
    offset = torch.randn(1, 4, dtype=torch.float64, generator=g)
    groups = torch.tensor([0, 0, 1, 2])
    plain = engine.margins(center, radius, spec)
    root = engine.margins(center, radius, spec, branch=3, offset=offset, groups=groups)
    assert torch.all(root.lower <= plain.lower + offset)  # the sum, rounded down
    op, neuron, score = root.branch
    assert torch.all(score[0, :-1] >= score[0, 1:])
    if int(op[0, 0]) < 0:
        return
    est = engine.split_bounds(center, radius, spec, root.intervals, op, neuron, offset, groups)
    z = center + radius * (torch.rand(5000, 6, dtype=torch.float64, generator=g) * 2 - 1)
    with torch.no_grad():
        rows = net(z) @ spec[0].T + offset[0]
        for j in range(op.shape[1]):
            k = int(op[0, j])
            if k < 0:
                assert torch.isinf(est[0, j]).all()
                continue
            x = net[:k](z)[:, int(neuron[0, j])]
            for side, child in ((0, x >= 0), (1, x <= 0)):
                assert (rows[child] >= est[0, j, side][None]).all()


def _lp_min(g: torch.Tensor, V: torch.Tensor, T: torch.Tensor) -> float:
    """min g·s over s ∈ [−1, 1]^d with V·s ≥ T, by linear programming (the reference for :func:`min_linear`)."""
    from scipy.optimize import linprog

    res = linprog(g.numpy(), A_ub=-V.numpy(), b_ub=-T.numpy(), bounds=[(-1, 1)] * len(g), method="highs")
    return float(res.fun) if res.status == 0 else math.inf


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 3), d=st.integers(2, 10))
def test_min_linear_over_a_cut_box_is_a_lower_bound_exact_for_one_half_space(seed, m, d):
    """Weak duality, checked against a linear program: every bound lies below the true minimum over the box and its
    half-spaces, equals it (to rounding) with one half-space, and is never looser than the box's own −‖g‖₁."""
    from genrobust.bounds.planes import Planes, min_linear

    g0 = torch.Generator().manual_seed(seed)
    g = torch.randn(6, d, dtype=torch.float64, generator=g0)
    P = torch.randn(m, d, dtype=torch.float64, generator=g0)
    q = torch.rand(m, dtype=torch.float64, generator=g0) - 0.7  # through, near and off the centre (maybe empty)
    center, radius = torch.zeros(1, d, dtype=torch.float64), torch.ones(1, d, dtype=torch.float64)
    planes = Planes.from_latent(torch.cat([P, q[:, None]], 1)[None], center, radius)
    got = min_linear(g, torch.zeros(6, dtype=torch.long), planes)
    # under autograd (α, β) the same bound, recomputed from g so that its gradient flows
    tracked = min_linear(g.clone().requires_grad_(True), torch.zeros(6, dtype=torch.long), planes)
    assert tracked.requires_grad and torch.allclose(tracked.detach(), got, rtol=0, atol=1e-12)
    for r in range(6):
        best = _lp_min(g[r], P, q)
        assert float(got[r]) <= best + 1e-9
        assert float(got[r]) >= -float(g[r].abs().sum()) - 1e-6  # less its rounding guard (10⁻⁹ of the terms)
        if m == 1 and math.isfinite(best):
            assert float(got[r]) == pytest.approx(best, abs=1e-7)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ints=st.tuples(st.integers(0, 10_000), st.integers(2, 4), st.integers(4, 12)),
    act_g=st.sampled_from(sorted(ACTS)),
    act_c=st.sampled_from(sorted(ACTS)),
    eps=st.sampled_from([0.1, 0.5]),
    m=st.integers(1, 3),
    to_latent=st.booleans(),
    refine32=st.booleans(),
    alpha=st.booleans(),
    convs=st.integers(1, 2),
    cells=st.sampled_from([0, 1]),
)
def test_bounds_over_boxes_cut_by_half_spaces_contain_every_sampled_point_of_the_cut(
    ints, act_g, act_c, eps, m, to_latent, refine32, alpha, convs, cells
):  # fmt: skip
    """The oblique split's ground: with half-spaces P·z ≥ q cutting each box, the margins' bounds and every kept
    interval hold at every sampled latent of the box that satisfies them (forms, refinement rows to the image or
    the latent, α rows as their own boxes, cells of the generator; a domain the bounds show empty holds none), and
    the directions come back symmetric and positive semi-definite. (Tighter intervals may still give a looser
    bound: adaptive relaxation lines are not monotone in them.)"""
    gen, clf, d = _random_pair(list(ints), act_g, act_c, "none", 1, 1, False, False, True, convs, 1)
    gen_ops = capture(gen, (d,))
    ops = gen_ops + capture(clf, (1, 6, 6))
    opts = BoundOptions(refine_dtype=torch.float32 if refine32 else torch.float64, row_chunk=7,
                        refine_to_latent=to_latent, alpha_steps=3 if alpha else 0, alpha_intermediate=2 if alpha else 0,
                        alpha_lr=0.5, generator_cells=cells, refine_limit=1.0)  # fmt: skip
    engine = BoundEngine(ops, len(gen_ops), opts)
    g0 = torch.Generator().manual_seed(ints[0])
    B = 3
    center = torch.randn(B, d, dtype=torch.float64, generator=g0)
    radius = torch.full((B, d), eps, dtype=torch.float64)
    P = torch.randn(B, m, d, dtype=torch.float64, generator=g0)
    q = (P * center[:, None]).sum(2) + (torch.rand(B, m, dtype=torch.float64, generator=g0) - 0.5) * eps
    planes = torch.cat([P, q[..., None]], 2)
    planes[0, -1] = 0.0  # a row of zeros: no constraint
    spec = _margin_spec(torch.tensor([0, 1, 2]), 3)
    res = engine.margins(center, radius, spec, planes=planes, directions=True)
    D = res.directions
    assert D.shape == (B, d, d) and torch.allclose(D, D.transpose(1, 2))
    assert (torch.linalg.eigvalsh(D) >= -1e-9).all()
    s = torch.rand(3000, B, d, dtype=torch.float64, generator=g0) * 2 - 1
    z = (center + radius * s).reshape(-1, d)
    inside = ((torch.einsum("nbd,bmd->nbm", z.reshape(3000, B, d), P) >= q[None]) | (P.abs().sum(2) == 0)[None]).all(2)
    with torch.no_grad():
        logits = nn.Sequential(gen, clf).double()(z).reshape(3000, B, 3)
        margins = torch.einsum("bmk,nbk->nbm", spec, logits)
        ok = (margins >= res.lower[None]) | ~inside[:, :, None]
        assert ok.all(), float((res.lower[None] - margins)[~ok].max())
        for i, (lo, hi) in res.intervals.items():
            h = z
            for op in ops[:i]:
                h = op.forward(h)
            h = h.reshape(3000, B, -1)
            fine = ((h >= lo.reshape(1, B, -1) - 1e-12) & (h <= hi.reshape(1, B, -1) + 1e-12)).all(2) | ~inside
            assert fine.all(), i
    # bad half-spaces: one clear message, whatever their shape
    for bad in (torch.tensor(1.0), planes[0], planes[..., :-1], planes[:2], torch.full_like(planes, math.nan)):
        with pytest.raises(gr.GenrobustError, match="planes: finite"):
            engine.margins(center, radius, spec, planes=bad)
