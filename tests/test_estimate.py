"""Global correctness on the built-in models: exact counting, determinism, sequential stopping, bad input."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import genrobust as gr
from genrobust.cli import main
from genrobust.compose import PROBE
from genrobust.estimate import latents


@pytest.fixture(scope="module")
def models():
    return gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")


def test_counts_match_a_direct_computation_and_ignore_batch_size(models):
    clf, gens = models
    a = gr.global_correctness(clf, gens, n=300, classes=[2, 8], seed=4, batch_size=1000)
    b = gr.global_correctness(clf, gens, n=300, classes=[2, 8], seed=4, batch_size=37)
    assert [c.correct for c in a.classes] == [c.correct for c in b.classes]
    with torch.no_grad():
        z = latents(4, 8, 300, gens.latent_dim)
        direct = int((clf(gens[8](z)).argmax(1) == 8).sum())
    assert a.classes[1].correct == direct
    assert a.classes[1].ci_low <= a.classes[1].estimate <= a.classes[1].ci_high
    # A different seed draws different latents.
    c = gr.global_correctness(clf, gens, n=300, classes=[8], seed=5)
    assert not torch.equal(latents(5, 8, 300, 10), z) and c.classes[0].n == 300


def test_result_table_json_outliers(models, tmp_path):
    from genrobust.report import save_confidence_profile, save_outliers

    clf, gens = models
    res = gr.global_correctness(clf, gens, n=200, classes=[8, 9], keep_outliers=5)
    d = json.loads(json.dumps(res.to_dict()))
    assert [c["cls"] for c in d["classes"]] == [8, 9] and d["verdict"] in ("holds", "fails", "undecided")
    assert set(d["classes"][0]["confident"]) == {"0.90", "0.97", "0.99"}
    assert "worst class" in res.table()
    wrong = sum(c.n - c.correct for c in res.classes)
    assert len(res.outlier_list) == sum(min(5, c.n - c.correct) for c in res.classes) <= wrong
    if res.outlier_list:
        o = res.outlier_list[0]
        with torch.no_grad():
            assert int(clf(gens[o.cls](torch.tensor([o.latent]))).argmax(1)) == o.predicted != o.cls
        assert save_outliers(res, tmp_path / "o.png", 3)
        confs = [o.confidence for o in res.outliers(10).items]
        assert confs == sorted(confs, reverse=True)
    assert save_confidence_profile(res, tmp_path / "profile.png")


def test_sequential_mode_stops_early(models):
    clf, gens = models
    res = gr.global_correctness(clf, gens, n=5000, classes=[1], delta=0.05, sequential=True, batch_size=256)
    c = res.classes[0]
    assert c.verdict == "holds" and c.decided_at is not None and c.n == c.decided_at < 5000


class _NaNGenerator(nn.Module):
    def forward(self, z):
        return torch.full((z.shape[0], 1, 28, 28), float("nan"))


def test_bad_input_gives_clear_errors(models):
    clf, gens = models
    for kwargs, msg in (
        ({"n": 0}, "n must be a positive"),
        ({"delta": 1.0}, "delta"),
        ({"confidence": 1.5}, "confidence"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"batch_size": 12.5}, "batch_size must be a positive integer"),
        ({"classes": []}, "classes is empty"),
    ):
        with pytest.raises(gr.GenrobustError, match=msg):
            gr.global_correctness(clf, gens, **kwargs)
    five = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    with pytest.raises(gr.GenrobustError, match="5 logits but the generator family has 10"):
        gr.global_correctness(five, gens, n=10)
    wrong_shape = nn.Sequential(nn.Flatten(), nn.Linear(1024, 10))
    with pytest.raises(gr.GenrobustError, match=r"cannot take the generator's images of shape \(1, 28, 28\)"):
        gr.global_correctness(wrong_shape, gens, n=10)
    gens.per_class[3] = _NaNGenerator()
    try:
        with pytest.raises(gr.GenrobustError, match="class 3 produced NaN"):
            gr.global_correctness(clf, gens, n=10)
    finally:
        gens.per_class[3] = gr.load_generators("mnist-gan").per_class[3]


class _NaNAwayFromZero(nn.Module):
    """Passes the compatibility probe (16 latents), then draws NaN pixels: the error must blame the generator."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, z):
        x = self.inner(z)
        return x if len(z) <= PROBE else torch.full_like(x, float("nan"))


def test_nan_from_a_generator_is_blamed_on_the_generator(models):
    clf, gens = models
    original = gens.per_class[2]
    gens.per_class[2] = _NaNAwayFromZero(original)
    try:
        with pytest.raises(gr.GenrobustError, match="the generator of class 2 returned NaN"):
            gr.global_correctness(clf, gens, n=50, classes=[2])
    finally:
        gens.per_class[2] = original


