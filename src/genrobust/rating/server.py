"""The rating web app: a small WSGI application over a study folder, served by waitress.

Routes (JSON in and out under ``/api``; every input validated, errors are 4xx with a message):

``GET /`` the rating page · ``GET /results`` the results page · ``GET /images/{id}.png`` an image ·
``GET /api/study`` · ``POST /api/raters {"name"}`` · ``GET /api/next?rater=NAME&position=K`` ·
``POST /api/rate {"rater", "image", "category", "label"}`` · ``GET /api/results``.

Each rating is one SQLite transaction (an upsert: re-rating an image replaces the rating), in WAL mode, so raters
working at once and a restart of the server lose nothing. No part of a request becomes a path: images are looked
up by integer id.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape

from .results import summarise
from .study import CATEGORIES, SHORTCUTS, Study, rater_order

MAX_BODY = 4096
MAX_NAME = 80
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,80}$")
_IMAGE = re.compile(r"^/images/(\d{1,9})\.png$")
_ENV = Environment(loader=PackageLoader("genrobust.rating", "templates"), autoescape=select_autoescape(["html"]))


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RatingApp:
    """The WSGI application; one SQLite connection per thread."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self._local = threading.local()

    # -------------------------------------------------------------------------------------- plumbing
    def _db(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self.study.connect()
        return con

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            status, ctype, body = self._route(method, path, environ)
        except HttpError as exc:
            status, ctype, body = exc.status, "application/json", _json({"error": exc.message})
        except sqlite3.Error as exc:  # pragma: no cover - a disk or lock failure, reported, never half-written
            status, ctype, body = HTTPStatus.SERVICE_UNAVAILABLE, "application/json", _json({"error": str(exc)})
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                   ("X-Content-Type-Options", "nosniff")]  # fmt: skip
        start_response(f"{status.value} {status.phrase}", headers)
        return [body]

    def _route(self, method: str, path: str, environ: dict) -> tuple[HTTPStatus, str, bytes]:
        pages = {"/": self._page_rate, "/results": self._page_results}
        api_get = {"/api/study": self._study, "/api/next": self._next, "/api/results": self._results}
        api_post = {"/api/raters": self._rater, "/api/rate": self._rate}
        if path in pages or path in api_get or _IMAGE.match(path):
            if method != "GET":
                raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes GET")
            if path in pages:
                return HTTPStatus.OK, "text/html; charset=utf-8", pages[path]().encode()
            if path in api_get:
                return HTTPStatus.OK, "application/json", _json(api_get[path](_query(environ)))
            return HTTPStatus.OK, "image/png", self._image(int(_IMAGE.match(path).group(1)))  # type: ignore[union-attr]
        if path in api_post:
            if method != "POST":
                raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes POST")
            return HTTPStatus.OK, "application/json", _json(api_post[path](_body(environ)))
        raise HttpError(HTTPStatus.NOT_FOUND, f"no page {path[:100]!r}")

    # ------------------------------------------------------------------------------------------ pages
    def _page_rate(self) -> str:
        return _ENV.get_template("rate.html").render(study=self.study.meta, categories=CATEGORIES, keys=SHORTCUTS)

    def _page_results(self) -> str:
        return _ENV.get_template("results.html").render(study=self.study.meta, summary=self._results({}))

    def _image(self, image_id: int) -> bytes:
        if image_id >= self.study.n:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no image {image_id}")
        return self.study.image_path(image_id).read_bytes()

    # -------------------------------------------------------------------------------------------- API
    def _study(self, query: dict) -> dict:
        return {"n": self.study.n, "class_names": self.study.class_names, "categories": CATEGORIES}

    def _rater_id(self, name: Any, create: bool = False) -> int:
        if not isinstance(name, str) or not _NAME.match(name.strip() or "\0"):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"a rater's name is 1 to {MAX_NAME} printable characters")
        name = name.strip()
        con = self._db()
        if create:
            con.execute("INSERT OR IGNORE INTO raters(name) VALUES (?)", (name,))
        row = con.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise HttpError(HTTPStatus.NOT_FOUND, "unknown rater: enter your name first")
        return int(row[0])

    def _progress(self, rater_id: int) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM ratings WHERE rater_id = ?", (rater_id,)).fetchone()[0])

    def _rater(self, body: dict) -> dict:
        rid = self._rater_id(body.get("name"), create=True)
        return {"name": body["name"].strip(), "done": self._progress(rid), "total": self.study.n}

    def _next(self, query: dict) -> dict:
        """The rater's first unrated image in their order, or the one at ``position`` (to go back and re-rate)."""
        name = query.get("rater")
        rid = self._rater_id(name)
        order = rater_order(self.study, name.strip())  # type: ignore[union-attr]
        rated = {
            int(i): (c, int(lab))
            for i, c, lab in self._db().execute(
                "SELECT image_id, category, label FROM ratings WHERE rater_id = ?", (rid,)
            )
        }  # fmt: skip
        if "position" in query:
            try:
                pos = int(query["position"])
            except ValueError:
                raise HttpError(HTTPStatus.BAD_REQUEST, "position must be an integer") from None
            if not 0 <= pos < self.study.n:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"position must be in 0..{self.study.n - 1}")
        else:
            pos = next((k for k, i in enumerate(order) if i not in rated), None)  # type: ignore[assignment]
            if pos is None:
                return {"done": len(rated), "total": self.study.n, "finished": True}
        image = order[pos]
        previous = rated.get(image)
        return {"done": len(rated), "total": self.study.n, "finished": False, "position": pos, "image": image,
                "url": f"/images/{image}.png", "previous": {"category": previous[0], "label": previous[1]}
                if previous else None}  # fmt: skip

    def _rate(self, body: dict) -> dict:
        rid = self._rater_id(body.get("rater"))
        image, category, label = body.get("image"), body.get("category"), body.get("label")
        if not isinstance(image, int) or isinstance(image, bool) or not 0 <= image < self.study.n:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"image must be an id in 0..{self.study.n - 1}")
        if category not in CATEGORIES:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"category must be one of {', '.join(CATEGORIES)}")
        k = len(self.study.class_names)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < k:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"label must be a class in 0..{k - 1}")
        con = self._db()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "INSERT INTO ratings(rater_id, image_id, category, label) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(rater_id, image_id) DO UPDATE SET category = excluded.category, "
                "label = excluded.label, updated = datetime('now')",
                (rid, image, category, label),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return {"done": self._progress(rid), "total": self.study.n}

    def _results(self, query: dict) -> dict:
        return summarise(self.study, self._db()).to_dict()


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def _query(environ: dict) -> dict[str, str]:
    q = parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=10)
    return {k: v[0] for k, v in q.items()}


