"""The random walk and the continuity measure: seeded walks, exact answers on a generator that copies its latent,
and the command's pictures."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import genrobust as gr
from genrobust.cli import main
from genrobust.experiments.random_walk import continuity, random_walk


def test_walks_are_seeded_and_their_steps_have_the_asked_size():
    a, b = random_walk(10, steps=400, step=0.1, seed=3), random_walk(10, steps=400, step=0.1, seed=3)
    assert torch.equal(a, b) and a.shape == (401, 10)
    assert not torch.equal(a, random_walk(10, steps=400, step=0.1, seed=4))
    assert float((a[1:] - a[:-1]).std()) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(gr.GenrobustError, match="step"):
        random_walk(10, steps=5, step=0.0)
    with pytest.raises(gr.GenrobustError, match="steps"):
        random_walk(10, steps=0, step=0.1)


def test_continuity_is_exact_on_a_generator_that_copies_its_latent():
    d = 400
    copy = gr.GeneratorFamily(per_class=[nn.Unflatten(1, (1, 20, 20))] * 2, latent_dim=d, output_range=(-9, 9))
    res = continuity(copy, eps=[0.01, 0.1], n=50, seed=0, classifier=nn.Sequential(nn.Flatten(), nn.Linear(d, 2)))
    for rows in res.classes.values():
        for r in rows:
            scale = r.eps / 18  # pictures map the declared range (−9, 9) onto [0, 1]
            assert r.rms_corner == pytest.approx([scale] * 4, rel=1e-4)  # every pixel moves by ε (float32)
            assert r.max_corner == pytest.approx([scale] * 4, rel=1e-4)
            assert r.rms_uniform[1] == pytest.approx(scale / 3**0.5, rel=0.05)  # uniform on [−ε, ε]: ε/√3
            assert 0 <= r.flipped_corner <= 1
    assert "label flips" in res.table()
    with pytest.raises(gr.GenrobustError, match="ε"):
        continuity(copy, eps=[0.0], n=5)


def test_the_command_draws_the_walk_and_measures_continuity(tmp_path):
    res = CliRunner().invoke(main, ["random-walk", "--class", "3", "--steps", "8", "-n", "20", "--eps", "0.05,0.5",
                                    "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("walk.gif", "walk.png", "continuity.png", "result.json"):
        assert (tmp_path / name).stat().st_size > 500
    data = json.loads((tmp_path / "result.json").read_text())
    assert len(data["walk"]["labels"]) == 9 and set(data["continuity"]["classes"]) == {str(c) for c in range(10)}
    med = [data["continuity"]["classes"]["3"][e]["rms_corner"][1] for e in range(2)]
    assert 0 < med[0] < med[1]  # a larger box moves the pixels more
    res = CliRunner().invoke(main, ["random-walk", "--class", "12", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--class" in res.output


def test_reproduce_random_walk_writes_its_doc_and_pictures(tmp_path):
    res = CliRunner().invoke(main, ["reproduce", "random-walk", "--steps", "4", "-n", "10", "--eps", "0.1",
                                    "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in (
        "random-walk-mnist.md",
        "random-walk-mnist.json",
        "images/random-walk-mnist.gif",
        "images/random-walk-mnist.png",
        "images/continuity-mnist-gan.png",
        "images/continuity-mnist-gan-aug.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert "`mnist-gan-aug`" in (tmp_path / "random-walk-mnist.md").read_text()
