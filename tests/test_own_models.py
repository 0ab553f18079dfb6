"""Your own models: generator families from any modules (per class or conditional, one-hot or index labels), the
image adapter, and a 3×32×32 classifier and generator end to end through correctness, attacks and robustness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import genrobust as gr
from genrobust.bounds.capture import UnsupportedLayerError, capture
from genrobust.bounds.engine import BoundEngine, BoundOptions
from genrobust.compose import Composed
from genrobust.models import GeneratorFamily
from genrobust.models.layers import ImageAdapter


class CatDecoder(nn.Module):
    """A conditional VAE decoder: [z, onehot] → 3×8×8 in (−1, 1)."""

    def __init__(self, d: int = 5, k: int = 3, side: int = 8) -> None:
        super().__init__()
        self.side = side
        self.fc = nn.Sequential(nn.Linear(d + k, 32), nn.ReLU(), nn.Linear(32, 3 * side * side), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([y, z], 1)).view(-1, 3, self.side, self.side)


class EmbDecoder(nn.Module):
    """A Keras-GAN-style conditional generator: noise times a label embedding, class given as an index."""

    def __init__(self, d: int = 5, k: int = 3, side: int = 8) -> None:
        super().__init__()
        self.side = side
        self.emb = nn.Embedding(k, d)
        self.net = nn.Sequential(nn.Linear(d, 32), nn.LeakyReLU(0.2), nn.Linear(32, 3 * side * side), nn.Sigmoid())
        self.register_buffer("tint", torch.linspace(-0.1, 0.1, 3 * side * side).reshape(3, side, side))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(z * self.emb(y)).reshape(z.shape[0], 3, self.side, self.side) * 0.8 + self.tint + 0.1


def _classifier(k: int = 3, side: int = 8) -> nn.Module:
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 2.0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), bn, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * (side // 2) ** 2, 8), nn.Sigmoid(), nn.Linear(8, k),
    ).eval()  # fmt: skip


def _families() -> list[GeneratorFamily]:
    torch.manual_seed(0)
    cat = GeneratorFamily(conditional=CatDecoder(), num_classes=3, latent_dim=5, output_range=(-1, 1))
    emb = GeneratorFamily(conditional=EmbDecoder(), class_names=("a", "b", "c"), latent_dim=5, condition="index")
    per = GeneratorFamily(per_class=[nn.Sequential(nn.Linear(5, 192), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
                                     for _ in range(3)], latent_dim=5, output_range=(-1, 1))  # fmt: skip
    return [cat.adapt((0, 1), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25)), emb, per.adapt((0, 255))]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_own_generators_are_captured_exactly_and_bounded_soundly(which):
    fam, clf = _families()[which], _classifier()
    for c in range(3):
        model = Composed(clf, fam[c]).eval()
        gen_ops = capture(fam[c], (5,))
        ops = gen_ops + capture(clf, (3, 8, 8))
        z = torch.randn(6, 5, dtype=torch.float64)
        h = z
        for op in ops:
            h = op.forward(h)
        assert torch.allclose(h, model.double()(z), atol=1e-10)  # the captured chain is the network
        model.float()
        for mode in ("crown", "forward", "interval"):
            engine = BoundEngine(ops, len(gen_ops), BoundOptions(mode=mode))
            center, radius = torch.randn(2, 5, dtype=torch.float64), torch.full((2, 5), 0.05, dtype=torch.float64)
            spec = torch.zeros(2, 1, 3, dtype=torch.float64)
            spec[:, 0, 0], spec[:, 0, 1] = 1.0, -1.0  # logit 0 − logit 1
            low = engine.margins(center, radius, spec).lower
            s = torch.rand(300, 2, 5, dtype=torch.float64) * 2 - 1
            with torch.no_grad():
                logits = model.double()((center + radius * s).reshape(-1, 5)).reshape(300, 2, 3)
            assert (logits[..., 0] - logits[..., 1] >= low[:, 0]).all(), mode
            model.float()


def test_a_family_of_your_own_modules_says_what_it_needs():
    dec = CatDecoder()
    with pytest.raises(gr.GenrobustError, match="latent_dim"):
        GeneratorFamily(conditional=dec, num_classes=3)
    with pytest.raises(gr.GenrobustError, match="num_classes"):
        GeneratorFamily(conditional=dec, latent_dim=5)
    with pytest.raises(gr.GenrobustError, match="class names"):
        GeneratorFamily(per_class=[nn.Linear(5, 4)] * 2, latent_dim=5, class_names=("a", "b", "c"))
    with pytest.raises(gr.GenrobustError, match="output_range"):
        GeneratorFamily(per_class=[nn.Linear(5, 4)], latent_dim=5, output_range=(1, 0))
    with pytest.raises(gr.GenrobustError, match="condition"):
        GeneratorFamily(conditional=dec, latent_dim=5, num_classes=3, condition="text")
    with pytest.raises(gr.GenrobustError, match=r"nn\.Module"):
        GeneratorFamily(per_class=[lambda z: z], latent_dim=5)
    with pytest.raises(gr.GenrobustError, match="std"):
        ImageAdapter((0, 1), (0, 1), mean=0.5, std=0.0)
    fam = GeneratorFamily(conditional=dec, latent_dim=5, num_classes=3)
    with pytest.raises(gr.ModelFileError, match="ONNX"):
        gr.save_generators(fam, "never-written.safetensors")
    with pytest.raises(gr.GenrobustError, match="3 channels"):
        GeneratorFamily(per_class=[nn.Sequential(nn.Linear(5, 4), nn.Unflatten(1, (1, 2, 2)))], latent_dim=5).adapt(
            mean=(0.1, 0.2, 0.3), std=(1, 1, 1))[0](torch.zeros(1, 5))  # fmt: skip


def test_the_adapter_maps_ranges_and_normalises_per_channel_and_display_undoes_it():
    fam = _families()[0]
    z = torch.randn(4, 5)
    raw = fam.conditional(z, torch.nn.functional.one_hot(torch.full((4,), 2), 3).float())  # in (−1, 1)
    x = fam[2](z)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1), torch.tensor([0.2, 0.3, 0.25]).reshape(1, 3, 1, 1)
    assert torch.allclose(x, ((raw + 1) / 2 - mean) / std, atol=1e-5)
    assert torch.allclose(fam.display(x), (raw + 1) / 2, atol=1e-5)


def test_capture_folds_constants_but_refuses_per_example_ones():
    class PerExample(nn.Module):
        def forward(self, z):
            return z * torch.arange(z.shape[0], dtype=z.dtype).reshape(-1, 1)  # differs between examples

    with pytest.raises(UnsupportedLayerError, match="differs between examples"):
        capture(PerExample(), (3,))

    class TwoInputs(nn.Module):
        def forward(self, z):
            return torch.cat([z, z], 1)

    with pytest.raises(UnsupportedLayerError):
        capture(TwoInputs(), (3,))


@pytest.fixture(scope="module")
def toy32() -> tuple[nn.Module, GeneratorFamily]:
    """A 3×32×32 toy: a conditional decoder and a small convolutional classifier trained for a few steps to tell
    its classes apart (so that correctness is high, attacks have something to break and bounds certify)."""
    torch.manual_seed(0)
    gen = CatDecoder(d=4, k=3, side=32)
    fam = GeneratorFamily(conditional=gen, num_classes=3, latent_dim=4, output_range=(-1, 1)).adapt((0, 1))
    clf = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 16), nn.ReLU(),
                        nn.Linear(16, 3))  # fmt: skip
    opt = torch.optim.Adam(clf.parameters(), 1e-2)
    for _ in range(60):
        z = torch.randn(96, 4)
        y = torch.arange(3).repeat(32)
        with torch.no_grad():
            x = torch.cat([fam[c](z[y == c]) for c in range(3)])
        loss = nn.functional.cross_entropy(clf(x), torch.arange(3).repeat_interleave(32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval(), fam.eval()


def test_a_3x32x32_toy_runs_through_correctness_attacks_and_robustness(toy32):
    clf, fam = toy32
    cor = gr.global_correctness(clf, fam, n=200, seed=0)
    assert min(e.estimate for e in cor.classes) > 0.9
    assert cor.outliers(2) is not None
    att = gr.realistic_adversarial(clf, fam, source=0, eps=[0.5, 3.0], n_starts=20, seed=0)
    assert att.to_dict()  # ran; witnesses, if any, were re-checked by the attack itself
    rob = gr.global_robustness(clf, fam, eps=[0.001, 0.01], n=6, seed=0,
                               options=gr.VerifyOptions(max_boxes=4, max_seconds=20))  # fmt: skip
    counts = rob.classes[0].per_eps[0]
    assert counts.certified + counts.falsified + counts.unknown == 6
    assert sum(c.per_eps[0].certified for c in rob.classes) > 0
    one = gr.verify_ball(clf, fam[1], torch.zeros(4), eps=0.001)
    assert one.status.shape == (1, 1)


def test_the_pictures_of_a_colour_toy_undo_the_adapter(toy32, tmp_path):
    from PIL import Image

    from genrobust.report import save_outliers
    from genrobust.report.adversarial import save_pairs, save_path_gif

    clf, fam = toy32
    att = gr.realistic_adversarial(clf, fam, source=0, eps=[3.0], n_starts=20, seed=0)
    examples = att.examples()
    assert examples, "a large ε must break the toy classifier somewhere"
    save_pairs(examples[:2], fam[0], tmp_path / "pairs.png", display=fam.display)
    save_path_gif(examples[0], clf, fam[0], tmp_path / "path.gif", display=fam.display, frames=3)
    assert Image.open(tmp_path / "pairs.png").mode == "RGB"
    cor = gr.global_correctness(clf, fam, n=300, seed=1)
    if cor.outlier_list:
        save_outliers(cor, tmp_path / "outliers.png", 4)
        assert Image.open(tmp_path / "outliers.png").size[0] > 32


def test_mismatches_are_warned_about(toy32):
    clf, fam = toy32
    narrow = GeneratorFamily(conditional=fam.conditional, num_classes=3, latent_dim=4, output_range=(0, 1))
    with pytest.warns(gr.GenrobustWarning, match="outside the output_range"):
        gr.global_correctness(clf, narrow, n=10, seed=0)
    mnist_clf, fashion = gr.load_classifier("mnist-small"), gr.load_generators("fashion-mnist-cgan")
    with pytest.warns(gr.GenrobustWarning, match="trained on mnist but the generators on fashion-mnist"):
        gr.global_correctness(mnist_clf, fashion, n=10, seed=0, classes=[0])
