"""ONNX models and other sources: the importer against onnxruntime, round trips through torch.onnx.export, the
verdicts of imported models against the originals, factories, and the refusals (pickles, unknown operators)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import genrobust as gr
from genrobust.bounds.capture import MODULE_BUILDERS, capture
from genrobust.cli import main
from genrobust.models.onnx_import import CONVERTERS, UnsupportedOnnxError, import_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _export(model: nn.Module, args: tuple, path, names: list[str]) -> None:
    dyn = {n: {0: "batch"} for n in [*names, "out"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(path), dynamo=False, input_names=names, output_names=["out"],
                          dynamic_axes=dyn, opset_version=17)  # fmt: skip


def _runtime(path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


class Classifier(nn.Module):
    """BatchNorm, max and average pooling, a strided padded convolution, x.view(x.size(0), -1), a sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.fc, self.out = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Linear(6 * 2 * 2, 12), nn.Linear(12, 3)
        self.bn.running_mean.uniform_(-0.3, 0.3)
        self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        x = nn.functional.avg_pool2d(nn.functional.leaky_relu(self.c2(x), 0.1), 2)
        return self.out(torch.sigmoid(self.fc(x.view(x.size(0), -1))) * 2 - 1)


class CondGen(nn.Module):
    def __init__(self, index: bool) -> None:
        super().__init__()
        self.index = index
        self.emb = nn.Embedding(3, 3)
        self.net = nn.Sequential(nn.Linear(7, 24), nn.ReLU(), nn.Linear(24, 3 * 16 * 16), nn.Tanh())

    def forward(self, z, y):
        y = self.emb(y.reshape(-1)) if self.index else y
        return self.net(torch.cat([z, y], 1)).reshape(-1, 3, 16, 16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("onnx")
    clf = Classifier().eval()
    _export(clf, (torch.zeros(1, 3, 16, 16),), d / "clf.onnx", ["x"])
    onehot, index = CondGen(False).eval(), CondGen(True).eval()
    _export(onehot, (torch.zeros(1, 4), torch.zeros(1, 3)), d / "cond.onnx", ["z", "y"])
    _export(index, (torch.zeros(1, 4), torch.zeros(1, 1, dtype=torch.long)), d / "index.onnx", ["z", "y"])
    per = [
        nn.Sequential(nn.Linear(4, 3 * 16 * 16), nn.Sigmoid(), nn.Unflatten(1, (3, 16, 16))).eval() for _ in range(3)
    ]
    for c, g in enumerate(per):
        _export(g, (torch.zeros(1, 4),), d / f"gen_{c}.onnx", ["z"])
    return {"dir": d, "clf": clf, "onehot": onehot, "index": index, "per": per}


def test_an_exported_classifier_imports_exactly(files):
    model = import_onnx(files["dir"] / "clf.onnx")
    x = torch.rand(7, 3, 16, 16)
    with torch.no_grad():
        ours, original = model(x), files["clf"](x)
    theirs = _runtime(files["dir"] / "clf.onnx", {"x": x.numpy()})
    assert torch.allclose(ours, original, atol=1e-5)
    assert np.allclose(ours.numpy(), theirs, atol=1e-5)
    assert all(type(m) in MODULE_BUILDERS for m in model.children())  # the bound engine's own table
    ops = capture(model, (3, 16, 16))
    h = x.double()
    for op in ops:
        h = op.forward(h)
    assert torch.allclose(h.float(), ours, atol=1e-5)


def _graph_model(nodes, inits, in_shape, out_shape, opset=19):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *out_shape])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_torchs_default_dynamo_exporter_imports_too(files, tmp_path):
    """torch ≥ 2.9 exports through torch.export by default (needs onnxscript): other graphs, same networks."""
    pytest.importorskip("onnxscript")
    batch = torch.export.Dim("batch")
    cases = [("clf", files["clf"], (torch.rand(2, 3, 16, 16),)),
             ("index", files["index"], (torch.randn(2, 4), torch.tensor([[0], [2]])))]  # fmt: skip
    for name, model, args in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(tmp_path / f"{name}.onnx"), input_names=["a", "b"][: len(args)],
                              dynamic_shapes=tuple({0: batch} for _ in args))  # fmt: skip
        imported = import_onnx(tmp_path / f"{name}.onnx")
        more = tuple(torch.cat([a, a, a]) for a in args)
        with torch.no_grad():
            assert torch.allclose(imported(*more), model(*more), atol=1e-5)


