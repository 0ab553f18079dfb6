import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import genrobust as gr
import genrobust.experiments.correctness_table as ct
from genrobust.cli import main
from genrobust.errors import GenrobustError
from genrobust.experiments.tables import CorrectnessTable
from genrobust.report.html import report_html


def test_table_row_from_the_builtin_classifier_and_cached_cells(tmp_path, shared_datasets, monkeypatch):
    out = tmp_path / "docs"
    args = ["reproduce", "correctness-table", "--dataset", "mnist", "-n", "40", "--rows", "built-in", "--quiet"]
    args += ["--work", str(tmp_path / "work"), "--out", str(out), "--data-dir", str(shared_datasets)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = json.loads((out / "correctness-table-mnist.json").read_text())["rows"]
    row = table["built-in"]
    assert row["source"] == "built-in `mnist-small`" and row["test_accuracy"] > 0.99
    assert ct.TABLE_GENERATORS["mnist"] == ("mnist-gan", "mnist-gan-aug", "mnist-cgan")  # the coverage column
    for g in ct.TABLE_GENERATORS["mnist"]:
        assert 0 <= row[g]["worst_ci"][0] <= row[g]["worst"] <= row[g]["worst_ci"][1] <= 1
        assert len(row[g]["classes"]) == 10
    assert "| built-in |" in (out / "correctness-table-mnist.md").read_text()
    loaded = gr.load_result(out / "correctness-table-mnist.json")  # the table reads back into its result class
    assert isinstance(loaded, CorrectnessTable) and loaded.rows == table
    assert loaded.to_dict() == json.loads((out / "correctness-table-mnist.json").read_text())
    assert loaded.markdown() == (out / "correctness-table-mnist.md").read_text().rstrip("\n")
    shares = loaded.shares("built-in", "mnist-cgan")
    assert [p.k for p in shares] == [c["correct"] for c in row["mnist-cgan"]["classes"]] and shares[0].n == 40
    assert loaded.verdict("built-in", "mnist-gan", delta=0.5) in ("holds", "undecided", "fails")
    assert loaded.provenance.models["built-in"]["classifier"] == row["classifier_sha256"]
    html = report_html([out / "correctness-table-mnist.json"])  # genrobust report lays a table out by its kind
    assert 'class="run correctness-table"' in html and "<td>built-in</td>" in html

    def refuse(*a, **k):
        raise AssertionError("a cached cell was recomputed")

    real = ct.global_correctness

    monkeypatch.setattr(ct, "global_correctness", refuse)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "correctness-table-mnist.json").read_text())["rows"]["built-in"]["generators_sha256"] == {
        g: ct.ZOO[g].sha256 for g in ct.TABLE_GENERATORS["mnist"]
    }
    # a family retrained since (another registry hash): only its column is computed again
    cache = tmp_path / "work" / "mnist" / "table-n40-seed0.json"
    table = json.loads(cache.read_text())
    table["built-in"]["generators_sha256"]["mnist-cgan"] = "0" * 64
    cache.write_text(json.dumps(table))
    recomputed = []
    monkeypatch.setattr(
        ct, "global_correctness", lambda clf, family, **kw: recomputed.append(family) or real(clf, family, **kw)
    )
    third = CliRunner().invoke(main, args)
    assert third.exit_code == 0, third.output
    assert len(recomputed) == 1 and recomputed[0].conditional is not None  # mnist-cgan: one conditional network
    # a cell cached before cells recorded their family's hash: which weights drew it is unknown, so it is stale
    table = json.loads(cache.read_text())
    del table["built-in"]["generators_sha256"]["mnist-gan"]
    cache.write_text(json.dumps(table))
    recomputed.clear()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert len(recomputed) == 1 and recomputed[0].conditional is None  # mnist-gan: ten per-class networks
    # a row whose classifier is not the one its cells came from (retrained: other weights) is computed again
    # whole, whether its cells recorded the weights' hash or, from before that, only the test accuracy
    table = json.loads(cache.read_text())
    assert table["built-in"]["classifier_sha256"] == gr.load_classifier("mnist-small").genrobust_meta["weights_sha256"]
    for stale in ({"classifier_sha256": "f" * 64}, {"classifier_sha256": None, "test_accuracy": 0.5}):
        table = json.loads(cache.read_text())
        table["built-in"].update(stale)
        if stale["classifier_sha256"] is None:
            del table["built-in"]["classifier_sha256"]
        del table["built-in"]["mnist-cgan"]
        cache.write_text(json.dumps(table))
        recomputed.clear()
        assert CliRunner().invoke(main, args).exit_code == 0
        assert len(recomputed) == 3, stale


