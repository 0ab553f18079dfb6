"""The image-conditional generator (thumbnail ⊕ latent → image) and the competition-shaped instances built on it:
fixed thumbnail inputs, a latent box that is not a cube, the runner-up property, answered by the runner."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.models.io import load_model, save_model
from genrobust.models.variation import VariationConfig, VariationGenerator
from genrobust.train.variation import VariationRecipe, train_variation
from genrobust.verify.vnnlib import VnnlibError, _holds, export_variation_instances, parse_vnnlib, run_instances


def test_the_generator_saves_loads_and_refuses_wrong_inputs(tmp_path: Path):
    torch.manual_seed(0)
    g = VariationGenerator(VariationConfig(pool=7, latent_dim=3, hidden=(16,))).eval()
    g.latent_std.copy_(torch.tensor([0.5, 1.0, 0.01]))
    x = torch.rand(4, g.input_dim)
    save_model(tmp_path / "v.safetensors", g, info={"note": "tiny"})
    back, meta = load_model(tmp_path / "v.safetensors", expect_role="variation")
    assert meta["arch"] == "cvae/image-conditional" and meta["note"] == "tiny"
    assert torch.equal(back(x), g(x)) and torch.equal(back.latent_std, g.latent_std)
    assert g(x).shape == (4, 1, 28, 28) and g.thumbnail(torch.rand(2, 1, 28, 28)).shape == (2, 16)
    with pytest.raises(gr.GenrobustError, match="thumbnail ⊕ latent"):
        g(torch.rand(4, g.input_dim + 1))
    with pytest.raises(gr.GenrobustError, match=r"\(N, 1, 28, 28\)"):
        g.thumbnail(torch.rand(2, 28, 28))
    with pytest.raises(gr.GenrobustError, match="invalid variation generator"):
        VariationConfig(pool=5)
    with pytest.raises(gr.GenrobustError, match="variation"):
        gr.load_variation("mnist-small")  # a classifier, not an image-conditional generator


def test_training_resumes_to_the_same_weights_and_measures_the_latent_spread(tmp_path: Path, mnist_train):
    """One epoch, a stop, a second epoch: the weights equal those of two epochs in one go; the file carries the
    recipe, its command and the latent's spread per dimension (the instances' box widths)."""
    data = mnist_train.subset(np.arange(512))
    kw = {"train_data": data, "test_data": data.subset(np.arange(128)), "show_progress": False}
    small = {"latent_dim": 3, "batch_size": 64, "pool": 4}
    once, _ = train_variation(VariationRecipe(epochs=2, **small), out=tmp_path / "once", **kw)
    train_variation(VariationRecipe(epochs=1, **small), out=tmp_path / "twice", **kw)
    ckpt = tmp_path / "twice" / "variation.ckpt.safetensors"
    with pytest.raises(gr.GenrobustError, match="another recipe"):  # a checkpoint of the 1-epoch recipe
        train_variation(VariationRecipe(epochs=2, **small), out=tmp_path / "twice", **kw)
    (tmp_path / "resume").mkdir()
    from genrobust.train.checkpoint import load_checkpoint, save_checkpoint

    model = VariationGenerator(VariationConfig(pool=4, latent_dim=3))
    opt = torch.optim.Adam(model.parameters())
    state = load_checkpoint(ckpt, {"model": model}, {"model": opt})
    state["recipe"] = VariationRecipe(epochs=2, **small).to_dict()  # the same run, stopped after its first epoch
    save_checkpoint(tmp_path / "resume" / ckpt.name, {"model": model}, {"model": opt}, state)
    resumed, path = train_variation(VariationRecipe(epochs=2, **small), out=tmp_path / "resume", **kw)
    for a, b in zip(once.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    meta = gr.models.model_info(str(path))
    assert meta["role"] == "variation" and "genrobust train variation" in meta["command"]
    assert len(meta["history"]) == 2 and meta["history"][1]["bce"] < meta["history"][0]["bce"]
    assert (resumed.latent_std > 0).all() and not torch.equal(resumed.latent_std, torch.ones(3))


def test_the_builtin_generator_reconstructs_what_the_classifier_recognises(shared_datasets: Path):
    """mnist-variation's reconstruction from a test image's thumbnail and latent mean is close to the image, and
    mnist-small labels it as the image's class; its latent spread differs per dimension (boxes are not cubes)."""
    g = gr.load_variation("mnist-variation")
    clf = gr.load_classifier("mnist-small")
    test = gr.load_dataset("mnist", "test", data_dir=shared_datasets, download=False)
    x = torch.from_numpy(test.images[:300]).unsqueeze(1).float() / 255
    with torch.no_grad():
        rec = g.generate(g.thumbnail(x), g.encode(x))
        acc = (clf(rec).argmax(1) == torch.from_numpy(test.labels[:300])).float().mean()
    assert float((rec - x).abs().mean()) < 0.08
    assert float(acc) > 0.9
    assert float(g.latent_std.max()) > 5 * float(g.latent_std.min())
    with torch.no_grad():  # forward on the flat input is the same decoder
        flat = torch.cat([g.thumbnail(x[:5]), g.encode(x[:5])], 1)
        assert torch.allclose(g(flat), rec[:5], atol=1e-6)


