"""A small fault-injecting relay of the tests' own, on loopback (TCP) or on a unix socket.

Put it between an agent and the server (``FaultProxy(("127.0.0.1", server.port))``, then give the
agent ``proxy.url``), or between an agent and the Docker engine (``FaultProxy("/var/run/docker.sock",
listen_unix=PATH)``, then ``DOCKER_HOST=unix://PATH``). Faults are switched while it runs:

- ``delay_s``: every chunk waits this long before it is forwarded (both directions);
- ``refuse``: new connections are reset at once (a dropped network);
- ``blackhole``: connections are accepted but nothing is forwarded (packets lost);
- ``cut_probability``: a connection's response (upstream to client) is cut mid-way, after a random
  part of its first chunk, with this probability per connection;
- ``idle_kill_s``: connections without traffic for this long are closed (a proxy's idle timeout);
- :meth:`kill_all` closes every open connection now; :meth:`down` / :meth:`up` stop listening and
  listen again (a unix socket file disappears while down).

Every loop is bounded by :meth:`stop`; every thread is a daemon.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import struct
import threading
import time
from types import TracebackType

Upstream = tuple[str, int] | str
_TICK = 0.1


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket, cut: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.cut = cut
        self.last = time.monotonic()
        self.closed = False

    def close(self, reset: bool = False) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """A relay from a loopback port (or a unix socket) to ``upstream``, with switchable faults."""

    def __init__(self, upstream: Upstream, listen_unix: str | None = None, seed: int | None = None) -> None:
        self.upstream = upstream
        self.listen_unix = listen_unix
        self.delay_s = 0.0
        self.refuse = False
        self.blackhole = False
        self.cut_probability = 0.0
        self.idle_kill_s: float | None = None
        self.connections = 0
        self.cuts = 0
        self.idle_kills = 0
        self.resets = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._port = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- life ----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The loopback TCP port clients connect to (TCP mode)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (TCP mode)."""
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FaultProxy:
        """Listen and relay in daemon threads."""
        self._stopping.clear()
        self.up()
        reaper = threading.Thread(target=self._reap, name="faultproxy-reaper", daemon=True)
        reaper.start()
        self._threads.append(reaper)
        return self

    def up(self) -> None:
        """Listen (again), on the same port or socket path as before."""
        if self._listener is not None:
            return
        if self.listen_unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen_unix)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.listen_unix)
        else:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._port))
            self._port = listener.getsockname()[1]
        listener.listen(128)
        listener.settimeout(_TICK)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), name="faultproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)

    def down(self) -> None:
        """Stop listening and close every connection (the unix socket file goes away)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self.listen_unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen_unix)
        self.kill_all()

    def kill_all(self, reset: bool = True) -> int:
        """Close every open connection now (reset by default); how many were closed."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            conn.close(reset=reset)
        return len(conns)

    def heal(self) -> None:
        """Switch every fault off (open connections stay)."""
        self.delay_s = 0.0
        self.refuse = self.blackhole = False
        self.cut_probability = 0.0
        self.idle_kill_s = None

    def stop(self) -> None:
        """Stop listening, close everything, end the threads."""
        self._stopping.set()
        self.down()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- relaying --------------------------------------------------------------------------------

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(self.upstream)
        else:
            sock = socket.create_connection(self.upstream, timeout=5)
        sock.settimeout(None)
        return sock

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.refuse:
                self.resets += 1
                _Conn(client, client, cut=False).close(reset=True)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                _Conn(client, client, cut=False).close(reset=True)
                continue
            conn = _Conn(client, upstream, cut=self._random.random() < self.cut_probability)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._pump, args=(conn,), name="faultproxy-pump", daemon=True).start()

    def _pump(self, conn: _Conn) -> None:
        pairs = {conn.client: conn.upstream, conn.upstream: conn.client}
        try:
            while not conn.closed and not self._stopping.is_set():
                readable, _, _ = select.select(list(pairs), [], [], _TICK)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    conn.last = time.monotonic()
                    if self.blackhole:
                        continue
                    if self.delay_s:
                        time.sleep(self.delay_s)
                    if sock is conn.upstream and conn.cut:
                        part = data[: self._random.randint(1, max(1, len(data) - 1))] if len(data) > 1 else b""
                        if part:
                            pairs[sock].sendall(part)
                        self.cuts += 1
                        return
                    pairs[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close(reset=conn.cut)

    def _reap(self) -> None:
        while not self._stopping.is_set():
            limit = self.idle_kill_s
            if limit is not None:
                now = time.monotonic()
                with self._lock:
                    idle = [c for c in self._conns if now - c.last >= limit]
                    self._conns.difference_update(idle)
                for conn in idle:
                    self.idle_kills += 1
                    conn.close()
            self._stopping.wait(_TICK)