def test_a_killed_cell_resumes_from_its_journal(tmp_path, shared_datasets):
    """A cell's finished shards come from its journal, not from the generator again; a journal another run left
    there is set aside and the cell computed anew."""
    plan = ct.TablePlan("mnist", 40, ["built-in"], tmp_path / "work")
    journal = plan.cache.with_name(f"{plan.cache.stem}.built-in.mnist-gan.jsonl")
    journal.parent.mkdir(parents=True)
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    gr.global_correctness(clf, gens, n=40, seed=0, confidence=0.95, journal=journal)
    header, *shards = journal.read_text().splitlines()
    assert len(shards) == 10  # one shard per class
    first = json.loads(shards[0])
    assert first["cls"] == 0
    first["part"]["ok"] = [False] * 40  # marked: class 0 can only be all wrong if it comes from the journal
    journal.write_text("\n".join([header, json.dumps(first), *shards[1:4], shards[4][:30]]))  # killed mid-line
    table = ct.run_table(plan, data_dir=shared_datasets, show_progress=False)
    assert not journal.exists()
    classes = table["built-in"]["mnist-gan"]["classes"]
    assert classes[0]["correct"] == 0 and all(k["correct"] > 30 for k in classes[1:])
    stale = json.loads(header)
    stale["n"] = 41
    journal.write_text(json.dumps(stale) + "\n" + json.dumps(first) + "\n")
    plan.cache.unlink()
    table = ct.run_table(plan, data_dir=shared_datasets, show_progress=False)
    assert table["built-in"]["mnist-gan"]["classes"][0]["correct"] > 30
    assert journal.with_suffix(".stale").exists()


def test_unknown_rows_are_refused():
    with pytest.raises(GenrobustError, match="unknown row"):
        ct.recipe_for("mnist", "huge")


def test_a_cached_row_of_another_recipe_is_recomputed(tmp_path, shared_datasets, monkeypatch):
    cache = tmp_path / "work" / "mnist" / "table-n40-seed0.json"
    cache.parent.mkdir(parents=True)
    stale = {"recipe": {"arch": "small", "epochs": 99}, "test_accuracy": 0.5, "mnist-gan": {}, "mnist-gan-aug": {}}
    cache.write_text(json.dumps({"built-in": stale}))
    plan = ct.TablePlan("mnist", 40, ["built-in"], tmp_path / "work")
    table = ct.run_table(plan, data_dir=shared_datasets, show_progress=False)
    assert table["built-in"]["recipe"] == ct.row_recipe("mnist", "built-in")
    assert table["built-in"]["test_accuracy"] > 0.99
    with pytest.raises(GenrobustError, match="unknown row 'huge'"):
        ct.run_table(ct.TablePlan("mnist", 40, ["huge"], tmp_path / "work"), data_dir=shared_datasets)


def test_markdown_gives_exact_intervals_for_accuracy_worst_class_and_pooled_mean():
    classes = [{"cls": c, "estimate": 0.9 if c == 3 else 1.0, "ci": [0, 1]} for c in range(10)]
    cell = {"mean": 0.99, "worst_class": 3, "worst": 0.9, "worst_ci": [0.8, 0.95], "classes": classes}
    table = {"small": {"recipe": {"arch": "small", "epochs": 1}, "test_accuracy": 0.99, "test_size": 10_000,
                       "mnist-gan": cell, "mnist-gan-aug": cell}}  # fmt: skip
    md = ct.to_markdown(table, "mnist", 100)
    lo, hi = ct.clopper_pearson(990, 1000, 0.95)  # pooled: 10 classes × 100 samples
    assert f"99.00% [{100 * lo:.2f}, {100 * hi:.2f}]" in md
    alo, ahi = ct.clopper_pearson(9900, 10_000, 0.95)
    assert f"| small | epochs=1 | 99.00% [{100 * alo:.2f}, {100 * ahi:.2f}] |" in md
    assert "3: 90.00% [80.00, 95.00]" in md
    assert "vs `mnist-cgan`" in md and md.splitlines()[2].endswith("| … |")  # a column not computed yet
    assert "`mnist-gan`: precision 0.87, recall 0.24 (worst class 1: 0.13); recall < 0.5 in 10 of 10 classes" in md
    assert "`mnist-cgan`: precision 0.89, recall 0.78 (worst class 8: 0.72); every class's recall ≥ 0.5" in md


