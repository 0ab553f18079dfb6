"""The generator-dependence study: the two-proportion test on counts with known answers and its error rate by
simulation, Newcombe's interval against his examples and by coverage, the comparisons on synthetic counts with a
known answer, and the pipeline (GANs on halves, cached cells, the doc) on a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import genrobust as gr
from genrobust.cli import main
from genrobust.experiments.dependence import (
    DependencePlan,
    comparisons,
    dependence_markdown,
    overlap,
    save_difference_plot,
)
from genrobust.stats import difference_interval, two_proportion_test, wilson_interval


def test_two_proportion_test_known_values():
    diff, p = two_proportion_test(60, 100, 50, 100)
    assert diff == pytest.approx(0.1)
    assert p == pytest.approx(0.1552, abs=1e-4)  # z = 0.1 / sqrt(0.55·0.45·0.02) = 1.4213
    assert two_proportion_test(100, 100, 200, 200) == (0.0, 1.0)
    assert two_proportion_test(9000, 10000, 8800, 10000)[1] < 1e-4
    with pytest.raises(gr.GenrobustError, match="invalid counts"):
        two_proportion_test(5, 4, 1, 2)


def test_two_proportion_test_rejects_at_its_level_under_the_null():
    rng = np.random.default_rng(0)
    k1, k2 = rng.binomial(2000, 0.95, size=4000), rng.binomial(2000, 0.95, size=4000)
    rate = np.mean([two_proportion_test(int(a), 2000, int(b), 2000)[1] < 0.05 for a, b in zip(k1, k2, strict=True)])
    assert 0.04 < rate < 0.06  # the nominal 5%
    k2 = rng.binomial(2000, 0.92, size=500)  # and a 3-point difference at n = 2000 it sees (power ≈ 0.97)
    power = np.mean([two_proportion_test(int(a), 2000, int(b), 2000)[1] < 0.05 for a, b in zip(k1, k2, strict=False)])
    assert power > 0.93


def test_newcombes_interval_matches_his_published_examples():
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)  # Newcombe (1998a)
    # Newcombe (1998b), Table II, method 10
    assert difference_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert difference_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    assert difference_interval(5, 56, 0, 29) == pytest.approx((-0.0381, 0.1926), abs=1e-4)
    with pytest.raises(gr.GenrobustError, match="invalid counts"):
        difference_interval(3, 2, 1, 2)


@pytest.mark.parametrize("p1,p2", [(0.95, 0.95), (0.99, 0.97), (0.6, 0.5)])
def test_newcombes_interval_covers_the_true_difference_at_its_level(p1, p2):
    rng = np.random.default_rng(1)
    k1, k2 = rng.binomial(500, p1, size=3000), rng.binomial(500, p2, size=3000)
    cover = np.mean([lo <= p1 - p2 <= hi for lo, hi in (difference_interval(int(a), 500, int(b), 500)
                                                        for a, b in zip(k1, k2, strict=True))])  # fmt: skip
    assert 0.935 < cover < 0.975  # nominal 95% (3,000 draws: ±0.8 points)


def _cell(correct: list[int], n: int) -> dict:
    return {"correct": correct, "n": [n] * len(correct), "mean": sum(correct) / (n * len(correct))}


def test_comparisons_tell_a_data_effect_from_training_noise_on_known_counts(tmp_path):
    n = 10_000
    base = [9900, 9800, 9700, 9600, 9500, 9400, 9300, 9200, 9100, 9000]
    table = {  # half b is 3 points worse on every class; the second seed matches half a up to ±5 images
        "r1": {"half-a": _cell(base, n), "half-b": _cell([k - 300 for k in base], n),
               "half-a-seed1": _cell([k + (5 if c % 2 else -5) for c, k in enumerate(base)], n)},
        "r2": {"half-a": _cell(base, n), "half-b": _cell([k - 300 for k in base], n),
               "half-a-seed1": _cell(base, n)},
    }  # fmt: skip
    cmp = comparisons(table)
    assert cmp["tests"] == 20 and cmp["level"] == pytest.approx(0.05 / 20)
    assert cmp["significant_halves"] == 20 and cmp["significant_seeds"] == 0
    assert cmp["classes_halves_larger"] == 10 and cmp["sign_test_p"] == pytest.approx(0.5**10)
    first = cmp["rows"]["r1"][0]
    assert first["halves"]["diff"] == pytest.approx(0.03) and first["halves"]["ci"][0] > 0.02
    assert first["seeds"]["ci"][0] < 0 < first["seeds"]["ci"][1]
    assert first["half_a_ci"][0] < 0.99 < first["half_a_ci"][1]
    assert cmp["means"]["r2"]["halves"]["diff"] == pytest.approx(0.03) and cmp["means"]["r2"]["seeds"]["diff"] == 0
    md = dependence_markdown(table, DependencePlan(n=n), [str(c) for c in range(10)])
    assert "| 0 | 99.00 | 96.00 | 98.95 | +3.00* [" in md and "| **mean** |" in md
    assert "between the halves 20 of 20, between the GAN seeds on one half 0 of 20" in md
    assert "in 10 of 10 classes (one-sided sign test p = 0.001)" in md
    assert cmp["worst"]["r1"]["half_b"] == {"cls": 9, "share": pytest.approx(0.87)}
    assert "r1 9 90.00 / 9 87.00 / 9 " in md
    assert cmp["ranking_agrees"] and "(the same order for all three GANs)" in md  # equal means keep the row order
    flip = {"better": table["r1"], "worse": {**table["r2"], "half-b": _cell(base, n)}}  # half b flips the order
    assert comparisons(flip)["ranking"] == {"half-a": ["better", "worse"], "half-b": ["worse", "better"],
                                            "half-a-seed1": ["better", "worse"]}  # fmt: skip
    assert not comparisons(flip)["ranking_agrees"]
    png = save_difference_plot(table, tmp_path / "d.png", [str(c) for c in range(10)])
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 500
    same = {"r": {"half-a": _cell(base, n), "half-b": _cell(base, n), "half-a-seed1": _cell(base, n)}}
    assert comparisons(same)["classes_compared"] == 0 and comparisons(same)["sign_test_p"] == 1.0


def test_the_pipeline_trains_gans_on_halves_and_writes_the_doc(shared_datasets, tmp_path):
    args = ["reproduce", "dependence", "-n", "40", "--rows", "built-in", "--gan-steps", "3", "--work",
            str(tmp_path / "work"), "--out", str(tmp_path / "docs"), "--data-dir", str(shared_datasets),
            "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "docs" / "dependence-mnist.json").read_text())
    cell = data["table"]["built-in"]
    assert set(cell) >= {"half-a", "half-b", "half-a-seed1"} and cell["half-a"]["n"] == [40] * 10
    assert data["comparisons"]["tests"] == 10
    assert data["overlap"]["n"] == 40 and data["overlap"]["classifier"] == "mnist-small"
    assert set(data["overlap"]["mean"]) == {"half-a", "half-b", "half-a-seed1"}
    md = (tmp_path / "docs" / "dependence-mnist.md").read_text()
    assert "| class | half a | half b |" in md and "(images/dependence-mnist.png)" in md
    with Image.open(tmp_path / "docs" / "images" / "dependence-samples-mnist.png") as im:
        assert im.size[1] > 3 * 28  # a row of samples per family
    assert (tmp_path / "docs" / "images" / "dependence-mnist.png").stat().st_size > 10_000
    gans = tmp_path / "work" / "mnist" / "dependence-steps3"
    meta = gr.load_generators(gans / "gan-half-a-seed1" / "generators.safetensors").genrobust_meta
    assert meta["recipe"]["data"] == "half-a" and meta["recipe"]["seed"] == 1 and meta["recipe"]["split_seed"] == 0
    again = CliRunner().invoke(main, args)  # everything cached: same doc
    assert again.exit_code == 0 and (tmp_path / "docs" / "dependence-mnist.md").read_text() == md


def test_emnist_digit_gans_judge_mnist_classifiers(tmp_path):
    """The paper's set-up: GANs on the halves of EMNIST digits (here tiny files the test writes), the MNIST
    classifiers judged against them, MNIST's GAN recipe with the dataset swapped."""
    from genrobust.data.idx import write_idx

    raw = tmp_path / "data" / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 40)):
        write_idx(raw / f"emnist-digits-{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(raw / f"emnist-digits-{split}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    args = ["reproduce", "dependence", "--dataset", "emnist-digits", "-n", "20", "--rows", "built-in",
            "--gan-steps", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs"), "--data-dir",
            str(tmp_path / "data"), "--quiet"]  # fmt: skip
    with pytest.warns(UserWarning, match="no published checksum"):
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "docs" / "dependence-emnist-digits.json").read_text())
    assert data["table"]["built-in"]["source"] == "built-in `mnist-small`"
    gans = tmp_path / "work" / "emnist-digits" / "dependence-steps2"
    meta = gr.load_generators(gans / "gan-half-b" / "generators.safetensors").genrobust_meta["recipe"]
    mnist_recipe = gr.model_info("mnist-gan")["recipe"]
    assert meta["dataset"] == "emnist-digits" and meta["data"] == "half-b" and meta["steps"] == 2
    assert meta["batch_size"] == mnist_recipe["batch_size"] and meta["conditional"] is False
    assert "| 0 |" in (tmp_path / "docs" / "dependence-emnist-digits.md").read_text()  # MNIST's class names