def test_exported_instances_have_the_competition_shape_and_get_sound_answers(tmp_path: Path, shared_datasets: Path):
    """Fixed thumbnail inputs (lower = upper), latent widths ε × the spread, a one-conjunct runner-up property
    (not the robustness form); small boxes come back unsat (no sampled point meets the property), a huge box
    sat with a counterexample in the box that meets it, through the benchmark runner."""
    g = gr.load_variation("mnist-variation")
    clf = gr.load_classifier("mnist-small")
    rows = export_variation_instances(clf, g, eps=[0.1, 8.0], n=1, seed=0, out=tmp_path, data_dir=shared_datasets,
                                      classes=[3, 5], timeout=60)  # fmt: skip
    assert len(rows) == 4 and all(r[0] == "onnx/variation.onnx" for r in rows)
    p = g.config.thumb_numel
    net = gr.load_classifier(str(tmp_path / "onnx" / "variation.onnx"))
    for _, name, _ in rows:
        prop = parse_vnnlib((tmp_path / name).read_text())
        assert len(prop.lo) == g.input_dim and np.array_equal(prop.lo[:p], prop.hi[:p])
        width = (prop.hi - prop.lo)[p:]
        eps = float(name.rsplit("_eps_", 1)[1].removesuffix(".vnnlib"))
        assert np.allclose(width, 2 * eps * g.latent_std.double().numpy(), rtol=1e-6)
        assert len(prop.disjuncts) == 1 and len(prop.disjuncts[0]) == 1 and prop.robustness_label() is None
        label = int(name.split("_")[1])
        centre = torch.as_tensor((prop.lo + prop.hi) / 2, dtype=torch.float32)[None]
        with torch.no_grad():
            y = net(centre)[0]
        runner = int(np.flatnonzero(prop.disjuncts[0][0].coef == 1.0)[0])
        assert int(y.argmax()) == label and runner == int(y.clone().index_fill_(0, torch.tensor(label), -1e9).argmax())
    got = run_instances(tmp_path / "instances.csv", tmp_path / "results.csv")
    by_eps = {r["vnnlib"]: r for r in got}
    g_ = np.random.default_rng(0)
    for name, r in by_eps.items():
        prop = parse_vnnlib((tmp_path / name).read_text())
        if "_eps_0.1." in name:
            assert r["result"] == "unsat", r
            x = prop.lo + (prop.hi - prop.lo) * g_.random((4_000, len(prop.lo)))
            with torch.no_grad():
                y = net(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
            (c,) = prop.disjuncts[0]
            assert (y @ c.coef + c.const < 0).all()  # the runner-up stays below the label everywhere sampled
        else:
            assert r["result"] == "sat", r
            cex = (tmp_path / "counterexamples" / f"variation__{Path(name).stem}.txt").read_text()
            xs = np.array([float(v) for v in re.findall(r"\(X_\d+ (\S+?)\)", cex)])
            assert np.all(xs >= prop.lo) and np.all(xs <= prop.hi) and np.array_equal(xs[:p], prop.lo[:p])
            with torch.no_grad():
                assert _holds(prop, net(torch.as_tensor(xs, dtype=torch.float32)[None]).double().numpy()[0])
    with pytest.raises(VnnlibError, match="VariationGenerator"):
        export_variation_instances(clf, gr.load_generators("mnist-gan"), eps=[0.1], n=1, seed=0, out=tmp_path)
    with pytest.raises(VnnlibError, match="form"):
        export_variation_instances(clf, g, eps=[0.1], n=1, seed=0, out=tmp_path, form="best")
    with pytest.raises(VnnlibError, match=r"classes \[12\]"):
        export_variation_instances(clf, g, eps=[0.1], n=1, seed=0, out=tmp_path, data_dir=shared_datasets, classes=[12])
    with pytest.raises(VnnlibError, match="ε"):
        export_variation_instances(clf, g, eps=[float("nan")], n=1, seed=0, out=tmp_path)


def test_fixed_inputs_leave_the_bounds_and_the_splits(tmp_path: Path):
    """Inputs with lower = upper become constants of the box map: the chain takes only the free inputs, the map's
    image covers the box (barely more) and the fixed inputs keep their values exactly."""
    from genrobust.verify.vnnlib import Constraint, VnnProperty, _box_chain

    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    lo = np.array([0.25, -1.0, 0.1, 0.5, 0.375, 1.0 / 3])
    hi = np.array([0.25, 1.0, 0.2, 0.5, 0.375, 1.0 / 3])  # 1/3 is not a float32: that input stays (tiny) free
    prop = VnnProperty(lo, hi, [[Constraint(np.array([1.0, -1, 0]), 0.0)]])
    box, _, d = _box_chain(net, prop, (6,))
    assert d == 3
    c, r = box.bias.double().numpy(), box.weight.double().abs().sum(1).numpy()
    assert np.array_equal(c[[0, 3, 4]], lo[[0, 3, 4]]) and not r[[0, 3, 4]].any()  # fixed: exact constants
    assert (c - r <= lo).all() and (c + r >= hi).all()  # in exact arithmetic the map's image covers the box,
    assert (c - r >= lo - 1e-6).all() and (c + r <= hi + 1e-6).all()  # barely more
    with torch.no_grad():
        assert torch.equal(box(torch.zeros(1, 3))[0], box.bias)
    full = VnnProperty(np.zeros(6), np.ones(6), prop.disjuncts)
    assert _box_chain(net, full, (6,))[2] == 6  # every input free: the elementwise map


def test_robustness_form_needs_every_rival():
    from genrobust.verify.vnnlib import property_text

    lo, hi = np.zeros(2), np.ones(2)
    assert parse_vnnlib(property_text(lo, hi, 1, 3)).robustness_label() == 1
    assert parse_vnnlib(property_text(lo, hi, 1, 3, rivals=[2])).robustness_label() is None
    with pytest.raises(VnnlibError, match="rivals"):
        property_text(lo, hi, 1, 3, rivals=[1])


def test_the_command_line_exports_and_answers_them(tmp_path: Path, shared_datasets: Path):
    runner = CliRunner()
    args = ["export", "vnnlib", "--variation", "mnist-variation", "--eps", "0.05", "-n", "1", "--classes", "5"]
    res = runner.invoke(main, [*args, "--data-dir", str(shared_datasets), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "wrote 1 instances" in res.output
    out = tmp_path / "r.csv"
    res = runner.invoke(main, ["verify-vnnlib", "--instances", str(tmp_path / "b" / "instances.csv"), "--out",
                               str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert [r["result"] for r in rows] == ["unsat"]
    res = runner.invoke(main, ["export", "vnnlib", "--form", "robust", "--out", str(tmp_path / "c")])
    assert res.exit_code != 0 and "--variation" in res.output
    res = runner.invoke(main, [*args, "--mean", "0.5", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "drop --mean" in res.output
    res = runner.invoke(main, ["train", "variation", "--help"])
    assert res.exit_code == 0 and "--pool" in res.output
    png = tmp_path / "v.png"
    res = runner.invoke(main, ["models", "sample", "mnist-variation", "--per-class", "5", "--data-dir",
                               str(shared_datasets), "--out", str(png)])  # fmt: skip
    assert res.exit_code == 0, res.output
    from PIL import Image

    assert Image.open(png).size[0] > 5 * 56  # image, thumbnail, reconstruction and two variations per row
