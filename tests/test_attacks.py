"""Latent-space attacks: on a toy C∘G whose decision boundary is a known hyperplane they find examples exactly
where they exist and never where they cannot; every reported witness survives an independent re-check."""

import json

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

import genrobust as gr
from genrobust import attacks
from genrobust.attacks import attack_latents, box_bounds, realistic_adversarial
from genrobust.cli import main
from genrobust.compose import Composed

D = 4


def toy(seed: int) -> tuple[nn.Module, torch.Tensor, float]:
    """G: linear latent → 8×8 image; C: flatten + linear → 2 logits. C∘G is affine, so class 1 ⇔ a·z + b > 0
    (a tie goes to class 0, as argmax picks the first maximum). Returns (C∘G, a, b)."""
    torch.manual_seed(seed)
    gen = nn.Sequential(nn.Linear(D, 64), nn.Unflatten(1, (1, 8, 8)))
    clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    model = Composed(clf, gen).double()
    w = clf[1].weight @ gen[0].weight  # (2, D)
    bias = clf[1].weight @ gen[0].bias + clf[1].bias
    a, b = (w[1] - w[0]).detach(), float((bias[1] - bias[0]).detach())
    return model.float(), a, b


def class0_starts(a: torch.Tensor, b: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n latents classified 0 with a margin, and their exact ∞-distance to the boundary, |a·z + b| / ‖a‖₁."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4 * n, D, generator=g)
    g_val = z.double() @ a.double() + b
    z = z[g_val < -0.05][:n]
    return z, -(z.double() @ a.double() + b) / a.abs().sum()


@pytest.mark.parametrize("method", ["pgd", "whitebox"])
def test_gradient_attacks_find_examples_exactly_where_they_exist(method):
    model, a, b = toy(0)
    z, dist = class0_starts(a, b, 40, seed=1)
    for factor, expect in ((1.02, True), (0.98, False)):
        for k in range(len(z)):
            res = attack_latents(model, z[k : k + 1], eps=float(dist[k]) * factor, method=method, target=1)
            assert bool(res.success[0, 0]) == expect, (method, k, factor)


def test_gradient_attacks_batched_over_starts_and_eps():
    model, a, b = toy(0)
    z, dist = class0_starts(a, b, 30, seed=2)
    eps = [0.2, 0.5, 1.0, 2.0]
    exists = dist[:, None] < torch.tensor(eps, dtype=torch.float64)[None] * 0.99
    cannot = dist[:, None] > torch.tensor(eps, dtype=torch.float64)[None] * 1.01
    for method in ("pgd", "whitebox"):
        res = attack_latents(model, z, eps=eps, method=method, target=1, rows_per_chunk=7)
        assert res.success.shape == (len(z), len(eps))
        assert res.success[exists].all() and not res.success[cannot].any()


def test_blackbox_finds_examples_well_inside_and_never_outside():
    model, a, b = toy(3)
    z, dist = class0_starts(a, b, 40, seed=4)
    inside = torch.stack([attack_latents(model, z[k : k + 1], eps=3 * float(dist[k]), method="blackbox",
                                         target=1).success[0, 0] for k in range(len(z))])  # fmt: skip
    assert inside.float().mean() >= 0.9
    outside = [attack_latents(model, z[k : k + 1], eps=0.97 * float(dist[k]), method="blackbox", target=1)
               for k in range(10)]  # fmt: skip
    assert not any(r.success.any() for r in outside)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 3.0), method=st.sampled_from(attacks.METHODS))
def test_every_witness_is_within_eps_and_rechecked(seed, eps, method):
    model, a, b = toy(seed)
    z = torch.randn(12, D, generator=torch.Generator().manual_seed(seed))
    res = attack_latents(model, z, eps=eps, method=method, seed=seed, steps=8)
    for ex in res.examples():
        assert (ex.z_adv.double() - ex.z.double()).abs().max() <= eps
        side = lambda v: int(float(v.double() @ a.double() + b) > 0)  # noqa: E731
        # the exact (float64) class of both points agrees with the re-check unless a point is on the boundary
        if abs(float(ex.z_adv.double() @ a.double() + b)) > 1e-4:
            assert side(ex.z_adv) == ex.pred_adv
        assert ex.pred_adv != ex.pred
    # and nothing is found where the boundary is farther than ε from the start
    dist = (z.double() @ a.double() + b).abs() / a.abs().sum()
    assert not res.success[dist > eps * 1.001, 0].any()


def test_box_bounds_hold_in_exact_arithmetic():
    z = torch.randn(1000, D) * 3
    eps = torch.rand(1000, dtype=torch.float64) * 0.7 + 1e-3
    lo, hi = box_bounds(z, eps)
    assert ((z.double() - lo.double()) <= eps[:, None]).all() and ((hi.double() - z.double()) <= eps[:, None]).all()
    assert (lo <= z).all() and (z <= hi).all()


