"""One self-contained HTML page from saved runs: correctness, attack and robustness result folders and rating
studies, with their tables and pictures (embedded, so the page can be mailed or archived as one file)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from ..errors import GenrobustError

_ENV = Environment(loader=PackageLoader("genrobust.report", "templates"), autoescape=select_autoescape(["html"]))
_PICTURES = {  # file → caption, in the order a reader wants them
    "confidence_profile.png": "Share classified correctly above each softmax confidence",
    "outliers.png": "The most confidently misclassified generated images",
    "robustness_curve.png": "P(robust) bounded from both sides, per class, against ε",
    "pairs.png": "Realistic adversarial examples: G(z) and G(z′), ε-close in latent space",
    "path.gif": "The straight latent path from z to z′",
    "levels.png": "Adaptive multilevel splitting: each class's ladder of score levels towards failure",
    "failures.png": "Failures the last level held, one row per class",
}
_MIME = {".png": "image/png", ".gif": "image/gif"}


def _embed(path: Path) -> str:
    return f"data:{_MIME[path.suffix]};base64," + base64.b64encode(path.read_bytes()).decode()


def _kind(data: dict[str, Any]) -> str:
    if data.get("format") == "genrobust-robustness/1":
        return "robustness"
    if data.get("method") == "amls":
        return "rare failures"
    if "method" in data and "metrics" in data:
        return "attack"
    if "verdict" in data and "classes" in data:
        return "correctness"
    return ""


def read_run(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder as a report section: its kind, data and pictures."""
    folder = Path(folder)
    if (folder / "study.json").is_file():
        from ..rating import open_study, summarise

        study = open_study(folder)
        con = study.connect()
        try:
            summary = summarise(study, con).to_dict()
        finally:
            con.close()
        return {"kind": "rating", "title": str(folder), "data": summary, "meta": study.meta, "pictures": []}
    result = folder / "result.json"
    if not result.is_file():
        raise GenrobustError(f"{folder}: neither a result folder (result.json) nor a rating study (study.json)")
    try:
        data = json.loads(result.read_text())
    except ValueError:
        raise GenrobustError(f"{result}: not valid JSON") from None
    kind = _kind(data)
    if not kind:
        raise GenrobustError(f"{result}: not a correctness, rare-failure, attack or robustness result")
    pictures = [{"src": _embed(folder / name), "caption": caption, "name": name}
                for name, caption in _PICTURES.items() if (folder / name).is_file()]  # fmt: skip
    return {"kind": kind, "title": str(folder), "data": data, "pictures": pictures}


def report_html(folders: Sequence[str | os.PathLike[str]], title: str = "genrobust report") -> str:
    if not folders:
        raise GenrobustError("give at least one run folder")
    return _ENV.get_template("report.html").render(title=title, runs=[read_run(f) for f in folders])


def save_report(folders: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], **kwargs: Any) -> str:
    """Write :func:`report_html` to ``out`` and return its path."""
    Path(out).write_text(report_html(folders, **kwargs))
    return str(out)
