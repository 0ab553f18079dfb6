"""The robustness table: rows of the correctness table against the standard GAN, cached per class."""

from __future__ import annotations

import json

from click.testing import CliRunner

from genrobust.cli import main
from genrobust.experiments import robustness_table as rt


def test_robustness_table_runs_caches_and_resumes(tmp_path, monkeypatch):
    args = ["reproduce", "robustness-table", "--rows", "built-in", "--classes", "8,1", "-n", "2",
            "--eps", "0.5,0.002", "--max-boxes", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs"),
            "--quiet"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    table = json.loads((tmp_path / "docs" / "robustness-table-mnist.json").read_text())
    cells = table["built-in"]["classes"]
    assert set(cells) == {"8", "1"}
    for cell in cells.values():
        assert [p["eps"] for p in cell["per_eps"]] == [0.002, 0.5]
        for p in cell["per_eps"]:
            assert p["certified"] + p["falsified"] + p["unknown"] == p["n"] == 2
    md = (tmp_path / "docs" / "robustness-table-mnist.md").read_text()
    assert "ε = 0.002" in md and "| built-in |" in md and "mnist-gan" in md

    def boom(*a, **k):  # a rerun must not verify anything again
        raise AssertionError("recomputed a cached class")

    monkeypatch.setattr(rt, "global_robustness", boom)
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "docs" / "robustness-table-mnist.json").read_text()) == table