def test_the_spread_keeps_the_columns_every_seed_has():
    cell = {"mean": 0.99, "worst_class": 3, "worst": 0.9}
    old = {"small": {"test_accuracy": 0.99, "mnist-gan": cell, "mnist-gan-aug": cell}}  # before the coverage column
    new = {"small": {"test_accuracy": 0.98, "mnist-gan": cell, "mnist-gan-aug": cell, "mnist-cgan": cell}}
    spread = ct.seed_spread({0: new, 1: old}, "mnist")
    assert spread["generators"] == ["mnist-gan", "mnist-gan-aug"] and "mnist-cgan mean" not in spread["rows"]["small"]
    assert "mnist-cgan" not in ct.seed_spread_markdown(spread, "mnist")
    assert ct.seed_spread({0: new, 1: new}, "mnist")["generators"] == list(ct.TABLE_GENERATORS["mnist"])


def test_training_seeds_give_separate_tables_and_their_spread(tmp_path, shared_datasets, monkeypatch):
    tiny = {"arch": "small", "epochs": 0.01, "lr_schedule": "cosine"}  # 600 images: a second of training
    monkeypatch.setitem(ct.ROWS, "tiny", tiny)
    monkeypatch.setattr(ct, "ALL_ROWS", [*ct.ALL_ROWS, "tiny"])
    out, work = tmp_path / "docs", tmp_path / "work"
    args = ["reproduce", "correctness-table", "--dataset", "mnist", "-n", "30", "--rows", "tiny", "--quiet"]
    args += ["--work", str(work), "--out", str(out), "--data-dir", str(shared_datasets), "--train-seeds", "0,1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    t0 = json.loads((out / "correctness-table-mnist.json").read_text())["rows"]["tiny"]
    t1 = json.loads((out / "correctness-table-mnist-train1.json").read_text())["rows"]["tiny"]
    assert t0["recipe"] == tiny and t1["recipe"] == {**tiny, "seed": 1}
    assert (work / "mnist" / "tiny" / "classifier.safetensors").is_file()
    assert (work / "mnist" / "tiny-train1" / "classifier.safetensors").is_file()
    assert "seed=1" in (out / "correctness-table-mnist-train1.md").read_text()
    assert t0["test_accuracy"] != t1["test_accuracy"]  # another initialisation and batch order

    spread = json.loads((out / "correctness-table-mnist-spread.json").read_text())
    assert spread["train_seeds"] == [0, 1]
    acc = spread["rows"]["tiny"]["test_accuracy"]
    a, b = t0["test_accuracy"], t1["test_accuracy"]
    assert acc["values"] == [a, b] and acc["range"] == pytest.approx(abs(a - b))
    assert acc["sd"] == pytest.approx(abs(a - b) / 2**0.5)
    mean = spread["rows"]["tiny"]["mnist-gan-aug mean"]
    assert mean["values"] == [t0["mnist-gan-aug"]["mean"], t1["mnist-gan-aug"]["mean"]]
    md = (out / "correctness-table-mnist-spread.md").read_text()
    assert f"| tiny | {100 * a:.2f} / {100 * b:.2f} (range {100 * abs(a - b):.2f}" in md


def test_the_builtin_row_has_no_training_seed(tmp_path):
    with pytest.raises(GenrobustError, match="no training seed 2"):
        ct.run_table(ct.TablePlan("mnist", 40, ["built-in"], tmp_path, train_seed=2))
    bad = CliRunner().invoke(main, ["reproduce", "correctness-table", "--train-seeds", "0,x", "--work", str(tmp_path)])
    assert bad.exit_code != 0 and "--train-seeds must be integers" in bad.output
    args = ["reproduce", "correctness-table", "--rows", "small,built-in", "--train-seeds", "0,1"]
    args += ["--work", str(tmp_path)]
    refused = CliRunner().invoke(main, args)  # refused before seed 0's rows are trained
    assert refused.exit_code != 0 and "no training seed 1" in refused.output
    assert not (tmp_path / "mnist").exists()
    zero = CliRunner().invoke(main, ["reproduce", "correctness-table", "-n", "0", "--work", str(tmp_path)])
    assert zero.exit_code != 0 and "-n must be positive" in zero.output


def test_a_row_trained_by_an_earlier_recipe_is_retrained(tmp_path, shared_datasets, monkeypatch):
    monkeypatch.setitem(ct.ROWS, "tiny", {"arch": "small", "epochs": 0.01})
    monkeypatch.setattr(ct, "ALL_ROWS", [*ct.ALL_ROWS, "tiny"])
    plan = ct.TablePlan("mnist", 10, ["tiny"], tmp_path)
    ct.run_table(plan, data_dir=shared_datasets, show_progress=False)
    path = plan.row_folder("tiny") / "classifier.safetensors"
    assert gr.load_classifier(path).genrobust_meta["recipe"]["epochs"] == 0.01
    monkeypatch.setitem(ct.ROWS, "tiny", {"arch": "small", "epochs": 0.02})
    table = ct.run_table(plan, data_dir=shared_datasets, show_progress=False)
    assert gr.load_classifier(path).genrobust_meta["recipe"]["epochs"] == 0.02
    assert table["tiny"]["recipe"] == {"arch": "small", "epochs": 0.02} and list(table) == ["tiny"]
    for cell in (table["tiny"][g] for g in ct.GENERATORS["mnist"]):
        assert all(k["n"] == 10 and k["correct"] == round(10 * k["estimate"]) for k in cell["classes"])


def test_fashion_madry_row_uses_its_own_radius():
    assert ct.recipe_for("mnist", "madry").pgd_eps == 0.3
    fashion = ct.recipe_for("fashion-mnist", "madry", train_seed=3)
    assert (fashion.pgd_eps, fashion.pgd_step_size, fashion.seed) == (0.1, 0.05, 3)
    assert ct.row_recipe("fashion-mnist", "madry")["pgd_eps"] == 0.1
    assert ct.row_recipe("fashion-mnist", "small") == ct.ROWS["small"]


def test_processes_sharing_a_cache_keep_each_others_rows_and_cells(tmp_path, shared_datasets, monkeypatch):
    """Two processes with their own --rows on one --work folder: each cell is merged into the cache as it is on
    disk (under a lock), so neither overwrites what the other finished; a row's cells are merged only when they
    come from the same recipe, classifier weights and family weights."""
    from types import SimpleNamespace

    plan = ct.TablePlan("mnist", 40, ["built-in"], tmp_path / "work")
    share = SimpleNamespace(cls=0, n=40, correct=40, estimate=1.0, ci_low=0.9, ci_high=1.0)

    def meanwhile(clf, family, **kw):  # another process finishes a row of its own while this cell runs
        res = SimpleNamespace(mean=1.0, worst=share, classes=[share])  # the cell's figures do not matter here
        Path(kw["journal"]).touch()  # as a real cell leaves it, for run_table to remove
        table = json.loads(plan.cache.read_text()) if plan.cache.is_file() else {}
        table.setdefault("small", {"recipe": ct.row_recipe("mnist", "small")})["marker"] = len(table)
        plan.cache.write_text(json.dumps(table))
        return res

    monkeypatch.setattr(ct, "global_correctness", meanwhile)
    ct.run_table(plan, data_dir=shared_datasets, show_progress=False)
    cached = json.loads(plan.cache.read_text())
    assert "marker" in cached["small"] and all(g in cached["built-in"] for g in ct.TABLE_GENERATORS["mnist"])

    sha = {g: ct.ZOO[g].sha256 for g in ct.TABLE_GENERATORS["mnist"]}
    mine = {"recipe": {"arch": "small"}, "classifier_sha256": "a", "mnist-gan": 1, "generators_sha256": {"mnist-gan":
            sha["mnist-gan"]}}  # fmt: skip
    theirs = {**mine, "mnist-gan": 0, "mnist-cgan": 2, "mnist-gan-aug": 3,
              "generators_sha256": {"mnist-gan": sha["mnist-gan"], "mnist-cgan": sha["mnist-cgan"],
                                    "mnist-gan-aug": "stale"}}  # fmt: skip
    merged = ct._merge_row(theirs, mine, sha)
    assert merged["mnist-gan"] == 1 and merged["mnist-cgan"] == 2 and "mnist-gan-aug" not in merged
    assert merged["generators_sha256"] == {g: sha[g] for g in ("mnist-gan", "mnist-cgan")}
    assert ct._merge_row({**theirs, "classifier_sha256": "b"}, mine, sha) == mine  # other weights: not mixed
    assert ct._merge_row(None, mine, sha) == mine
