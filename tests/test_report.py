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
                  "--out", str(d / "rob")]):  # fmt: skip
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
    res = CliRunner().invoke(main, ["report", *(str(runs / r) for r in ("cor", "att", "rob", "study")),
                                    "--out", str(out), "--title", "Nightly <check>"])  # fmt: skip
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert [m for m in re.findall(r'class="run (\w+)"', html)] == ["correctness", "attack", "robustness", "rating"]
    assert html.count("data:image/png;base64,") >= 4 and "data:image/gif;base64," in html
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)  # self-contained: nothing to fetch
    assert "Nightly &lt;check&gt;" in html and "<b>Ana</b>" not in html
    assert "identified correctly by all</td><td>4" in html


def test_folders_that_are_not_runs_are_refused(tmp_path):
    with pytest.raises(gr.GenrobustError, match="neither a result folder"):
        report_html([tmp_path])
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(gr.GenrobustError, match="not a correctness, rare-failure, attack or robustness result"):
        report_html([tmp_path])
    (tmp_path / "result.json").write_text("{oops")
    with pytest.raises(gr.GenrobustError, match="not valid JSON"):
        report_html([tmp_path])