def _body(environ: dict) -> dict:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
    if length > MAX_BODY:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request bodies are at most {MAX_BODY} bytes")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return data


class RatingServer:
    """The rating app behind waitress, a maintained production WSGI server: a pool of worker threads and a large
    listen backlog, so a lab of raters posting at once is queued, not refused (the standard library's server
    dropped connections under load: its backlog was 5). ``port=0`` picks a free port (``server_port``);
    ``serve_forever`` blocks until ``shutdown`` is called from another thread (or Ctrl-C)."""

    def __init__(self, study: Study, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
        from waitress.server import create_server

        self.app = RatingApp(study)
        self._server = create_server(self.app, host=host, port=port, threads=threads, backlog=1024,
                                     connection_limit=1000, ident="genrobust",
                                     clear_untrusted_proxy_headers=True)  # fmt: skip
        self.server_port = int(self._server.effective_port)
        self.server_address = (host, self.server_port)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop accepting, let the requests in flight finish (up to 5 s), close every connection."""
        srv = self._server
        srv.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
        for channel in list(srv._map.values()):  # the listening socket, the trigger and open connections
            channel.close()
        self._stopped.wait(5)

    def server_close(self) -> None:
        if not self._stopped.is_set():
            self.shutdown()


def make_rating_server(study: Study, host: str = "127.0.0.1", port: int = 8000) -> RatingServer:
    """A production server for the study (``port=0`` picks a free port: ``server.server_port``)."""
    return RatingServer(study, host, port)
