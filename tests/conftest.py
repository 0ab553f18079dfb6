"""Shared fixtures: the real datasets in ../shared/datasets, an isolated cache, and a loopback file server.

Tests never touch the network: GENROBUST_OFFLINE is set for the whole run (a test that exercises the
download code unsets it and points the mirrors at a server on 127.0.0.1).
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("GENROBUST_TEST_DATASETS", REPO.parent / "shared" / "datasets"))

# Set before genrobust is imported anywhere, and inherited by CLI subprocesses.
os.environ["GENROBUST_OFFLINE"] = "1"
os.environ.pop("GENROBUST_DATA_DIR", None)
os.environ["GENROBUST_CACHE_DIR"] = tempfile.mkdtemp(prefix="genrobust-test-cache-")


SHARED_VNNCOMP = REPO.parent / "shared" / "vnncomp"


@pytest.fixture(scope="session")
def mnist_fc() -> Path:
    """A real competition benchmark (../shared/vnncomp/mnist_fc: ONNX networks, VNN-LIB properties, answers)."""
    if not (SHARED_VNNCOMP / "mnist_fc" / "expected.csv").is_file():
        pytest.fail(f"the competition benchmark is not at {SHARED_VNNCOMP}; check out the project beside ../shared")
    return SHARED_VNNCOMP / "mnist_fc"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real MNIST and Fashion-MNIST files (see ../shared/datasets/README.md)."""
    if not (SHARED_DATASETS / "MNIST" / "raw").is_dir():
        pytest.fail(
            f"real datasets not found at {SHARED_DATASETS}; check out the project beside ../shared "
            "or set GENROBUST_TEST_DATASETS"
        )
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def mnist_train(shared_datasets: Path):
    import genrobust as gr

    return gr.load_dataset("mnist", "train", data_dir=shared_datasets, download=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a fresh folder: yields (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once, like a dead mirror."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def counted_pool():
    """Two spawned worker processes (:func:`genrobust.execute.local_pool`) behind an executor that counts what is
    submitted to it: (the :class:`~genrobust.execute.Workers` to pass, the counting executor, whose ``calls`` tell
    a test that work really went to the pool)."""
    import concurrent.futures as cf

    from genrobust.execute import Workers, local_pool

    class Counting(cf.Executor):
        def __init__(self, inner: cf.Executor) -> None:
            self.inner, self.calls = inner, 0

        def submit(self, fn, /, *args, **kwargs):
            self.calls += 1
            return self.inner.submit(fn, *args, **kwargs)

    with local_pool(2) as pool:
        counting = Counting(pool.executor)
        yield Workers(counting, 2, "counted pool"), counting
