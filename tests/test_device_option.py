"""--device is honoured by every command that computes with models: each lists it, runs on ``--device cpu``, and
refuses a CUDA device on a machine without one in one line (exit status 1, no traceback)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from genrobust.cli import main

#: every command that runs a model, with the fewest arguments that reach its device check
COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("correctness",): [],
    ("robustness",): [],
    ("attack",): ["--source", "1"],
    ("random-walk",): ["--out", "{tmp}/walk"],
    ("generators", "assess"): [],
    ("models", "sample"): ["mnist-gan", "--out", "{tmp}/grid.png"],
    ("verify-vnnlib",): [],
    ("export", "vnnlib"): ["--out", "{tmp}/export"],
    ("rate", "serve"): ["--study", "{tmp}/study"],
    ("rate", "results"): ["{tmp}"],
    ("reproduce", "generator-quality"): ["--work", "{tmp}/work", "--out", "{tmp}/out"],
    ("reproduce", "random-walk"): ["--out", "{tmp}/out"],
    ("reproduce", "dependence"): ["--work", "{tmp}/work", "--out", "{tmp}/out"],
    ("reproduce", "correctness-table"): ["--work", "{tmp}/work", "--out", "{tmp}/out"],
    ("reproduce", "robustness-table"): ["--work", "{tmp}/work", "--out", "{tmp}/out"],
}
#: the commands without the option before this change (correctness, robustness and attack already had it)
NEW = [path for path in COMMANDS if path not in {("correctness",), ("robustness",), ("attack",)}]


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_model_command_lists_device(path):
    res = CliRunner().invoke(main, [*path, "--help"], prog_name="genrobust")
    assert res.exit_code == 0, res.output
    assert "--device" in res.output and "[default: auto]" in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: a CUDA device is not an error here")
@pytest.mark.parametrize("path", NEW, ids=" ".join)
def test_cuda_without_cuda_is_one_clear_line(path, tmp_path):
    args = [a.format(tmp=tmp_path) for a in COMMANDS[path]]
    res = CliRunner().invoke(main, [*path, *args, "--device", "cuda"], prog_name="genrobust")
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit)  # a ClickException, not an escaped error
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "CUDA" in lines[0] and "Traceback" not in res.output, res.output
    assert lines[0] == "Error: device 'cuda' requested but CUDA is not available"
    assert not (tmp_path / "study").exists() and not (tmp_path / "out").exists()  # refused before any work


def test_random_walk_on_the_cpu(tmp_path):
    out = tmp_path / "walk"
    args = ["random-walk", "--class", "1", "--steps", "3", "-n", "2", "--eps", "0.1", "--device", "cpu"]
    res = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "result.json").read_text())
    assert len(data["walk"]["labels"]) == 4 and data["continuity"]["eps"] == [0.1]
    assert {p.name for p in out.iterdir()} >= {"walk.gif", "walk.png", "continuity.png", "result.json"}


def test_models_sample_on_the_cpu(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    res = CliRunner().invoke(main, ["models", "sample", "mnist-gan", "--per-class", "2", "--device", "cpu",
                                    "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    again = tmp_path / "again.png"  # the latents come from a CPU generator: the same grid as without --device
    res = CliRunner().invoke(main, ["models", "sample", "mnist-gan", "--per-class", "2", "--out", str(again)])
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).eval()


def test_verify_vnnlib_on_the_cpu(tmp_path):
    """One robustness-form instance (the local verifier on the box) and a benchmark of a general one, on the CPU,
    with the answers of the library's own call."""
    pytest.importorskip("onnx")
    from genrobust.verify.vnnlib import answer, ball_box, export_onnx, parse_vnnlib, property_text

    net = _net()
    export_onnx(net, 3, tmp_path / "net.onnx")
    centre = torch.tensor([0.1, -0.2, 0.3])
    label = int(net(centre[None]).argmax())
    lo, hi = ball_box(centre, 0.01)
    (tmp_path / "ball.vnnlib").write_text(property_text(lo, hi, label, 4))
    far = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -0.2))\n(assert (<= X_{i} 0.1))\n" for i in range(3))
    far = "".join(f"(declare-const Y_{j} Real)\n" for j in range(4)) + far + "(assert (>= Y_0 50.0))\n"
    (tmp_path / "far.vnnlib").write_text(far)
    opts = ["--max-boxes", "64", "--max-seconds", "20", "--device", "cpu"]
    res = CliRunner().invoke(main, ["verify-vnnlib", str(tmp_path / "net.onnx"), str(tmp_path / "ball.vnnlib"),
                                    *opts, "--out", str(tmp_path / "ball.txt")])  # fmt: skip
    assert res.exit_code == 0, res.output
    want = answer(net, parse_vnnlib((tmp_path / "ball.vnnlib").read_text()), device="cpu").result
    assert res.output.strip() == want == "unsat"
    (tmp_path / "instances.csv").write_text("net.onnx,far.vnnlib,20\n")
    res = CliRunner().invoke(main, ["verify-vnnlib", "--instances", str(tmp_path / "instances.csv"), *opts,
                                    "--out", str(tmp_path / "results.csv")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 unsat, 0 sat, 0 unknown, 0 error" in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_benchmark_refuses_an_absent_device_once_not_per_instance(tmp_path):
    """run_instances checks the device before any instance: otherwise every instance would be an 'error' row."""
    import genrobust as gr
    from genrobust.verify.vnnlib import run_instances

    (tmp_path / "instances.csv").write_text("net.onnx,far.vnnlib,20\n")
    with pytest.raises(gr.GenrobustError, match="CUDA is not available"):
        run_instances(tmp_path / "instances.csv", tmp_path / "results.csv", device="cuda")
    assert not (tmp_path / "results.csv").exists()


def test_library_pass_through_leaves_the_callers_models_alone():
    """A device given to a library function moves copies: the caller's models keep their device and weights."""
    import genrobust as gr
    from genrobust.experiments.dependence import overlap

    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    res = overlap({"a": gens, "b": gens}, clf, n=4, k=1, device="cpu")
    assert res["classes"][0]["a"] >= 0 and len(res["classes"]) == len(gens)
    assert all(torch.equal(v, clf.state_dict()[k]) for k, v in before.items())
    assert next(clf.parameters()).device.type == "cpu" and next(gens.parameters()).device.type == "cpu"
