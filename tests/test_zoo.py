"""The built-in models: each loads, reproduces its recorded test accuracy, and the GANs draw their class."""

import pytest
import torch

import genrobust as gr
from genrobust.models.zoo import ZOO
from genrobust.train.common import accuracy

CLASSIFIERS = [n for n, e in ZOO.items() if e.role == "classifier"]
GENERATORS = [n for n, e in ZOO.items() if e.role == "generators"]


def test_zoo_has_the_required_models():
    for dataset in ("mnist", "fashion-mnist"):
        assert any(ZOO[n].dataset == dataset and ZOO[n].arch == "small" for n in CLASSIFIERS)
        for data in ("standard", "augmented"):
            assert any(ZOO[n].dataset == dataset and ZOO[n].data == data for n in GENERATORS)
    assert sum(e.path().stat().st_size for e in ZOO.values()) < 90e6


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_builtin_classifier_reproduces_its_test_accuracy(name, shared_datasets):
    model = gr.load_classifier(name)
    meta = model.genrobust_meta
    test = gr.load_dataset(meta["dataset"], "test", data_dir=shared_datasets, download=False)
    acc = accuracy(model, *test.tensors())
    assert acc == pytest.approx(meta["test_accuracy"], abs=2e-4)  # at most two borderline images differ
    if meta["dataset"] == "mnist":
        assert acc >= 0.99
    assert meta["command"].startswith("genrobust train classifier")


def _classifier_for(dataset: str):
    name = next(n for n in CLASSIFIERS if ZOO[n].dataset == dataset)
    return gr.load_classifier(name)


@pytest.mark.parametrize("name", GENERATORS)
def test_builtin_generators_draw_their_class(name):
    family = gr.load_generators(name)
    meta = family.genrobust_meta
    assert meta["command"].startswith(("genrobust train gan", "genrobust train generator"))
    clf = _classifier_for(ZOO[name].dataset)
    g = torch.Generator().manual_seed(0)
    per_class = []
    with torch.no_grad():
        for c in range(len(family)):
            _, images = family.sample(c, 200, generator=g)
            per_class.append(float((clf(images).argmax(1) == c).float().mean()))
    mean = sum(per_class) / len(per_class)
    # Chance is 10%. The floors sit below what each model reaches (README's table: MNIST 94-98%, Fashion 58-81%).
    floor, worst = (0.9, 0.75) if ZOO[name].dataset == "mnist" else (0.5, 0.15)
    assert mean > floor and min(per_class) > worst, per_class


def test_builtin_files_are_checked_against_the_registry(tmp_path, monkeypatch):
    import dataclasses

    name = GENERATORS[0]
    bad = dataclasses.replace(ZOO[name], sha256="0" * 64)
    monkeypatch.setitem(ZOO, name, bad)
    with pytest.raises(gr.ModelFileError, match="does not match the registry"):
        gr.load_generators(name)
    with pytest.raises(gr.GenrobustError, match="is a generators, not a classifier"):
        gr.load_classifier(name)
