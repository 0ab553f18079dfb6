"""genrobust report: saved runs and rating studies in one self-contained HTML page."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.rating import RatingApp, create_study
from genrobust.report.html import report_html


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    for args in (["correctness", "-n", "60", "--out", str(d / "cor")],
                 ["attack", "--source", "8", "--eps", "1.0", "--starts", "10", "--out", str(d / "att")],
                 ["robustness", "-n", "2", "--classes", "8", "--eps", "0.01,0.05", "--max-boxes", "2",
                  "--out", str(d / "rob")],
                 ["correctness", "--method", "amls", "--particles", "20", "--mcmc-steps", "2",
                  "--max-levels", "4", "--out", str(d / "rare")]):  # fmt: skip
        res = runner.invoke(main, [*args, "--quiet"])
        assert res.exit_code == 0, res.output
    study = create_study(d / "study", gr.load_generators("mnist-gan"), n=4, seed=0, source="mnist-gan")
    from test_rating import call

    app = RatingApp(study)
    call(app, "POST", "/api/raters", {"name": "<b>Ana</b>"})
    for i in range(4):
        call(app, "POST", "/api/rate", {"rater": "<b>Ana</b>", "image": i, "category": "perfect",
                                        "label": study.classes[i]})  # fmt: skip
    return d


def test_the_report_holds_every_run_with_its_pictures_embedded(runs, tmp_path):
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", *(str(runs / r) for r in ("cor", "att", "rob", "rare", "study")),
                                    "--out", str(out), "--title", "Nightly <check>"])  # fmt: skip
    assert res.exit_code == 0, res.output
    html = out.read_text()
    kinds = re.findall(r'class="run ([\w-]+)"', html)
    assert kinds == ["correctness", "attack", "robustness", "rare-failures", "rating"]
    assert html.count("data:image/png;base64,") >= 4 and "data:image/gif;base64," in html
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)  # self-contained: nothing to fetch
    assert "Nightly &lt;check&gt;" in html and "<b>Ana</b>" not in html
    assert "identified correctly by all</td><td>4" in html


def test_folders_that_are_not_runs_are_refused(tmp_path):
    with pytest.raises(gr.GenrobustError, match="neither a result folder"):
        report_html([tmp_path])
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(gr.GenrobustError, match="not a genrobust result"):
        report_html([tmp_path])
    (tmp_path / "result.json").write_text('{"kind": "horoscope", "format_version": 2}')
    with pytest.raises(gr.GenrobustError, match="unknown result kind 'horoscope'; known: attack, correctness"):
        report_html([tmp_path])
    (tmp_path / "result.json").write_text('{"kind": "correctness", "format_version": 99}')
    with pytest.raises(gr.GenrobustError, match="format 99 is newer than this genrobust reads"):
        report_html([tmp_path])
    (tmp_path / "result.json").write_text('{"kind": "correctness", "format_version": 2, "delta": 0.05}')
    with pytest.raises(gr.GenrobustError, match="a correctness result with a missing or malformed field"):
        gr.load_result(tmp_path)
    (tmp_path / "result.json").write_text("{oops")
    with pytest.raises(gr.GenrobustError, match="not valid JSON"):
        report_html([tmp_path])


@pytest.mark.parametrize("name, cls", [("cor", gr.CorrectnessResult), ("att", gr.AttackResult),
                                       ("rob", gr.RobustnessResult), ("rare", gr.RareFailureResult)])  # fmt: skip
def test_every_result_reads_back_into_the_same_object(runs, tmp_path, name, cls):
    import json

    import torch

    path = runs / name / "result.json"
    data = json.loads(path.read_text())
    assert data["kind"] == cls.kind and data["format_version"] == 2 and data["genrobust"] == gr.__version__
    assert data["parameters"] and len(data["models"]["classifier"]) == 64  # the classifier's content hash
    loaded = gr.load_result(path)
    assert type(loaded) is cls and loaded.to_dict() == data  # reading and writing again changes nothing
    loaded.save_json(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == data
    if name == "cor":
        c = loaded.classes[0]
        assert isinstance(c.share, gr.Proportion) and (c.correct, c.n) == (c.share.k, c.share.n) == (
            data["classes"][0]["share"]["k"],
            60,
        )
        assert loaded.verdict == data["verdict"] and f"mean {data['mean']:.4f}" in loaded.table()
    if name == "rob":
        r = loaded.classes[0].per_eps[1]
        assert isinstance(r.certified_share, gr.Proportion) and r.lower == r.certified_share.ci[0]
        assert r.certified + r.falsified + r.unknown == r.n == 2
        assert loaded.verdict(0.05) == data["verdicts"]["0.05"]
        assert int((loaded.local[8].status[:, 1] == 1).sum()) == r.certified  # the balls agree with the counts
    if name == "att":
        examples = loaded.examples()
        assert examples and all(ex.distance <= ex.eps and ex.pred_adv != ex.pred for ex in examples)
        assert loaded.success_share(1.0).k == len(loaded.examples(1.0)) == data["metrics"][0]["examples"]
        assert torch.isnan(loaded.z_adv[~loaded.success[:, 0], 0]).all()  # no example: NaN again after null


def test_legacy_result_files_read_back_where_they_held_everything(runs, tmp_path):
    import json

    new = json.loads((runs / "cor" / "result.json").read_text())
    old = {k: v for k, v in new.items() if k not in ("kind", "format_version", "genrobust", "parameters", "models")}
    old["classes"] = [{"cls": c["cls"], "name": c["name"], "n": c["share"]["n"], "correct": c["share"]["k"],
                       "verdict": c["verdict"], "confident": c["confident"]} for c in old["classes"]]  # fmt: skip
    loaded = gr.load_result(old)
    assert isinstance(loaded, gr.CorrectnessResult) and loaded.provenance.genrobust == "unknown"
    assert [c.share for c in loaded.classes] == [
        gr.Proportion(c["share"]["k"], c["share"]["n"]) for c in new["classes"]
    ]
    with pytest.raises(gr.GenrobustError, match="attack result from before genrobust's result format 2"):
        gr.load_result({"method": "pgd", "metrics": [], "examples": []})
