"""A tiny HTTP target on 127.0.0.1 for load tests: answers every GET with a short 200 and counts hits.

``GET /status/NNN`` answers with status NNN instead (e.g. ``/status/500`` for tests of errors).

Use it as a context manager::

    with HttpTarget() as target:
        ...  # point JMeter at 127.0.0.1:target.port, then read target.hits

or as the pytest fixture ``http_target`` (registered for every test in ``tests/conftest.py``),
which yields a running ``HttpTarget``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import pytest

BODY = b"ok\n"


def _status_of(path: str) -> int:
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit() and 200 <= int(parts[1]) <= 599:
        return int(parts[1])
    return 200


class _Handler(BaseHTTPRequestHandler):
    """Answers GET and HEAD with 200 ``ok``, over keep-alive connections."""

    protocol_version = "HTTP/1.1"
    # Headers and body as separate small segments meet the client's delayed ACK under Nagle's
    # algorithm: every response then took ~40 ms. Buffer the writes and send without delay.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _CountingServer

    def do_GET(self) -> None:
        self.server.count(self.path)
        self.send_response(_status_of(self.path))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_HEAD(self) -> None:
        self.server.count(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        # One log line per hit would flood the test output at thousands of hits per second.
        pass


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    # A load test opens many connections at once; the default backlog of 5 refuses some.
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._lock = threading.Lock()
        self.hits = 0
        self.paths: dict[str, int] = {}

    def count(self, path: str) -> None:
        with self._lock:
            self.hits += 1
            self.paths[path] = self.paths.get(path, 0) + 1


class HttpTarget:
    """A threaded HTTP server on a free loopback port, counting the requests it answers."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._server: _CountingServer | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while started)."""
        return int(self._require().server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def hits(self) -> int:
        """Requests answered so far (still readable after ``stop``)."""
        return self._require().hits

    @property
    def paths(self) -> dict[str, int]:
        """Requests answered so far, by request path (a copy)."""
        server = self._require()
        with server._lock:
            return dict(server.paths)

    def start(self) -> HttpTarget:
        """Bind a free port and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("HttpTarget already started once; make a new one")
        self._server = _CountingServer()
        self._running = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-target", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._server is None or not self._running:
            return
        self._running = False
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _require(self) -> _CountingServer:
        if self._server is None:
            raise RuntimeError("HttpTarget is not started")
        return self._server

    def __enter__(self) -> HttpTarget:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture
def http_target() -> Iterator[HttpTarget]:
    """A running ``HttpTarget`` on 127.0.0.1 (``.port``, ``.url``, ``.hits``), stopped after the test."""
    with HttpTarget() as target:
        yield target
