"""The `genrobust` command: help everywhere, the data commands, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main


def _all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, (*prefix, name))


def test_every_subcommand_has_help():
    runner = CliRunner()
    commands = list(_all_commands(main))
    assert ("data", "info") in commands and ("data", "fetch") in commands
    for path in [(), *commands]:
        result = runner.invoke(main, [*path, "--help"], prog_name="genrobust")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: genrobust" in result.output


def test_data_info_table_and_json(shared_datasets):
    runner = CliRunner()
    result = runner.invoke(main, ["data", "info", "--data-dir", str(shared_datasets)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("mnist ")]
    assert len(lines) == 2 and all("verified" in ln for ln in lines)
    assert "60,000" in lines[0] and "10,000" in lines[1]
    assert "missing" in result.output  # EMNIST is not here
    result = runner.invoke(main, ["data", "info", "--json"], env={"GENROBUST_DATA_DIR": str(shared_datasets)})
    rows = json.loads(result.output)
    assert {(r["dataset"], r["split"], r["state"]) for r in rows} >= {
        ("fashion-mnist", "train", "verified"),
        ("fashion-mnist", "test", "verified"),
    }


def test_fetch_offline_is_one_clear_line(tmp_path, closed_port_url):
    """The real console script, with the network 'down' (dead mirrors on loopback)."""
    exe = Path(sys.executable).with_name("genrobust")
    env = dict(os.environ)
    env.pop("GENROBUST_OFFLINE", None)
    code = (
        "import dataclasses, sys; from genrobust.data import registry; "
        f"registry.DATASETS['mnist'] = dataclasses.replace(registry.MNIST, mirrors=({closed_port_url!r},)); "
        "from genrobust.cli import main; sys.argv[0] = 'genrobust'; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "data", "fetch", "mnist", "--data-dir", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Error: could not download train-images-idx3-ubyte.gz from any mirror" in proc.stderr
    assert "--data-dir" in proc.stderr
    assert exe.exists()  # the console script is installed
    proc = subprocess.run([str(exe), "data", "fetch", "nosuch"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "unknown dataset 'nosuch'" in proc.stderr


@pytest.mark.parametrize("name", ["mnist", "emnist-digits"])
def test_fetch_when_downloads_are_disabled(tmp_path, name):
    result = CliRunner().invoke(main, ["data", "fetch", name, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "downloads are disabled" in result.output


def test_preview_writes_a_grid(shared_datasets, tmp_path):
    from PIL import Image

    out = tmp_path / "aug.png"
    args = ["data", "preview", "mnist", "--data-dir", str(shared_datasets), "--augmented"]
    result = CliRunner().invoke(main, [*args, "--per-class", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    img = Image.open(out)
    assert img.height >= 10 * 56 and img.width >= 8 * 56  # 10 rows of 2 × (image + 3 copies), scale 2
    result = CliRunner().invoke(main, ["data", "preview", "mnist", "--data-dir", str(tmp_path), "--out", "x.png"])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_train_gan_command_resumes_and_records_itself(shared_datasets, tmp_path):
    out = tmp_path / "gan"
    args = ["train", "gan", "--dataset", "mnist", "--steps", "20", "--classes", "7", "--quiet"]
    args += ["--out", str(out), "--data-dir", str(shared_datasets)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "class7.safetensors").is_file() and not (out / "generators.safetensors").exists()
    again = CliRunner().invoke(main, args)  # already done: loads, trains nothing
    assert again.exit_code == 0, again.output
    bad = CliRunner().invoke(main, [*args[:-4], "--classes", "x", "--out", str(out)])
    assert bad.exit_code == 2 and "comma-separated" in bad.output


def test_models_commands(tmp_path):
    from genrobust.models.zoo import ZOO

    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0
    for name in ZOO:
        assert name in result.output
    gens = next(n for n, e in ZOO.items() if e.role == "generators")
    out = tmp_path / "samples.png"
    result = CliRunner().invoke(main, ["models", "sample", gens, "--per-class", "3", "--out", str(out)])
    assert result.exit_code == 0 and out.is_file()
    info = json.loads(CliRunner().invoke(main, ["models", "info", gens]).output)
    assert info["role"] == "generators" and info["command"].startswith("genrobust train gan")
    result = CliRunner().invoke(main, ["models", "info", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 1 and "not found" in result.output


def test_a_time_budget_is_wall_time_spent_by_every_worker_side_by_side():
    """--time-budget is the run's wall-clock seconds: each ball's share of it, times the local worker processes that
    spend their shares side by side."""
    from genrobust.cli.check import pool_per_ball

    assert pool_per_ball(None, 10, 2) is None
    assert pool_per_ball(600.0, 3, None) == 200.0 == pool_per_ball(600.0, 3, 1)
    assert pool_per_ball(600.0, 3, 2) == 400.0


def test_robustness_runs_on_every_core_by_default_where_processes_pay(monkeypatch, tmp_path):
    """``robustness --workers auto`` (the default): one process of one thread per core on a CPU, no more than the
    run's shards or memory hold; this process for one shard, one core, a GPU or a Dask scheduler."""
    from genrobust.cli.app import WORKER_BYTES, auto_workers

    cpu = dict(device="cpu", scheduler=None, memory=24e9)
    assert auto_workers("auto", shards=10, cores=2, **cpu) == 2
    assert auto_workers("auto", shards=10, cores=16, **cpu) == 10  # no more processes than shards
    assert auto_workers("auto", shards=1, cores=2, **cpu) is None  # one shard: nothing to share
    assert auto_workers("auto", shards=10, cores=1, **cpu) is None
    assert auto_workers("auto", shards=10, device="cpu", scheduler=None, cores=8, memory=3.5 * WORKER_BYTES) == 3
    assert auto_workers("auto", shards=10, device="cpu", scheduler=None, cores=8, memory=1.5 * WORKER_BYTES) is None
    assert auto_workers("auto", shards=10, device="cpu", scheduler="tcp://x:1", cores=8, memory=24e9) is None
    assert auto_workers(3, shards=1, cores=1, **cpu) == 3 and auto_workers(None, shards=10, cores=8, **cpu) is None
    option = next(p for p in main.commands["robustness"].params if p.name == "workers")
    assert option.default == "auto"
    assert next(p for p in main.commands["correctness"].params if p.name == "workers").default is None
    runner = CliRunner()
    for value in ("0", "two", "-2"):
        bad = runner.invoke(main, ["robustness", "--workers", value, "-n", "2"])
        assert bad.exit_code != 0 and "--workers" in bad.output and "'auto'" in bad.output, bad.output
        assert "Traceback" not in bad.output
    bad = runner.invoke(main, ["robustness", "--method", "amls", "--workers", "2", "--eps", "0.05"])
    assert bad.exit_code != 0 and "drop --sequential, --workers" in bad.output
    # the command resolves the default on a two-core CPU to two processes, and the time budget follows them
    import genrobust.cli.app as app
    import genrobust.cli.check as check

    asked = []

    def setup(workers, scheduler, resume, out):
        asked.append(workers)
        return app.shard_setup(None, scheduler, resume, out)  # run here: the resolution is what is checked

    monkeypatch.setattr(app, "usable_cores", lambda: 2)
    monkeypatch.setattr(check, "shard_setup", setup)
    args = ["robustness", "--classes", "0,8", "-n", "1", "--eps", "0.001", "--max-boxes", "1", "--time-budget", "10",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")]  # fmt: skip
    ran = runner.invoke(main, args)
    assert ran.exit_code == 0, ran.output
    assert asked == [2]
    assert json.loads((tmp_path / "r" / "result.json").read_text())["options"]["mean_seconds"] == 10.0  # 2 × 10 s / 2
    asked.clear()
    assert runner.invoke(main, [*args[:-1], str(tmp_path / "one"), "--workers", "1"]).exit_code == 0
    assert asked == [1]


def test_robustness_command_writes_table_json_and_pictures(tmp_path):
    runner = CliRunner()
    out = tmp_path / "rob"
    args = ["robustness", "--classes", "8", "-n", "3", "--eps", "0.002,1.5", "--max-boxes", "2", "--quiet",
            "--give-up", "none", "--time-budget", "600", "--alpha-steps", "2", "--alpha-maps", "2", "--branch", "auto",
            "--no-refine-to-latent", "--fan", "2", "--no-oblique", "--near-alpha", "3", "--near-share", "0.3",
            "--lower-ratio", "1.5", "--out", str(out)]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "P(robust)" in result.output and "ε = 0.002" in result.output
    data = json.loads((out / "result.json").read_text())
    assert data["eps"] == [0.002, 1.5] and data["classes"][0]["per_eps"][0]["certified"]["n"] == 3
    assert data["options"]["give_up"] is None and data["options"]["mean_seconds"] == 200.0  # 600 s over 3 balls
    assert data["options"]["bounds"]["alpha_steps"] == 2 and data["options"]["branch"] == "auto"
    assert data["options"]["bounds"]["alpha_maps"] == 2 and data["options"]["bounds"]["alpha_map_layers"] == 2
    assert data["options"]["bounds"]["refine_to_latent"] is False  # the default is on
    assert data["options"]["fan"] == 2 and data["options"]["near_alpha"] == 3 and "oblique" not in data["options"]
    assert data["options"]["near_share"] == 0.3 and data["options"]["bounds"]["lower_ratio"] == 1.5
    assert (out / "robustness_curve.png").stat().st_size > 5000
    assert gr.load_result(out).classes[0].per_eps[1].falsified >= 1  # at ε = 1.5 PGD finds 8 → other (seeded)
    assert (out / "pairs.png").is_file() and (out / "path.gif").is_file()
    bad = runner.invoke(main, ["robustness", "--eps", "0,1", "-n", "2"])
    assert bad.exit_code == 1 and "ε must be" in bad.output and "Traceback" not in bad.output
    for value in ("x", "-1"):
        bad = runner.invoke(main, ["robustness", "--give-up", value, "-n", "2"])
        assert bad.exit_code != 0 and "give" in bad.output and "Traceback" not in bad.output
    for flag, value in (("--time-budget", "0"), ("--time-budget", "nan"), ("--alpha-steps", "-1"),
                        ("--alpha-maps", "-1"), ("--branch", "neurons"), ("--fan", "0"),
                        ("--near-alpha", "-1"), ("--near-share", "0"), ("--lower-ratio", "-1"),
                        ("--lower-ratio", "nan")):  # fmt: skip
        bad = runner.invoke(main, ["robustness", flag, value, "-n", "2"])
        assert bad.exit_code != 0 and flag.strip("-").split("-")[0] in bad.output and "Traceback" not in bad.output
    default = next(p for p in main.commands["robustness"].params if p.name == "give_up").default
    assert float(default) == gr.verify.local.GIVE_UP  # the CLI's default is the library's
    fan = next(p for p in main.commands["robustness"].params if p.name == "fan").default
    assert fan == gr.VerifyOptions().fan
    near = next(p for p in main.commands["robustness"].params if p.name == "near_alpha").default
    assert near == gr.VerifyOptions().near_alpha
    share = next(p for p in main.commands["robustness"].params if p.name == "near_share").default
    assert share == gr.VerifyOptions().near_share
    assert next(p for p in main.commands["robustness"].params if p.name == "oblique").default is True
    assert gr.VerifyOptions().oblique is True
    ratio = next(p for p in main.commands["robustness"].params if p.name == "lower_ratio").default
    assert ratio == gr.BoundOptions().lower_ratio
