"""One self-contained HTML page from saved runs: correctness, attack and robustness result folders and rating
studies, with their tables and pictures (embedded, so the page can be mailed or archived as one file)."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from ..errors import GenrobustError
from ..results import load_result

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
_WITH_PICTURES = ("correctness", "robustness", "attack", "rare-failures")  # kinds written with their pictures


def _embed(path: Path) -> str:
    return f"data:{_MIME[path.suffix]};base64," + base64.b64encode(path.read_bytes()).decode()


def _markdown_html(text: str) -> Markup:
    """A table's markdown as HTML: its pipe tables as tables, other lines as paragraphs (all text escaped)."""
    out, table = [], []

    def flush() -> None:
        if table:
            head, *body = [[escape(c.strip()) for c in line.strip().strip("|").split("|")] for line in table]
            body = [r for r in body if not all(set(c) <= set("-: ") for c in r)]
            out.append(
                "<table><tr>"
                + "".join(f"<th>{c}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
                + "</table>"
            )
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip():
            out.append(f"<p>{escape(line.strip())}</p>")
    flush()
    return Markup("\n".join(out))


def read_run(source: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder (its ``result.json``), a result file (a table's JSON), or a rating study as a report section:
    its kind, the result object (:func:`~genrobust.load_result`, which dispatches on the file's ``kind``) and
    its pictures."""
    folder = Path(source)
    if (folder / "study.json").is_file():
        from ..rating import open_study, summarise

        study = open_study(folder)
        con = study.connect()
        try:
            summary = summarise(study, con).to_dict()
        finally:
            con.close()
        return {"kind": "rating", "title": str(folder), "data": summary, "meta": study.meta, "pictures": []}
    if not folder.is_file() and not (folder / "result.json").is_file():
        raise GenrobustError(f"{folder}: neither a result folder (result.json) nor a rating study (study.json)")
    result = load_result(folder)
    if folder.is_file():
        folder = folder.parent
    pictures = []
    if result.kind in _WITH_PICTURES:  # a table's JSON sits among other runs' files: none of its folder's are its own
        pictures = [{"src": _embed(folder / name), "caption": caption, "name": name}
                    for name, caption in _PICTURES.items() if (folder / name).is_file()]  # fmt: skip
    table = _markdown_html(result.markdown()) if hasattr(result, "markdown") else None
    return {"kind": result.kind, "title": str(source), "result": result, "table": table, "pictures": pictures}


def report_html(folders: Sequence[str | os.PathLike[str]], title: str = "genrobust report") -> str:
    if not folders:
        raise GenrobustError("give at least one run folder")
    return _ENV.get_template("report.html").render(title=title, runs=[read_run(f) for f in folders])


def save_report(folders: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], **kwargs: Any) -> str:
    """Write :func:`report_html` to ``out`` and return its path."""
    Path(out).write_text(report_html(folders, **kwargs))
    return str(out)
