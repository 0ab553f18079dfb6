"""Architectures (shapes, parameter counts) and the safetensors format with all its error cases."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

import genrobust as gr
from genrobust.models import (
    CLASSIFIER_ARCHS,
    GeneratorFamily,
    MLPDiscriminator,
    MLPGANConfig,
    MLPGenerator,
    ModelFileError,
    build_classifier,
    load_model,
    save_model,
)


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _dense_conv_count(a: int, b: int, c: int) -> int:
    conv = (9 * 1 * a + a) + (9 * a * a + a) + (9 * a * b + b) + (9 * b * b + b)
    return conv + (b * 20 * 20 * c + c) + (c * c + c) + (c * 10 + 10)


@pytest.mark.parametrize(
    ("arch", "abc"), [("small", (32, 64, 200)), ("medium", (64, 128, 256)), ("large", (64, 128, 512))]
)
def test_classifier_shapes_and_parameter_counts(arch, abc):
    cfg = CLASSIFIER_ARCHS[arch]
    assert (cfg.a, cfg.b, cfg.c) == abc
    model = build_classifier(arch)
    assert _params(model) == _dense_conv_count(*abc)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [abc[0], abc[0], abc[1], abc[1]]
    assert all(c.padding == (0, 0) and c.kernel_size == (3, 3) for c in convs)
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(p == 0.1 for p in drops)
    if arch == "small":
        assert _params(model) == 5_227_402


def test_gan_shapes_and_parameter_counts():
    g, d = MLPGenerator(), MLPDiscriminator()
    assert _params(g) == (10 * 256 + 256) + (256 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    assert _params(d) == (784 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 256 + 256) + (256 + 1)
    img = g(torch.randn(5, 10))
    img = img.detach()
    assert img.shape == (5, 1, 28, 28) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert d(img).shape == (5,)
    acts = [m for m in g.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 3 and all(a.negative_slope == 0.2 for a in acts)
    assert [m.p for m in d.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3, 0.3]


def test_families_per_class_and_conditional():
    torch.manual_seed(0)
    per = GeneratorFamily(per_class=[MLPGenerator() for _ in range(10)])
    cond = GeneratorFamily(conditional=MLPGenerator(MLPGANConfig(), conditional=True))
    for fam in (per, cond):
        assert fam.latent_dim == 10 and len(fam) == 10
        z1, x1 = fam.sample(3, 4, generator=torch.Generator().manual_seed(1))
        z2, x2 = fam.sample(3, 4, generator=torch.Generator().manual_seed(1))
        assert torch.equal(z1, z2) and torch.equal(x1, x2) and x1.shape == (4, 1, 28, 28)
        assert torch.equal(fam[3](z1), x1)
        with pytest.raises(gr.GenrobustError, match="out of range"):
            fam[10]
    # The conditional family's classes differ: the class really enters the network.
    z = torch.randn(2, 10)
    assert not torch.allclose(cond[0](z), cond[1](z))


def _roundtrip(tmp_path, module, **kw):
    path = tmp_path / "m.safetensors"
    save_model(path, module, info={"note": "test"}, **kw)
    loaded, meta = load_model(path)
    return loaded, meta, path


def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    clf = build_classifier("small").eval()
    x = torch.rand(4, 1, 28, 28)
    loaded, meta, _ = _roundtrip(tmp_path, clf)
    assert torch.equal(loaded(x), clf(x)) and meta["note"] == "test" and meta["role"] == "classifier"
    for fam in (
        GeneratorFamily(per_class=[MLPGenerator() for _ in range(3)], class_names=("a", "b", "c")),
        GeneratorFamily(conditional=MLPGenerator(MLPGANConfig(), conditional=True)),
    ):
        back, meta, _ = _roundtrip(tmp_path, fam)
        z = torch.randn(5, 10)
        assert all(torch.equal(back[c](z), fam[c](z)) for c in range(len(fam)))
        assert back.kind == fam.kind and back.class_names == fam.class_names
    # float16 storage: outputs agree to fp16 precision, metadata says so.
    back, meta, _ = _roundtrip(tmp_path, clf, half=True)
    assert meta["dtype"] == "float16"
    torch.testing.assert_close(back(x), clf(x), atol=2e-2, rtol=2e-2)


def test_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    meta = save_model(path, build_classifier("small"))
    meta["config"] = CLASSIFIER_ARCHS["medium"].to_dict()
    tensors = {k: v.contiguous() for k, v in build_classifier("small").state_dict().items()}
    meta.pop("weights_sha256")
    save_file(tensors, str(path), metadata={"genrobust": json.dumps(meta)})
    with pytest.raises(ModelFileError, match=r"do not fit architecture conv-classifier: .* the architecture needs"):
        load_model(path)
    with pytest.raises(ModelFileError, match="holds a classifier, expected a generators"):
        gr.load_generators(path)


def test_corrupt_damaged_and_nan_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, build_classifier("small"))
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"trunc\.safetensors"):
        load_model(tmp_path / "trunc.safetensors")
    flipped = bytearray(data)
    flipped[-100] ^= 0x40  # a weight byte: still parses, but the content hash catches it
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="weights are damaged"):
        load_model(tmp_path / "flip.safetensors")
    model = build_classifier("small")
    with torch.no_grad():
        model.head[0].weight[0, 0] = float("nan")
    save_model(tmp_path / "nan.safetensors", model)
    with pytest.raises(ModelFileError, match=r"head\.0\.weight.* NaN"):
        load_model(tmp_path / "nan.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="without genrobust metadata"):
        load_model(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_gzip_compressed_files_round_trip_and_fail_clearly(tmp_path):
    import gzip

    torch.manual_seed(0)
    clf = build_classifier("small").eval()
    plain, packed = tmp_path / "m.safetensors", tmp_path / "m.safetensors.gz"
    save_model(plain, clf, half=True)
    save_model(packed, clf, half=True)
    assert packed.stat().st_size < plain.stat().st_size
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()  # gunzip gives the plain file back
    save_model(tmp_path / "again.safetensors.gz", clf, half=True)
    assert (tmp_path / "again.safetensors.gz").read_bytes() == packed.read_bytes()  # deterministic bytes
    (tmp_path / "renamed.bin").write_bytes(packed.read_bytes())  # recognised by content, not by name
    x = torch.rand(3, 1, 28, 28)
    for path in (packed, tmp_path / "renamed.bin"):
        back, meta = load_model(path)
        assert torch.equal(back(x), load_model(plain)[0](x)) and meta["dtype"] == "float16"
        assert gr.model_info(path)["role"] == "classifier"
    data = packed.read_bytes()
    (tmp_path / "trunc.safetensors.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"trunc\.safetensors\.gz: cannot read weights"):
        load_model(tmp_path / "trunc.safetensors.gz")
    (tmp_path / "head.safetensors.gz").write_bytes(data[:6])
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_model(tmp_path / "head.safetensors.gz")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    gr.save_classifier(build_classifier("small"), path)

    def refuse(*a, **k):
        raise AssertionError("pickle used while loading a model")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert isinstance(gr.load_classifier(path), torch.nn.Module)


def test_user_errors_on_names_and_formats(tmp_path):
    with pytest.raises(gr.GenrobustError, match="neither a file nor a built-in classifier"):
        gr.load_classifier("no-such-model")
    with pytest.raises(gr.GenrobustError, match="ONNX"):
        gr.load_classifier(tmp_path / "m.onnx")
    with pytest.raises(gr.GenrobustError, match="unknown classifier architecture"):
        build_classifier("huge")
