"""The rating page in a real browser: Debian's chromium driven by Playwright (never a downloaded browser). A person
enters a name, rates with the keyboard and the mouse, goes back to fix a rating, finishes, and reads the results.

Set GENROBUST_SCREENSHOTS=DIR to keep the screenshots (the README's come from here)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

import genrobust as gr
from genrobust.rating import create_study, make_rating_server, open_study, summarise

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")


@pytest.fixture
def served(tmp_path):
    study = create_study(tmp_path / "study", gr.load_generators("mnist-gan"), n=6, seed=0, source="mnist-gan")
    server = make_rating_server(study, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield study, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_person_rates_every_image_and_reads_the_results(served, tmp_path):
    study, base = served
    shots = Path(os.environ.get("GENROBUST_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 900, "height": 760})
        page.goto(base + "/")
        page.fill("#name", "Ana")
        page.click("#start")
        page.wait_for_selector("#rating:not(.hidden)")
        seen = []
        for k in range(study.n):
            page.wait_for_function(f"document.getElementById('progress').textContent.startsWith('{k} /')")
            image = int(page.get_attribute("#image", "data-image"))
            seen.append(image)
            label = study.classes[image]
            if k == 1:
                page.screenshot(path=str(shots / "rating-page.png"))
            if k % 2:  # the keyboard: the digit, then p for perturbed but clearly identifiable
                page.keyboard.press(str(label))
                page.keyboard.press("p")
            else:  # the mouse: a class button, then a category button
                page.click(f".cls[data-label='{label}']")
                page.click(".cat[data-category='perfect']" if k else ".cat[data-category='hard']")
        page.wait_for_selector("#finished:not(.hidden)")
        page.goto(base + "/")  # coming back later with the same name: nothing left to rate
        page.fill("#name", "Ana")
        page.click("#start")
        page.wait_for_selector("#finished:not(.hidden)")
        page.goto(base + "/results")
        identified = page.inner_text("#summary tr:nth-child(1) td")
        page.screenshot(path=str(shots / "rating-results.png"), full_page=True)
        browser.close()
    assert sorted(seen) == list(range(study.n))
    assert identified.strip() == "6"
    s = summarise(open_study(study.folder), study.connect())
    assert s.raters == {"Ana": 6} and s.identified == 6
    assert (s.perfect, s.clear, s.hard) == (2, 3, 1)  # keyboard → perturbed (3), mouse → perfect (2), hard (1)
    assert (shots / "rating-page.png").stat().st_size > 5000


def test_going_back_rerates_without_duplicating(served):
    study, base = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(base + "/")
        page.fill("#name", "Bo")
        page.keyboard.press("Enter")
        page.wait_for_selector("#rating:not(.hidden)")
        first = int(page.get_attribute("#image", "data-image"))
        page.keyboard.press("3")
        page.keyboard.press("r")
        page.wait_for_function("document.getElementById('progress').textContent.startsWith('1 /')")
        page.keyboard.press("b")  # back to the first image, shown with its rating
        page.wait_for_function(f"document.getElementById('image').dataset.image === '{first}'")
        assert "chosen" in page.get_attribute(".cat[data-category='rubbish']", "class")
        page.keyboard.press(str(study.classes[first]))
        page.keyboard.press("p")
        page.wait_for_function(f"document.getElementById('image').dataset.image !== '{first}'")
        browser.close()
    con = study.connect()
    assert con.execute("SELECT COUNT(*), category FROM ratings").fetchone() == (1, "perturbed")


def test_the_report_renders_with_its_pictures(served, tmp_path):
    from click.testing import CliRunner

    from genrobust.cli import main
    from genrobust.report.html import save_report

    study, _ = served
    res = CliRunner().invoke(main, ["correctness", "-n", "60", "--quiet", "--out", str(tmp_path / "cor")])
    assert res.exit_code == 0, res.output
    out = save_report([tmp_path / "cor", study.folder], tmp_path / "report.html")
    shots = Path(os.environ.get("GENROBUST_SCREENSHOTS", tmp_path))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 1400})
        page.goto(Path(out).resolve().as_uri())
        assert page.locator("section.run").count() == 2
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) >= 2 and min(widths) > 0  # every embedded picture decodes
        page.screenshot(path=str(shots / "report.png"))
        browser.close()
    assert (shots / "report.png").stat().st_size > 5000
