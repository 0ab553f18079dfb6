"""Generator quality: precision, recall and Fréchet distance on synthetic features with known answers, and the
command on the real datasets."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert min(real["accuracy"]) > 0.9 and real["mean"]["accuracy"] > gan["mean"]["accuracy"] - 0.05
    assert real["mean"]["stray"] < gan["mean"]["stray"]  # mnist-gan's speckled backgrounds, measured


def test_stray_pixels_are_bright_pixels_where_the_class_is_dark():
    from genrobust.experiments.generator_quality import stray_share

    dark = torch.zeros(1, 4, 4, dtype=torch.bool)
    dark[0, :2] = True  # 8 background pixels
    images = torch.zeros(10, 1, 4, 4)
    images[:, 0, 2:] = 1.0  # the stroke: never counted
    assert stray_share(images, dark) == 0.0
    images[:5, 0, 0, 0] = 0.3  # one speckle in half the images: 5 of 80 background pixels
    images[5:, 0, 0, 1] = 0.15  # dim, below the threshold
    assert stray_share(images, dark) == 5 / 80
    assert stray_share(images, torch.zeros_like(dark)) == 0.0


def test_reproduce_writes_the_doc_and_reuses_its_cache(shared_datasets, tmp_path, monkeypatch):
    args = ["reproduce", "generator-quality", "-n", "30", "--work", str(tmp_path / "work"), "--out",
            str(tmp_path / "docs"), "--data-dir", str(shared_datasets)]  # fmt: skip
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    md = (tmp_path / "docs" / "generator-quality-mnist.md").read_text()
    assert "| mnist-gan-aug |" in md and "| mnist-cgan |" in md and "Per class" in md
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "reused" in again.output
    assert (tmp_path / "docs" / "generator-quality-mnist.md").read_text() == md
    import dataclasses

    from genrobust.models import zoo

    # as if mnist-cgan were retrained: another registry hash (the file's hash agrees with it)
    path, real = zoo.ZOO["mnist-cgan"].path(), zoo.file_sha256
    monkeypatch.setitem(zoo.ZOO, "mnist-cgan", dataclasses.replace(zoo.ZOO["mnist-cgan"], sha256="0" * 64))
    monkeypatch.setattr(zoo, "file_sha256", lambda p: "0" * 64 if Path(p) == path else real(p))
    third = CliRunner().invoke(main, args)
    assert third.exit_code == 0 and "reused" not in third.output
    assert len(list((tmp_path / "work" / "mnist").glob("generator-quality-*.json"))) == 2
    assert (tmp_path / "docs" / "generator-quality-mnist.md").read_text() == md  # measured again: same seeds


def test_verdicts_on_a_builtin_family_show_its_coverage_and_flag_partial_classes(tmp_path):
    """The built-in families carry their measured precision / recall; every verdict shows them beside each class
    and marks the classes whose recall is below 0.5 (mnist-gan's are all below: 0.13–0.32)."""
    from genrobust.models.coverage import RECALL_FLAG

    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    assert gens.coverage is not None and max(gens.coverage.recall) < RECALL_FLAG
    res = gr.global_correctness(clf, gens, n=40, classes=[1, 8])
    lines = res.table().splitlines()
    assert lines[0].endswith("precision / recall")
    assert lines[1].split()[0] == "1" and lines[1].endswith(f"{gens.coverage.recall[1]:.2f} *")
    assert lines[-1].endswith("* recall < 0.5: the verdict on every class covers part of the class only")
    data = res.to_dict()["coverage"]
    assert data["partial_classes"] == list(range(10)) and data["recall"][8] == gens.coverage.recall[8]
    rob = gr.global_robustness(clf, gens, eps=[0.002], n=1, classes=[3], options=gr.VerifyOptions(max_boxes=1))
    assert rob.table().splitlines()[1].endswith("*") and rob.to_dict()["coverage"]["source"]
    mine = gr.GeneratorFamily(per_class=[gens[c] for c in range(10)], latent_dim=gens.latent_dim)
    plain = gr.global_correctness(clf, mine, n=40, classes=[1])
    assert "recall" not in plain.table() and plain.to_dict()["coverage"] is None  # unmeasured: nothing claimed


def test_assess_measures_any_familys_coverage_and_refuses_mismatched_ones(shared_datasets, tmp_path):
    from torch import nn

    from genrobust.experiments.generator_quality import measure_coverage
    from genrobust.models.coverage import Coverage

    args = ["correctness", "-n", "30", "--assess", "mnist", "--assess-n", "40", "--data-dir",
            str(shared_datasets), "--quiet", "--out", str(tmp_path / "out")]  # fmt: skip
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    cov = json.loads((tmp_path / "out" / "result.json").read_text())["coverage"]
    assert "40 mnist training images" in cov["source"] and "--assess" in cov["source"]
    assert len(cov["recall"]) == 10 and all(0 <= r <= 1 for r in cov["recall"])
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    three = gr.GeneratorFamily(per_class=[gens[c] for c in range(3)], latent_dim=gens.latent_dim)
    with pytest.raises(gr.GenrobustError, match="3 classes, mnist 10"):
        measure_coverage(clf, three, "mnist", n=20, data_dir=shared_datasets)
    small = nn.Sequential(nn.Linear(gens.latent_dim, 196), nn.Unflatten(1, (1, 14, 14)))
    tiny = gr.GeneratorFamily(per_class=[small] * 10, latent_dim=gens.latent_dim)
    with pytest.raises(gr.GenrobustError, match=r"shape \(1, 14, 14\)"):
        measure_coverage(clf, tiny, "mnist", n=20, data_dir=shared_datasets)
    with pytest.raises(gr.GenrobustError, match="in \\[0, 1\\]"):
        Coverage((0.5, 1.5), (0.2, 0.3), "made up")
    with pytest.raises(gr.GenrobustError, match="malformed coverage"):
        Coverage.from_dict({"precision": [0.5]})
    clf.train(), gens.train()  # the caller's modes, whatever they are, come back unchanged
    cov = measure_coverage(clf, gens, "mnist", n=20, data_dir=shared_datasets)
    assert len(cov.recall) == 10 and all(m.training for m in [*clf.modules(), *gens.modules()])
    bad = CliRunner().invoke(main, [*args[:-2], "--assess-n", "3"])
    assert bad.exit_code != 0 and "larger than 3" in bad.output
