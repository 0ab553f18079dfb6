"""Library calls leave the caller's models as they were: modes (every submodule's own ``training`` flag), weights,
``requires_grad`` and device. The analyses need eval mode (no dropout, batch norm on its running statistics) and
take it on copies or for the duration of a call only."""

from __future__ import annotations

import torch
from torch import nn

import genrobust as gr
from genrobust.experiments.random_walk import continuity, walk
from genrobust.models.generators import GeneratorFamily, MLPGANConfig, MLPGenerator
from genrobust.rating.study import create_study
from genrobust.report.adversarial import pairs_image
from genrobust.report.robustness import falsified_examples
from genrobust.runtime import eval_mode, predictions
from genrobust.verify import VerifyOptions


def _models() -> tuple[nn.Module, GeneratorFamily]:
    """A classifier with dropout and batch norm, in training mode but with its batch norm frozen (a mixed state
    that ``model.train(flag)`` would not restore), and a family in training mode."""
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(16, 10))  # fmt: skip
    with torch.no_grad():  # class 3 leads narrowly: an ε = 4 ball around its centres holds other classes
        clf[5].bias[3] += 0.5
    clf.train()
    clf[2].eval()
    fam = GeneratorFamily(per_class=[MLPGenerator(MLPGANConfig(latent_dim=4, hidden=(16,))) for _ in range(10)])
    return clf, fam.train()


def _state(model: nn.Module) -> tuple:
    return ([m.training for m in model.modules()], {k: v.clone() for k, v in model.state_dict().items()},
            [p.requires_grad for p in model.parameters()], {p.device for p in model.parameters()})  # fmt: skip


def _same(model: nn.Module, before: tuple) -> bool:
    flags, state, grads, devices = _state(model)
    return (flags == before[0] and grads == before[2] and devices == before[3]
            and all(torch.equal(v, before[1][k]) for k, v in state.items()))  # fmt: skip


def test_library_calls_leave_the_callers_models_as_they_were(tmp_path):
    clf, fam = _models()
    before = {"clf": _state(clf), "fam": _state(fam)}
    gr.global_correctness(clf, fam, n=16, classes=[0, 1], seed=0)
    predictions(clf, torch.rand(5, 1, 28, 28))
    walk(clf, fam, 0, steps=3, step=0.1)
    continuity(fam, eps=0.1, n=4, classifier=clf, classes=[0])
    create_study(tmp_path / "study", fam, n=4)
    rob = gr.global_robustness(clf, fam, eps=[4.0], n=6, classes=[3], options=VerifyOptions(max_boxes=1))
    examples = falsified_examples(rob, 3, classifier=clf)
    assert examples  # a random network at ε = 4: the attack finds witnesses to draw
    pairs_image(examples, fam[3])
    assert _same(clf, before["clf"]) and _same(fam, before["fam"])


def test_eval_mode_restores_every_submodules_own_flag_even_after_an_error():
    clf, _ = _models()
    flags = [m.training for m in clf.modules()]
    try:
        with eval_mode(clf, None):
            assert not any(m.training for m in clf.modules())
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert [m.training for m in clf.modules()] == flags and flags.count(False) == 1