def test_correctness_command(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["correctness", "-n", "100", "--quiet", "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "worst class" in result.output
    assert (out / "confidence_profile.png").is_file()
    data = json.loads((out / "result.json").read_text())
    assert len(data["classes"]) == 10 and all(c["share"]["n"] == 100 for c in data["classes"])
    bad = CliRunner().invoke(main, ["correctness", "-n", "0"])
    assert bad.exit_code == 1 and "n must be a positive" in bad.output
    negative = CliRunner().invoke(main, ["correctness", "-n", "10", "--seed", "-3"])
    assert negative.exit_code == 1 and "seed must be a non-negative integer, got -3" in negative.output


def test_inference_copy_is_faster_layout_same_values(models):
    from genrobust.models.layout import inference_copy

    clf, _ = models
    fast = inference_copy(clf)
    assert fast is not clf and fast.module.features[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert not clf.features[2].weight.is_contiguous(memory_format=torch.channels_last)  # caller's model untouched
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), clf(x), atol=1e-5, rtol=1e-5)


def test_the_overall_fails_needs_a_class_to_fail_after_bonferroni():
    from genrobust.estimate import ClassEstimate, CorrectnessResult
    from genrobust.stats import Proportion

    def cls(c: int, k: int, n: int = 2000) -> ClassEstimate:
        p = Proportion(k, n, 0.95)
        return ClassEstimate(c, str(c), p, p.verdict(0.05))

    alone = CorrectnessResult(0.05, 0.95, 0, [cls(c, 1990) for c in range(9)] + [cls(9, 1872)], [])
    assert [c.cls for c in alone.failing] == [9] and alone.failing_familywise == []
    assert alone.verdict == "undecided"
    assert alone.table().endswith("δ = 0.05: undecided (9 fails alone, not after Bonferroni over 10 classes)")
    assert alone.to_dict()["failing_classes"] == [9] and alone.to_dict()["failing_classes_familywise"] == []
    clear = CorrectnessResult(0.05, 0.95, 0, [cls(c, 1990) for c in range(9)] + [cls(9, 1800)], [])
    assert clear.verdict == "fails" and clear.table().endswith("δ = 0.05: fails")


def test_a_class_listed_twice_is_refused(models):
    clf, gens = models
    with pytest.raises(gr.GenrobustError, match="class 0 listed more than once"):
        gr.global_correctness(clf, gens, n=10, classes=[0, 1, 0])


def test_a_loaded_result_draws_its_outliers_once_its_own_generators_are_attached(models, tmp_path):
    """A result read back from JSON has no models; ``with_generators`` attaches the family it judged, checked class
    by class against the SHA-256s in its provenance, so the pictures come from the weights behind the numbers."""
    import copy

    from genrobust.report import save_outliers

    clf, gens = models
    res = gr.global_correctness(clf, gens, n=300, classes=[8, 9], keep_outliers=4)
    assert res.outlier_list  # the built-in pair misclassifies some eights and nines in 300 draws
    res.save_json(tmp_path / "r.json")
    loaded = gr.load_result(tmp_path / "r.json")
    with pytest.raises(gr.GenrobustError, match="with_generators"):
        save_outliers(loaded, tmp_path / "none.png", 4)
    attached = loaded.with_generators(gens)
    assert attached is not loaded and loaded.generators is None and attached.generators is gens
    assert save_outliers(attached, tmp_path / "o.png", 4)
    assert torch.equal(attached.outliers(4).images(), res.outliers(4).images())
    other = copy.deepcopy(gens)
    with torch.no_grad():
        next(other[9].parameters()).add_(1e-3)  # class 9 changed, class 8 not
    with pytest.raises(gr.GenrobustError, match="class 9's generator is not the one this result judged"):
        loaded.with_generators(other)
    fewer = gr.GeneratorFamily([gens[c] for c in range(9)], latent_dim=gens.latent_dim)  # classes 0-8 only
    with pytest.raises(gr.GenrobustError, match="judged class 9, but the family has 9 classes"):
        loaded.with_generators(fewer)
    with pytest.raises(gr.GenrobustError, match="must be a GeneratorFamily"):
        loaded.with_generators(gens[8])
    loaded.provenance.models.pop("generators")
    with pytest.raises(gr.GenrobustError, match="records no generator hashes"):
        loaded.with_generators(gens)
    table = gr.load_result(Path(__file__).parents[1] / "docs" / "correctness-table-mnist.json")
    with pytest.raises(gr.GenrobustError, match="a correctness-table result keeps no generators"):
        table.with_generators(gens)  # a table judges many families and keeps none
