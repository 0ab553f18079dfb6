"""Generator quality: precision, recall and Fréchet distance on synthetic features with known answers, and the
command on the real datasets."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.experiments.generator_quality import features, frechet_distance, precision_recall


def test_precision_and_recall_on_known_manifolds():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 4, generator=g, dtype=torch.float64)
    same = torch.randn(600, 4, generator=g, dtype=torch.float64)
    p, r = precision_recall(real, same)
    assert p > 0.85 and r > 0.85  # one distribution: both high (below 1 at finite n)
    far = same + 50.0
    assert precision_recall(real, far) == (0.0, 0.0)
    collapsed = real[:1].repeat(600, 1) + 1e-3 * torch.randn(600, 4, generator=g, dtype=torch.float64)
    p, r = precision_recall(real, collapsed)
    assert p == 1.0 and r < 0.05  # mode collapse: realistic but no variety
    with pytest.raises(gr.GenrobustError, match="more than k"):
        precision_recall(real[:3], same[:3])


def test_frechet_distance_of_shifted_gaussians():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(0.0, abs=0.01)
    shift = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    assert frechet_distance(a, b + shift) == pytest.approx(25.0, rel=0.01)  # ‖shift‖² with equal covariances
    assert frechet_distance(a, 2 * b) == pytest.approx(3.0, rel=0.03)  # Tr(I + 4I − 2·2I) = 3


def test_features_are_the_input_of_the_last_linear_layer():
    clf = gr.load_classifier("mnist-small")
    x = torch.rand(5, 1, 28, 28)
    f = features(clf, x)
    assert f.shape == (5, clf.head[-1].in_features)
    assert torch.allclose(clf.head[-1](f.float()), clf(x), atol=1e-5)


def test_the_command_reports_every_family_beside_the_test_set(shared_datasets, tmp_path):
    res = CliRunner().invoke(main, ["generators", "assess", "-n", "40", "--data-dir", str(shared_datasets),
                                    "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "result.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["real test set", "mnist-gan", "mnist-gan-aug"]
    for row in data["rows"]:
        assert len(row["precision"]) == 10 and all(0 <= v <= 1 for v in row["precision"] + row["recall"])
    real, gan = data["rows"][0], data["rows"][1]
    assert real["mean"]["frechet"] < gan["mean"]["frechet"]  # the real test set is closest to the training set
    assert "| real test set |" in (tmp_path / "table.md").read_text()


def test_reproduce_writes_the_doc_and_reuses_its_cache(shared_datasets, tmp_path):
    args = ["reproduce", "generator-quality", "-n", "30", "--work", str(tmp_path / "work"), "--out",
            str(tmp_path / "docs"), "--data-dir", str(shared_datasets)]  # fmt: skip
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    md = (tmp_path / "docs" / "generator-quality-mnist.md").read_text()
    assert "| mnist-gan-aug |" in md and "Per class" in md
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "reused" in again.output
    assert (tmp_path / "docs" / "generator-quality-mnist.md").read_text() == md