def test_the_recheck_refuses_what_the_search_claims_wrongly(monkeypatch):
    model, a, b = toy(0)
    z, dist = class0_starts(a, b, 5, seed=1)

    class Liar(nn.Module):  # the search's fast copy claims class 1 everywhere; the plain model disagrees
        def forward(self, x):
            return torch.stack([torch.zeros(len(x)), 1 + x.sum(1) * 0], 1)

    monkeypatch.setattr(attacks, "inference_copy", lambda m: Liar())
    res = attack_latents(model, z, eps=float(dist.min()) * 0.5, method="blackbox", target=1)
    assert res.rejected == len(z) and not res.success.any() and res.examples() == []


def test_seeded_and_independent_of_chunking():
    model, _, _ = toy(5)
    z = torch.randn(20, D, generator=torch.Generator().manual_seed(0))
    for method in attacks.METHODS:
        one = attack_latents(model, z, eps=[0.3, 0.8], method=method, seed=7, rows_per_chunk=3)
        two = attack_latents(model, z, eps=[0.3, 0.8], method=method, seed=7, rows_per_chunk=64)
        assert torch.equal(one.success, two.success) and torch.equal(one.queries, two.queries)
        assert torch.equal(one.z_adv.nan_to_num(), two.z_adv.nan_to_num())


def test_bad_input_is_refused():
    model, _, _ = toy(0)
    z = torch.randn(3, D)
    for eps, msg in ((0.0, "ε must be"), (-1.0, "ε must be"), (float("nan"), "ε must be"), ([], "at least one")):
        with pytest.raises(gr.GenrobustError, match=msg):
            attack_latents(model, z, eps=eps)
    with pytest.raises(gr.GenrobustError, match="unknown attack method"):
        attack_latents(model, z, eps=0.1, method="magic")
    with pytest.raises(gr.GenrobustError, match="target class 5 out of range"):
        attack_latents(model, z, eps=0.1, target=5)
    with pytest.raises(gr.GenrobustError, match="NaN"):
        attack_latents(model, torch.full((2, D), float("nan")), eps=0.1)
    with pytest.raises(gr.GenrobustError, match="shape"):
        attack_latents(model, torch.randn(D), eps=0.1)
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    with pytest.raises(gr.GenrobustError, match="same class"):
        realistic_adversarial(clf, gens, source=8, target=8, eps=0.5)
    with pytest.raises(gr.GenrobustError, match="unknown source class 12"):
        realistic_adversarial(clf, gens, source=12, target=3, eps=0.5)


@pytest.mark.parametrize("method", attacks.METHODS)
def test_each_method_finds_8_to_3_on_the_builtin_models(method):
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    clf.train()  # the attack works on copies in eval mode: the caller's models are left as they were
    res = realistic_adversarial(clf, gens, source=8, target=3, eps=1.0, method=method, n_starts=12, seed=0)
    assert clf.training and all(p.requires_grad for p in clf.parameters())
    clf.eval()
    examples = res.examples()
    assert examples, res.table()
    with torch.no_grad():  # independent re-check with the caller's own models
        for ex in examples:
            pa, pb = (clf(gens[8](v[None])).argmax(1).item() for v in (ex.z, ex.z_adv))
            assert (pa, pb) == (8, 3) and (ex.pred, ex.pred_adv) == (8, 3)
            assert ex.distance <= 1.0
    m = res.metrics()[0]
    assert m["examples"] == len(examples) and m["seconds_to_first_example"] > 0 and m["total_queries"] > 0


def test_cli_attack_writes_pairs_gif_and_json(tmp_path):
    out = tmp_path / "att"
    args = ["attack", "--method", "whitebox", "--source", "8", "--target", "3", "--eps", "0.5,1", "--starts", "8"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "whitebox (target 3)" in result.output
    data = json.loads((out / "result.json").read_text())
    assert [m["eps"] for m in data["metrics"]] == [0.5, 1.0] and data["examples"]
    gif = Image.open(out / "path.gif")
    assert gif.is_animated and gif.n_frames >= 24
    assert Image.open(out / "pairs.png").size[0] > 100
    bad = CliRunner().invoke(main, [*args[:-4], "--eps", "-1", "--starts", "8"])
    assert bad.exit_code != 0 and "ε must be" in bad.output


def test_untargeted_search_on_the_builtin_models_changes_the_label():
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    res = realistic_adversarial(clf, gens, source=8, eps=[0.5, 1.0], method="pgd", n_starts=8, seed=1)
    assert res.target is None and res.success.shape == (8, 2)
    examples = res.examples()
    assert examples and all(ex.pred == 8 and ex.pred_adv != 8 and ex.distance <= ex.eps for ex in examples)
    # a larger ball contains the smaller one: PGD from the same restarts should not do worse there
    assert res.success[:, 1].sum() >= res.success[:, 0].sum()
