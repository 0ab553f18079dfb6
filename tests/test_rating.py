"""The rating study: folders, the WSGI app's validation and storage, the summary and Fleiss' κ, and a load test of
20 concurrent raters on loopback."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from wsgiref.util import setup_testing_defaults

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.rating import RatingApp, create_study, fleiss_kappa, make_rating_server, open_study, summarise
from genrobust.rating.study import StudyError, rater_order


@pytest.fixture(scope="module")
def gens():
    return gr.load_generators("mnist-gan")


@pytest.fixture
def study(tmp_path, gens):
    return create_study(tmp_path / "study", gens, n=23, seed=0, source="mnist-gan")


def call(app, method: str, path: str, body=None, raw: bytes | None = None):
    environ: dict = {}
    setup_testing_defaults(environ)
    path, _, query = path.partition("?")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query, CONTENT_LENGTH=str(len(data)),
                   **{"wsgi.input": io.BytesIO(data)})  # fmt: skip
    out = {}

    def start_response(status, headers):
        out["status"], out["headers"] = int(status.split()[0]), dict(headers)

    payload = b"".join(app(environ, start_response))
    is_json = out["headers"]["Content-Type"] == "application/json"
    return out["status"], (json.loads(payload) if is_json else payload)


def test_a_study_is_stratified_seeded_and_self_contained(tmp_path, gens, study):
    assert study.n == 23 and sorted(set(study.classes)) == list(range(10))
    counts = np.bincount(study.classes, minlength=10)
    assert counts.max() - counts.min() <= 1
    again = create_study(tmp_path / "again", gens, n=23, seed=0)
    assert torch.equal(again.latents(), study.latents()) and torch.equal(again.images(), study.images())
    with torch.no_grad():  # the stored latents regenerate the stored images (up to the PNG's 8 bits)
        c, z = study.classes[5], study.latents()[5:6]
        assert float((gens[c](z) - study.images()[5:6]).abs().max()) <= 0.5 / 255 + 1e-6
    with pytest.raises(StudyError, match="already holds a study"):
        create_study(tmp_path / "study", gens, n=5)
    moved = tmp_path / "moved"
    (tmp_path / "study").rename(moved)  # a copied folder is the same study
    assert open_study(moved).classes == study.classes
    (moved / "images" / "3.png").unlink()
    with pytest.raises(StudyError, match="missing"):
        open_study(moved)
    with pytest.raises(StudyError, match="no study here"):
        open_study(tmp_path / "nothing")
    assert rater_order(again, "ana") == rater_order(again, "ana") != rater_order(again, "bo")
    assert sorted(rater_order(again, "ana")) == list(range(23))


def test_the_api_rates_updates_and_goes_back(study):
    app = RatingApp(study)
    status, data = call(app, "POST", "/api/raters", {"name": "  Ana  "})
    assert status == 200 and data == {"name": "Ana", "done": 0, "total": 23}
    status, nxt = call(app, "GET", "/api/next?rater=Ana")
    assert nxt["position"] == 0 and nxt["image"] == rater_order(study, "Ana")[0] and nxt["previous"] is None
    status, png = call(app, "GET", nxt["url"])
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    first = nxt["image"]
    assert (
        call(app, "POST", "/api/rate", {"rater": "Ana", "image": first, "category": "hard", "label": 3})[1]["done"] == 1
    )
    status, nxt = call(app, "GET", "/api/next?rater=Ana")
    assert nxt["position"] == 1 and nxt["done"] == 1
    # back to the first image, re-rate it: an update, not a second rating
    status, back = call(app, "GET", "/api/next?rater=Ana&position=0")
    assert back["image"] == first and back["previous"] == {"category": "hard", "label": 3}
    call(app, "POST", "/api/rate", {"rater": "Ana", "image": first, "category": "perfect", "label": 7})
    con = study.connect()
    assert con.execute("SELECT COUNT(*), category, label FROM ratings").fetchone() == (1, "perfect", 7)
    for image in rater_order(study, "Ana"):
        call(app, "POST", "/api/rate", {"rater": "Ana", "image": image, "category": "perfect",
                                        "label": study.classes[image]})  # fmt: skip
    assert call(app, "GET", "/api/next?rater=Ana")[1] == {"done": 23, "total": 23, "finished": True}
    # a restarted server (a new app on the same folder) has everything
    status, res = call(RatingApp(open_study(study.folder)), "GET", "/api/results")
    assert res["raters"] == {"Ana": 23} and res["perfect"] == 23 and res["identified"] == 23
    status, page = call(app, "GET", "/")
    assert status == 200 and b'id="image"' in page


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/api/raters", {"name": ""}, 400, "name"),
        ("POST", "/api/raters", {"name": "x" * 81}, 400, "name"),
        ("POST", "/api/raters", {"name": "a\nb"}, 400, "name"),
        ("POST", "/api/raters", ["not", "an", "object"], 400, "JSON object"),
        ("POST", "/api/rate", {"rater": "nobody", "image": 0, "category": "hard", "label": 1}, 404, "unknown rater"),
        ("POST", "/api/rate", {"rater": "Bo", "image": 23, "category": "hard", "label": 1}, 400, "image"),
        ("POST", "/api/rate", {"rater": "Bo", "image": "0", "category": "hard", "label": 1}, 400, "image"),
        ("POST", "/api/rate", {"rater": "Bo", "image": True, "category": "hard", "label": 1}, 400, "image"),
        ("POST", "/api/rate", {"rater": "Bo", "image": 0, "category": "great", "label": 1}, 400, "category"),
        ("POST", "/api/rate", {"rater": "Bo", "image": 0, "category": "hard", "label": 10}, 400, "label"),
        ("GET", "/api/next?rater=Bo&position=99", None, 400, "position"),
        ("GET", "/api/next?rater=Bo&position=x", None, 400, "position"),
        ("GET", "/api/next", None, 400, "name"),
        ("GET", "/images/23.png", None, 404, "no image"),
        ("GET", "/images/../study.json", None, 404, "no page"),
        ("GET", "/images/%2e%2e/ratings.sqlite", None, 404, "no page"),
        ("GET", "/api/rate", None, 405, "POST"),
        ("POST", "/api/results", {}, 405, "GET"),
        ("GET", "/nothing", None, 404, "no page"),
    ],
)
def test_bad_requests_get_4xx_and_a_message(study, method, path, body, status, message):
    app = RatingApp(study)
    call(app, "POST", "/api/raters", {"name": "Bo"})
    got, data = call(app, method, path, body)
    assert got == status and message in data["error"]


def test_malformed_and_oversize_bodies_are_refused(study):
    app = RatingApp(study)
    assert call(app, "POST", "/api/raters", raw=b"{not json")[0] == 400
    assert call(app, "POST", "/api/raters", raw=b"\xff\xfe")[0] == 400
    status, data = call(app, "POST", "/api/raters", raw=b"{" + b" " * 5000 + b"}")
    assert status == 413 and "at most" in data["error"]


def test_names_are_escaped_in_the_results_page(study):
    app = RatingApp(study)
    call(app, "POST", "/api/raters", {"name": "<script>alert(1)</script>"})
    status, page = call(app, "GET", "/results")
    assert status == 200 and b"<script>alert(1)</script>" not in page and b"&lt;script&gt;" in page


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, κ = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip
    assert fleiss_kappa(np.array(table)) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss_kappa(np.array([[2, 0], [0, 2]])) == pytest.approx(1.0)
    assert fleiss_kappa(np.array([[1, 0], [2, 0]])) is None  # unequal raters per subject


def test_the_summary_counts_like_the_paper(study):
    app = RatingApp(study)
    cls = study.classes
    plan = {  # image → per rater (category, label): one image of each kind
        0: [("perfect", cls[0])] * 3,
        1: [("perfect", cls[1]), ("perturbed", cls[1]), ("perfect", cls[1])],
        2: [("perfect", cls[2]), ("hard", cls[2]), ("perturbed", cls[2])],
        3: [("perfect", cls[3]), ("perfect", (cls[3] + 1) % 10), ("perfect", cls[3])],
        4: [("rubbish", cls[4]), ("perfect", cls[4]), ("perfect", cls[4])],
    }
    for r, name in enumerate(["a", "b", "c"]):
        call(app, "POST", "/api/raters", {"name": name})
        for image in range(study.n):
            category, label = plan.get(image, [("perfect", cls[image])] * 3)[r]
            call(app, "POST", "/api/rate", {"rater": name, "image": image, "category": category, "label": label})
    predictions = [c if i % 2 else (c + 1) % 10 for i, c in enumerate(cls)]
    s = summarise(study, study.connect(), predictions)
    assert (s.n_rated, s.complete_raters) == (23, 3)
    assert (s.perfect, s.clear, s.hard, s.rubbish_or_wrong) == (19, 1, 1, 2)
    assert s.identified == 22  # image 4 is identified by all though one rater called it rubbish
    assert s.threshold_clear["estimate"] == pytest.approx(20 / 23)
    assert s.threshold_clear["low"] < 20 / 23 < s.threshold_clear["high"]
    assert s.classifier["correct"] == 11 and 0 < s.kappa_label <= 1
    assert "near-perfect for all" in s.table()


def test_fifty_raters_at_once_lose_nothing(tmp_path, gens):
    study = create_study(tmp_path / "load", gens, n=100, seed=1)
    server = make_rating_server(study, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    errors: list[str] = []

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def rater(k: int) -> None:
        try:
            name = f"rater {k}"
            post("/api/raters", {"name": name})
            for image in rater_order(study, name):
                post("/api/rate", {"rater": name, "image": image, "category": "perfect", "label": k % 10})
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(repr(exc))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=rater, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    seconds = time.perf_counter() - t0
    server.shutdown()
    server.server_close()
    assert not errors, errors[:3]
    assert seconds < 240
    con = study.connect()  # 50 raters × 100 ratings, each stored exactly once
    assert con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 5000
    assert con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT rater_id, image_id FROM ratings)").fetchone()[0] == 5000
    assert con.execute("SELECT COUNT(*) FROM raters").fetchone()[0] == 50


def test_rate_results_on_the_command_line(study, tmp_path):
    app = RatingApp(study)
    call(app, "POST", "/api/raters", {"name": "Ana"})
    for image in range(study.n):
        call(app, "POST", "/api/rate", {"rater": "Ana", "image": image, "category": "perfect",
                                        "label": study.classes[image]})  # fmt: skip
    out = tmp_path / "summary.json"
    res = CliRunner().invoke(main, ["rate", "results", str(study.folder), "--classifier", "mnist-small",
                                    "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "identified correctly by all" in res.output and "classifier correct" in res.output
    data = json.loads(out.read_text())
    assert data["identified"] == 23 and data["classifier"]["n"] == 23
    res = CliRunner().invoke(main, ["rate", "results", str(tmp_path)])
    assert res.exit_code == 1 and "no study here" in res.output


def test_rate_serve_draws_a_study_serves_it_and_reopens_it(tmp_path):
    import signal
    import subprocess
    import sys

    folder = tmp_path / "served"
    cmd = [sys.executable, "-c", "from genrobust.cli import main; main()", "rate", "serve", "-n", "12", "--study",
           str(folder), "--port", "0"]  # fmt: skip
    for attempt in range(2):  # the second run reopens the folder
        # a pytest started in the background by a non-interactive shell ignores SIGINT, and so would the server
        # (Python keeps an ignored SIGINT ignored): give it the default back, so Ctrl-C stops it as it would a user's
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        try:
            lines = [proc.stdout.readline(), proc.stdout.readline()]
            url = lines[1].split()[2]
            with urllib.request.urlopen(url + "api/study", timeout=30) as resp:
                assert json.loads(resp.read())["n"] == 12
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        assert ("reopened" if attempt else "drew 12 images") in lines[0]
    assert open_study(folder).n == 12
    proc = subprocess.run([*cmd[:-2], "--port", "0", "--host", "256.1.1.1"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert "warning: serving on 256.1.1.1" in proc.stderr and "Error: cannot serve on 256.1.1.1:0" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.returncode == 1
