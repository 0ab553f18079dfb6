"""The generator-dependence study: the two-proportion test on counts with known answers and its error rate by
simulation, and the pipeline (GANs on halves, cached cells, the doc) on a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.experiments.dependence import two_proportion_test


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
    md = (tmp_path / "docs" / "dependence-mnist.md").read_text()
    assert "| class | half a | half b |" in md
    gans = tmp_path / "work" / "mnist" / "dependence-steps3"
    meta = gr.load_generators(gans / "gan-half-a-seed1" / "generators.safetensors").genrobust_meta
    assert meta["recipe"]["data"] == "half-a" and meta["recipe"]["seed"] == 1 and meta["recipe"]["split_seed"] == 0
    again = CliRunner().invoke(main, args)  # everything cached: same doc
    assert again.exit_code == 0 and (tmp_path / "docs" / "dependence-mnist.md").read_text() == md