def test_hand_written_opset_19_graphs_match_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([0, -1], np.int64))),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["hb"]),
        helper.make_node("LeakyRelu", ["hb"], ["a"], alpha=0.3),
        helper.make_node("Constant", [], ["two"], value_float=2.0),
        helper.make_node("Div", ["a", "two"], ["ad"]),
        helper.make_node("Sub", ["c", "ad"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t0"]),
        helper.make_node("Softplus", ["t0"], ["t"]),
        helper.make_node("Gemm", ["t", "G", "g"], ["y"], transB=1, alpha=0.5, beta=2.0),
    ]
    inits = {"W": rng.normal(size=(12, 8)), "b": rng.normal(size=8), "c": rng.normal(size=8),
             "G": rng.normal(size=(5, 8)), "g": rng.normal(size=5)}  # fmt: skip
    onnx.save(_graph_model(nodes, inits, [3, 2, 2], [5]), tmp_path / "m.onnx")
    model = import_onnx(tmp_path / "m.onnx")
    x = torch.randn(6, 3, 2, 2)
    theirs = _runtime(tmp_path / "m.onnx", {"x": x.numpy()})
    assert np.allclose(model(x).detach().numpy(), theirs, atol=1e-5)
    assert len(capture(model, (3, 2, 2))) >= 6


def test_unsupported_operators_and_bad_files_get_one_line_errors(tmp_path):
    nodes = [helper.make_node("Erf", ["x"], ["y"])]
    onnx.save(_graph_model(nodes, {}, [4], [4]), tmp_path / "erf.onnx")
    with pytest.raises(UnsupportedOnnxError, match=r"'Erf'.*supported: .*Conv"):
        import_onnx(tmp_path / "erf.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(gr.ModelFileError, match="not a valid ONNX model"):
        gr.load_classifier(tmp_path / "junk.onnx")
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
    onnx.save(_graph_model(nodes, {"s": np.array([4, -1])}, [4], [1]), tmp_path / "batch.onnx")
    with pytest.raises(UnsupportedOnnxError, match="batch"):
        import_onnx(tmp_path / "batch.onnx")
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    for name in ("model.pt", "model.pth"):
        with pytest.raises(gr.ModelFileError, match=r"does not load pickled files.*factory.*ONNX"):
            gr.load_classifier(tmp_path / name)
    assert set(CONVERTERS) >= {"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "Relu", "LeakyRelu", "Tanh",
                               "Sigmoid", "BatchNormalization", "MaxPool", "AveragePool", "Flatten", "Reshape",
                               "Constant", "Concat", "Identity"}  # fmt: skip


def test_models_info_reads_onnx_files_without_converting_them(files, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["models", "info", str(files["dir"] / "clf.onnx")])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["format"] == "onnx" and info["unsupported_operators"] == []
    assert [i["name"] for i in info["inputs"]] == ["x"] and info["inputs"][0]["shape"][1:] == [3, 16, 16]
    assert info["operators"]["Conv"] == 2 and info["operators"]["Gemm"] == 2 and info["opset"]["ai.onnx"] == 17
    # the exporter folds the eval-mode BatchNorm into the convolution before it: its weights, not the norm's
    assert info["parameters"] == sum(p.numel() for n, p in Classifier().named_parameters() if not n.startswith("bn"))
    nodes = [helper.make_node("Erf", ["x"], ["y"])]
    onnx.save(_graph_model(nodes, {}, [4], [4]), tmp_path / "erf.onnx")
    info = gr.model_info(tmp_path / "erf.onnx")  # the importer refuses it; info names why
    assert info["unsupported_operators"] == ["Erf"] and info["outputs"][0]["dtype"] == "float"
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf" * 10)
    res = runner.invoke(main, ["models", "info", str(tmp_path / "junk.onnx")])
    assert res.exit_code != 0 and "not a valid ONNX model" in res.output


@pytest.mark.parametrize("kind", ["onehot", "index", "per-class"])
def test_onnx_generators_give_the_same_images_and_verdicts_as_the_originals(files, kind):
    d = files["dir"]
    if kind == "per-class":
        fam = gr.load_generators(str(d / "gen_{c}.onnx"))
        ref = gr.GeneratorFamily(per_class=files["per"], latent_dim=4)
    else:
        names = ("a", "b", "c")
        fam = gr.load_generators(d / f"{'cond' if kind == 'onehot' else 'index'}.onnx", output_range=(-1, 1),
                                 class_names=names)  # fmt: skip
        ref = gr.GeneratorFamily(conditional=files[kind], latent_dim=4, class_names=names, condition=kind,
                                 output_range=(-1, 1))  # fmt: skip
        fam, ref = fam.adapt((0, 1)), ref.adapt((0, 1))
    assert len(fam) == 3 and fam.latent_dim == 4
    clf = import_onnx(d / "clf.onnx")
    z = torch.randn(5, 4)
    for c in range(3):
        with torch.no_grad():
            assert torch.allclose(fam[c](z), ref[c](z), atol=1e-5)
    opts = gr.VerifyOptions(max_boxes=4, max_seconds=20)
    ours = gr.global_robustness(clf, fam, eps=[0.001, 0.05], n=4, seed=0, options=opts)
    theirs = gr.global_robustness(files["clf"], ref, eps=[0.001, 0.05], n=4, seed=0, options=opts)
    for c in range(3):
        assert torch.equal(ours.local[c].status, theirs.local[c].status)


def test_factories_load_modules_and_families(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch.nn as nn\nimport genrobust as gr\n"
        "def classifier():\n    return nn.Sequential(nn.Flatten(), nn.Linear(12, 2))\n"
        "def family():\n    return gr.GeneratorFamily(per_class=[nn.Sequential(nn.Linear(3, 12), nn.Sigmoid(),"
        " nn.Unflatten(1, (3, 2, 2))) for _ in range(2)], latent_dim=3)\n"
        "NOT_A_MODEL = 3\n"
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    clf, fam = gr.load_classifier("mymodels:classifier"), gr.load_generators("mymodels:family")
    assert isinstance(fam, gr.GeneratorFamily) and not clf.training
    assert gr.global_correctness(clf, fam, n=20, seed=0).classes[0].n == 20
    with pytest.raises(gr.GenrobustError, match=r"not a torch nn.Module"):
        gr.load_classifier("mymodels:NOT_A_MODEL")
    with pytest.raises(gr.GenrobustError, match="has no attribute"):
        gr.load_classifier("mymodels:missing")
    with pytest.raises(gr.GenrobustError, match="cannot import"):
        gr.load_generators("nosuchmodule:family")


def test_every_command_takes_onnx_models(files, tmp_path):
    d = files["dir"]
    common = ["--classifier", str(d / "clf.onnx"), "--generators", str(d / "cond.onnx"), "--generator-range", "-1,1",
              "--class-names", "a,b,c", "--input-range", "0,1"]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(main, ["correctness", *common, "-n", "30", "--quiet", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "a" in res.output and (tmp_path / "c" / "result.json").is_file()
    res = runner.invoke(main, ["attack", *common, "--source", "0", "--eps", "2", "--starts", "8", "--quiet",
                               "--out", str(tmp_path / "a")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["robustness", *common, "--eps", "0.001,0.05", "-n", "3", "--max-boxes", "2",
                               "--quiet", "--out", str(tmp_path / "r")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "robustness_curve.png").is_file()
    res = runner.invoke(main, ["correctness", "--classifier", str(tmp_path / "x.pth"), "-n", "5"])
    assert res.exit_code == 1 and "pickled" in res.output
    res = runner.invoke(main, ["correctness", *common, "--mean", "0.5,0.5", "--std", "x", "-n", "5"])
    assert res.exit_code != 0 and "--std" in res.output


def test_onnx_inputs_need_fixed_shapes_and_models_one_output(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "k"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "k"])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), tmp_path / "free.onnx")
    with pytest.raises(gr.ModelFileError, match="fixed shape"):
        import_onnx(tmp_path / "free.onnx")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Tanh", ["x"], ["t"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, ["n", 3])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), tmp_path / "two.onnx")
    with pytest.raises(UnsupportedOnnxError, match="2 outputs"):
        import_onnx(tmp_path / "two.onnx")


def test_an_index_generator_without_class_names_is_refused(files):
    with pytest.raises(gr.GenrobustError, match="class names"):
        gr.load_generators(files["dir"] / "index.onnx")
