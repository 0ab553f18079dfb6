"""The robustness table: rows of the correctness table against the standard GAN, cached per class."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.experiments import robustness_table as rt


def test_robustness_table_runs_caches_and_resumes(tmp_path, monkeypatch):
    args = ["reproduce", "robustness-table", "--rows", "built-in", "--classes", "8,1", "-n", "2",
            "--eps", "0.5,0.002", "--max-boxes", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs"),
            "--quiet"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    table = json.loads((tmp_path / "docs" / "robustness-table-mnist.json").read_text())["rows"]
    cells = table["built-in"]["classes"]
    assert set(cells) == {"8", "1"}
    for cell in cells.values():
        assert [p["eps"] for p in cell["per_eps"]] == [0.002, 0.5]
        for p in cell["per_eps"]:
            assert p["certified"] + p["falsified"] + p["unknown"] == p["n"] == 2
    md = (tmp_path / "docs" / "robustness-table-mnist.md").read_text()
    assert "ε = 0.002" in md and "| built-in |" in md and "mnist-gan" in md
    assert "How much of each class `mnist-gan` draws: precision 0.87, recall 0.24" in md  # from the zoo's figures
    loaded = gr.load_result(tmp_path / "docs" / "robustness-table-mnist.json")
    assert loaded.kind == "robustness-table" and loaded.rows == table and loaded.eps == [0.002, 0.5]
    assert loaded.to_dict() == json.loads((tmp_path / "docs" / "robustness-table-mnist.json").read_text())
    assert loaded.provenance.models["built-in"]["classifier"] == table["built-in"]["classifier_sha256"]
    assert loaded.markdown() == md.rstrip("\n")
    cert = loaded.certified("built-in", 0.002, 8)
    assert (cert.k, cert.n) == (cells["8"]["per_eps"][0]["certified"], 2)
    pooled = loaded.not_falsified("built-in", 0.5)
    assert pooled.n == 4 and pooled.k == 4 - sum(c["per_eps"][1]["falsified"] for c in cells.values())
    assert loaded.verdict("built-in", 0.002, delta=0.5) in ("holds", "undecided", "fails")

    def boom(*a, **k):  # a rerun must not verify anything again
        raise AssertionError("recomputed a cached class")

    monkeypatch.setattr(rt, "global_robustness", boom)
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "docs" / "robustness-table-mnist.json").read_text())["rows"] == table


def test_a_larger_n_checks_only_the_new_centres_and_a_smaller_one_reuses_the_first(tmp_path, monkeypatch):
    base = ["reproduce", "robustness-table", "--rows", "built-in", "--classes", "3", "--eps", "0.002", "--max-boxes",
            "1", "--save-every", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs"),
            "--quiet"]  # fmt: skip
    calls = []
    real = rt.global_robustness

    def spy(*a, **k):
        calls.append((k["start"], k["n"]))
        return real(*a, **k)

    monkeypatch.setattr(rt, "global_robustness", spy)
    runner = CliRunner()
    assert runner.invoke(main, [*base, "-n", "3"]).exit_code == 0
    assert calls == [(0, 3)]  # one run per row (the networks traced once), in shards of 2 balls, each journaled
    cache = tmp_path / "work" / "mnist" / "robustness-seed0-eps0.002" / "built-in.json"
    assert not list(cache.parent.glob("*.jsonl"))  # the journal goes once its balls are in the cache
    balls = json.loads(cache.read_text())["classes"]["3"]
    assert len(balls["status"]) == len(balls["seconds"]) == 3
    assert runner.invoke(main, [*base, "-n", "5"]).exit_code == 0
    assert calls[1:] == [(3, 5)]  # only the two new centres
    five = json.loads(cache.read_text())["classes"]["3"]["status"]
    assert five[:3] == balls["status"]
    one_run = real(gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan"), eps=[0.002], n=5, classes=[3],
                   options=rt.VerifyOptions(max_boxes=1))  # fmt: skip
    assert one_run.local[3].status.tolist() == five  # the same outcomes as one run of 5
    assert runner.invoke(main, [*base, "-n", "2"]).exit_code == 0
    assert len(calls) == 2  # a smaller n reuses the first balls
    rows = json.loads((tmp_path / "docs" / "robustness-table-mnist.json").read_text())["rows"]
    cell = rows["built-in"]["classes"]["3"]
    assert cell["per_eps"][0]["n"] == 2
    entry = json.loads(cache.read_text())
    assert entry["classifier_sha256"] == gr.load_classifier("mnist-small").genrobust_meta["weights_sha256"]
    entry["classifier_sha256"] = "f" * 64  # balls checked with other weights (a retrained classifier)
    cache.write_text(json.dumps(entry))
    assert runner.invoke(main, [*base, "-n", "6"]).exit_code == 0
    assert calls[2:] == [(0, 6)]  # are not extended but started again (a complete row stands as it is)
    zero = runner.invoke(main, [*base, "-n", "2", "--save-every", "0"])
    assert zero.exit_code == 1 and "save interval must be a positive number of balls" in zero.output
    cache.write_text("{not json")
    bad = runner.invoke(main, [*base, "-n", "2"])
    assert bad.exit_code == 1 and "corrupt robustness cache" in bad.output


def test_a_killed_row_resumes_from_its_journal(tmp_path):
    """The balls a killed table run journaled are taken from the journal, not checked again; a journal another
    budget or verifier wrote is set aside and its balls checked anew."""
    base = ["reproduce", "robustness-table", "--rows", "built-in", "--classes", "3", "--eps", "0.002", "--max-boxes",
            "1", "--save-every", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs"), "-n", "4",
            "--quiet"]  # fmt: skip
    folder = tmp_path / "work" / "mnist" / "robustness-seed0-eps0.002"
    journal = folder / "built-in.n4-from0-classes3.jsonl"
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    options = rt.VerifyOptions(max_boxes=1, max_seconds=30.0, split="unstable")
    whole = rt.global_robustness(clf, gens, eps=[0.002], n=4, classes=[3], options=options, chunk=2, journal=journal)
    assert whole.local[3].status.tolist() == [[1]] * 4
    header, first, _ = journal.read_text().splitlines()
    shard = json.loads(first)
    shard["part"]["status"]["data"] = [0, 0]  # marked: these two balls can only come from the journal
    journal.write_text(header + "\n" + json.dumps(shard) + "\n")  # what a kill after the first shard leaves
    out = CliRunner().invoke(main, base)
    assert out.exit_code == 0, out.output
    assert not journal.exists()
    cache = folder / "built-in.json"
    assert json.loads(cache.read_text())["classes"]["3"]["status"] == [[0], [0], [1], [1]]
    cache.unlink()
    stale = json.loads(header)
    stale["verifier"] = -1
    journal.write_text(json.dumps(stale) + "\n" + json.dumps(shard) + "\n")
    out = CliRunner().invoke(main, base)
    assert out.exit_code == 0, out.output
    assert json.loads(cache.read_text())["classes"]["3"]["status"] == [[1]] * 4
    assert journal.with_suffix(".stale").exists()


def test_each_budget_keeps_its_own_cache(tmp_path, monkeypatch):
    base = ["reproduce", "robustness-table", "--rows", "built-in", "--classes", "3", "--eps", "0.002", "-n", "1",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs"), "--quiet"]  # fmt: skip
    runner = CliRunner()
    folder = tmp_path / "work" / "mnist" / "robustness-seed0-eps0.002"
    assert runner.invoke(main, [*base, "--max-boxes", "1"]).exit_code == 0
    assert runner.invoke(main, [*base, "--max-boxes", "4", "--max-seconds", "20"]).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["built-in-boxes4-s20-unstable.json", "built-in.json"]
    one_box = json.loads((folder / "built-in.json").read_text())
    assert one_box["budget"]["max_boxes"] == 1 and len(one_box["classes"]["3"]["status"]) == 1
    assert json.loads((folder / "built-in-boxes4-s20-unstable.json").read_text())["budget"]["max_boxes"] == 4

    def boom(*a, **k):  # both caches are still there: neither budget verifies again
        raise AssertionError("a budget's cache was overwritten by the other's")

    monkeypatch.setattr(rt, "global_robustness", boom)
    assert runner.invoke(main, [*base, "--max-boxes", "1"]).exit_code == 0
    assert runner.invoke(main, [*base, "--max-boxes", "4", "--max-seconds", "20"]).exit_code == 0


def test_train_seed_keeps_its_own_cache_and_refuses_the_shipped_row(tmp_path):
    plan = rt.RobustnessPlan("mnist", 5, ["small"], tmp_path, train_seed=2)
    assert plan.cache.name == "robustness-seed0-eps0.01-0.03-0.05-train2"
    assert rt.RobustnessPlan("mnist", 5, ["small"], tmp_path).cache.name == "robustness-seed0-eps0.01-0.03-0.05"
    bad = CliRunner().invoke(main, ["reproduce", "robustness-table", "--rows", "built-in", "--train-seed", "1",
                                    "--work", str(tmp_path), "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert bad.exit_code == 1 and "no training seed 1" in bad.output


def test_rows_are_compared_ball_by_ball_with_the_reference():
    # ε index 0: small certifies balls 0-3; madry certifies 0-1 and 4-9 (6 more, 2 fewer); class 1 is shared
    small = {"0": {"status": [[1]] * 4 + [[0]] * 6}, "1": {"status": [[1], [-1]]}}
    madry = {"0": {"status": [[1]] * 2 + [[0]] * 2 + [[1]] * 6}, "1": {"status": [[1], [1]]}}
    for cells in (small, madry):
        for c in cells.values():
            c["per_eps"] = [{"eps": 0.03}]
    table = {"small": {"classes": small}, "madry": {"classes": madry}}
    cmp = rt.paired_comparison(table, "madry", "small", 0)
    assert cmp["certified"]["only_row"] == 7 and cmp["certified"]["only_reference"] == 2
    assert cmp["falsified"] == {"only_row": 0, "only_reference": 1, "p": 1.0}
    from scipy.stats import binomtest

    assert cmp["certified"]["p"] == pytest.approx(binomtest(7, 9, 0.5).pvalue)


def test_default_rows_for_another_training_seed_leave_out_the_shipped_model(tmp_path, monkeypatch):
    seen = {}

    def fake(plan, **kwargs):
        seen["rows"] = plan.rows
        return {}

    monkeypatch.setattr(rt, "run_robustness_table", fake)
    result = CliRunner().invoke(main, ["reproduce", "robustness-table", "--train-seed", "1", "--out", str(tmp_path),
                                       "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "built-in" not in seen["rows"] and "small" in seen["rows"] and "papernot" in seen["rows"]
