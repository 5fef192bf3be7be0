"""An HTTP target on 127.0.0.1 whose answers can be made slower while it runs (``delay``): two runs
of one plan against it, the second deliberately slower, for tests of a baseline comparison.

Use it as a context manager; set ``target.delay = 0.08`` and every answer after waits 80 ms first.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

BODY = b"ok\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    delay = 0.0  # seconds every answer waits first
    hits = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True  # no delayed-ACK stall (see httptarget.py)
    server: _Server

    def do_GET(self) -> None:
        if self.server.delay > 0:
            time.sleep(self.server.delay)
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlowTarget:
    """A threaded HTTP server on a free loopback port answering 200 after ``delay`` seconds."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="slow-target", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def hits(self) -> int:
        return self._server.hits

    @property
    def delay(self) -> float:
        return self._server.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._server.delay = seconds

    def __enter__(self) -> SlowTarget:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
