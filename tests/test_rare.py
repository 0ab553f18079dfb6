"""Adaptive multilevel splitting: closed-form answers down to 10⁻⁹, its own intervals' coverage, independence of
the groups, bad input, and agreement with plain Monte Carlo on the built-in models."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import norm

import genrobust as gr
from genrobust.cli import main
from genrobust.errors import GenrobustError
from genrobust.rare import adaptive_splitting, summarise

D = 10


def _half_spaces(*thresholds: float, seed: int = 0):
    """s(z) = min_i (a_i·z − t_i) for orthonormal a_i: failure is the intersection of the half-spaces, whose
    probability under N(0, I) is Π Φ(−t_i)."""
    a, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    dirs = a[:, : len(thresholds)].T.float()  # (k, D), orthonormal rows
    t = torch.tensor(thresholds, dtype=torch.float32)

    def score(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        return (z @ dirs.T - t).min(-1).values

    return score, math.prod(float(norm.cdf(-x)) for x in thresholds)


def test_a_half_space_at_one_in_a_million_is_estimated_without_bias_and_its_intervals_cover():
    score, p = _half_spaces(float(-norm.ppf(1e-6)))
    runs = adaptive_splitting(score, D, list(range(60)), particles=200, quantile=0.5, mcmc_steps=10, seed=3)
    est = np.array([r.estimate for r in runs])
    assert all(r.reached for r in runs)
    assert abs(est.mean() / p - 1) < 0.15  # 60 runs of ~30% relative error each: the mean's sd is ~4%
    own = np.mean([lo <= p <= hi for lo, hi in (r.interval(0.95) for r in runs)])
    assert own >= 0.85, own  # nominal 95%: asymptotic, and the moves do not mix perfectly
    _, lo, hi, how = summarise(runs, 0.95)
    assert lo <= p <= hi and "Student t over 60" in how
    # the cost: 4/P = 4·10⁶ samples for plain Monte Carlo's 50% relative error
    assert runs[0].evaluations < 60_000 and np.sqrt(np.mean((est / p - 1) ** 2)) < 0.5


def test_two_half_spaces_at_one_in_a_billion():
    t = float(-norm.ppf(math.sqrt(1e-9)))
    score, p = _half_spaces(t, t, seed=1)
    assert p == pytest.approx(1e-9, rel=1e-6)
    runs = adaptive_splitting(score, D, list(range(40)), particles=200, mcmc_steps=10, seed=5)
    est = np.array([r.estimate for r in runs])
    assert abs(est.mean() / p - 1) < 0.25
    assert np.mean([lo <= p <= hi for lo, hi in (r.interval() for r in runs)]) >= 0.8
    assert max(r.evaluations for r in runs) < 100_000  # plain Monte Carlo: 4·10⁹


@pytest.mark.parametrize("p", [1e-3, 1e-12])
def test_the_stated_intervals_cover_at_the_ends_of_the_range(p):
    score, truth = _half_spaces(float(-norm.ppf(p)), seed=2)
    runs = adaptive_splitting(score, D, list(range(30)), particles=150, mcmc_steps=10, seed=11)
    est = np.array([r.estimate for r in runs])
    assert abs(est.mean() / truth - 1) < 0.3
    assert np.mean([lo <= truth <= hi for lo, hi in (r.interval() for r in runs)]) >= 0.8


def test_a_group_draws_from_its_own_stream_whoever_runs_beside_it():
    score, _ = _half_spaces(3.0)
    alone = adaptive_splitting(score, D, [5], particles=50, mcmc_steps=3, seed=9)[0]
    together = adaptive_splitting(score, D, [3, 5, 7], particles=50, mcmc_steps=3, seed=9)
    assert together[1].estimate == alone.estimate and together[1].levels == alone.levels
    assert together[0].estimate != alone.estimate
    other_seed = adaptive_splitting(score, D, [5], particles=50, mcmc_steps=3, seed=10)[0]
    assert other_seed.estimate != alone.estimate


def test_bad_settings_and_scores_give_clear_errors():
    score, _ = _half_spaces(3.0)
    for kwargs, message in [
        ({"particles": 5}, "particles must be an integer ≥ 10"),
        ({"quantile": 0.0}, "quantile must be in (0, 1)"),
        ({"quantile": 1.0}, "quantile must be in (0, 1)"),
        ({"mcmc_steps": 0}, "mcmc_steps must be a positive integer"),
        ({"max_levels": 0}, "max_levels must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ]:
        with pytest.raises(GenrobustError, match=message.replace("(", r"\(").replace(")", r"\)")):
            adaptive_splitting(score, D, [0], **kwargs)
    with pytest.raises(GenrobustError, match="score is NaN"):
        adaptive_splitting(lambda z, g: torch.full(z.shape[:2], math.nan), D, [0], particles=20)
    with pytest.raises(GenrobustError, match="constant score cannot be split"):
        adaptive_splitting(lambda z, g: torch.full(z.shape[:2], -1.0), D, [0], particles=20)


def test_a_failure_beyond_the_last_level_is_reported_as_a_bound_not_as_zero():
    score, p = _half_spaces(8.0)  # P ≈ 6·10⁻¹⁶
    run = adaptive_splitting(score, D, [0], particles=100, mcmc_steps=5, max_levels=5, seed=0)[0]
    assert not run.reached and len(run.levels) == 5
    assert run.estimate == pytest.approx(0.5**5, rel=0.2) and run.estimate > p
    # a case that always fails needs no level at all
    always = adaptive_splitting(lambda z, g: torch.ones(z.shape[:2]), D, [0], particles=20)[0]
    assert always.reached and always.estimate == 1.0 and not always.levels


@pytest.fixture(scope="module")
def models():
    return gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")


def test_rare_failure_agrees_with_plain_monte_carlo_on_a_weak_class(models, tmp_path):
    clf, gens = models
    mc = gr.global_correctness(clf, gens, n=2048, classes=[8], seed=0).classes[0]
    res = gr.rare_failure(clf, gens, classes=[8], particles=100, mcmc_steps=5, repeats=3, delta=0.5, seed=0)
    c = res.classes[0]
    assert c.reached and len(c.runs) == 3 and c.interval.startswith("Student t")
    assert c.ci_low <= 1 - mc.ci_low and 1 - mc.ci_high <= c.ci_high  # the two intervals overlap
    assert res.verdict == "holds" and "δ = 0.5: holds" in res.table()
    data = res.to_dict()
    assert data["method"] == "amls" and data["classes"][0]["evaluations"] == c.evaluations
    assert c.failures and all(int(clf(gens[8](torch.tensor([z]))).argmax()) != 8 for z in c.failures[:4])
    from genrobust.report.rare import save_failures, save_levels_plot

    assert save_failures(res, tmp_path / "f.png") and save_levels_plot(res, tmp_path / "l.png")


def test_correctness_command_with_amls_writes_its_result_and_report(tmp_path):
    out = tmp_path / "rare"
    args = ["correctness", "--method", "amls", "--particles", "10", "--mcmc-steps", "1", "--max-levels", "2",
            "--delta", "1e-6", "--quiet", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "P(failure)" in result.output and "model evaluations" in result.output
    data = json.loads((out / "result.json").read_text())
    assert len(data["classes"]) == 10 and data["settings"]["particles"] == 10
    assert (out / "levels.png").is_file()
    html = tmp_path / "report.html"
    rep = CliRunner().invoke(main, ["report", str(out), "--out", str(html)])
    assert rep.exit_code == 0, rep.output
    assert "adaptive multilevel splitting" in html.read_text()
    bad = CliRunner().invoke(main, ["correctness", "--method", "amls", "--quantile", "1.5"])
    assert bad.exit_code == 1 and "quantile must be in (0, 1)" in bad.output
    mixed = CliRunner().invoke(main, ["correctness", "--method", "amls", "--sequential"])
    assert mixed.exit_code != 0 and "drop --sequential" in mixed.output


def test_rare_broken_boxes_are_attacked_and_the_last_level_goes_to_the_verifier(models):
    from genrobust.rare import box_margin_score
    from genrobust.verify import VerifyOptions

    clf, gens = models
    opts = VerifyOptions(max_boxes=2, max_seconds=5.0)
    res = gr.rare_failure(clf, gens, eps=0.03, classes=[8], particles=20, mcmc_steps=2, max_levels=3, verify=2,
                          verify_options=opts, delta=0.5)  # fmt: skip
    c = res.classes[0]
    assert res.to_dict()["kind"] == "rare-failures" and res.to_dict()["failure"] == "robustness"
    assert "ε = 0.03" in res.table()
    assert c.last_level is not None and c.last_level["checked"] <= 2
    assert sum(c.last_level[k] for k in ("certified", "falsified", "unknown")) == c.last_level["checked"]
    if c.failures:  # every reported broken box really holds a latent the classifier labels otherwise
        score = box_margin_score(clf.eval().requires_grad_(False), gens, [8], 0.03)
        assert (score(torch.tensor([c.failures]), torch.tensor([0])) >= 0).all()
    many = CliRunner().invoke(main, ["robustness", "--method", "amls", "--eps", "0.03,0.05", "--quiet"])
    assert many.exit_code != 0 and "takes one ε" in many.output