def _two_rows() -> dict:
    base = [900 - 10 * c for c in range(10)]
    return {"r": {"half-a": _cell(base, 1000), "half-b": _cell(base, 1000), "half-a-seed1": _cell(base, 1000)}}


class _Shift(nn.Module):
    def __init__(self, by: float) -> None:
        super().__init__()
        self.by = by

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.by


def test_overlap_tells_a_gan_that_draws_the_same_images_from_one_that_draws_others():
    """Linear 'generators' into 16 pixels and a one-layer classifier (its features are the pixels): a family
    that is half a scores what a second sample of half a scores; one shifted off half a's images scores 0."""
    torch.manual_seed(0)
    gens = [nn.Linear(4, 16) for _ in range(2)]
    fam = gr.GeneratorFamily(per_class=gens, latent_dim=4)
    shifted = gr.GeneratorFamily(per_class=[nn.Sequential(g, _Shift(100.0)) for g in gens], latent_dim=4)
    clf = nn.Sequential(nn.Linear(16, 2))
    ov = overlap({"half-a": fam, "same": fam, "shifted": shifted}, clf, n=300, k=3, seed=0)
    assert ov["reference"] == "half-a" and len(ov["classes"]) == 2
    assert ov["mean"]["same"] == ov["mean"]["half-a"] > 0.8 and ov["mean"]["shifted"] == 0.0
    md = dependence_markdown(_two_rows(), DependencePlan(n=10), [str(c) for c in range(10)],
                             {**ov, "classifier": "lin"})  # fmt: skip
    assert "### Do the GANs draw the same images?" in md and "| shifted | 0.00 | 0.00 | 0.00 |" in md
    with pytest.raises(gr.GenrobustError, match="more than k"):
        overlap({"half-a": fam}, clf, n=3, k=3)
