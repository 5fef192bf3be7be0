"""Debian's HAProxy in front of given backends on a loopback port, configured from the deployment's
own ``deploy/haproxy.cfg`` (its timeouts, retries and health checks as shipped; only the ``bind``
and ``server`` lines are this test's), with an admin socket to read what it thinks of each backend.

The ``haproxy`` fixture gives a factory: ``haproxy([port_a, port_b])`` starts one, stopped after
the test. A missing haproxy fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port, missing, stop_process
from tests.support.waiting import wait_until

HAPROXY = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
DEPLOY_CONFIG = ROOT / "deploy" / "haproxy.cfg"


def config_for(port: int, backends: Sequence[int], admin_socket: Path) -> str:
    """``deploy/haproxy.cfg`` listening on 127.0.0.1:``port`` in front of replicas on these loopback
    ports (``replica1``…), with an admin socket."""
    lines = []
    for line in DEPLOY_CONFIG.read_text().splitlines():
        word = line.strip().split(" ", 1)[0]
        if word == "server":
            continue
        if word == "bind":
            line = f"    bind 127.0.0.1:{port}"
        if word == "maxconn":
            line = "    maxconn 500"  # within any test machine's file descriptor limit
        lines.append(line)
        if line.strip() == "global":
            lines.append(f"    stats socket {admin_socket} mode 600 level admin")
    for i, backend in enumerate(backends, 1):
        lines.append(f"    server replica{i} 127.0.0.1:{backend} check cookie replica{i}")
    return "\n".join(lines) + "\n"


class HAProxy:
    """haproxy in the foreground (``-db``) on a free loopback port; its log in ``directory``."""

    def __init__(self, directory: Path, backends: Sequence[int]) -> None:
        self.directory = directory
        self.backends = list(backends)
        self.port = free_port()
        self.socket_path = directory / "admin.sock"
        self.log_path = directory / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        assert HAPROXY is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "haproxy.cfg"
        config.write_text(config_for(self.port, self.backends, self.socket_path))
        checked = subprocess.run([HAPROXY, "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"haproxy refuses {config}: {checked.stdout}{checked.stderr}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._listening, timeout=15, what=f"haproxy on {self.url} (log {self.log_path})")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited with {self.proc.returncode}: {self.log()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return self.socket_path.exists()
        return False

    def command(self, text: str) -> str:
        """One command on the admin socket (e.g. ``show stat``); its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def states(self) -> dict[str, str]:
        """What HAProxy thinks of each replica now: ``{"replica1": "UP", "replica2": "DOWN", …}``."""
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        name, status = header.index("svname"), header.index("status")
        found = {}
        for row in rows[1:]:
            cells = row.split(",")
            if len(cells) > status and cells[name].startswith("replica"):
                found[cells[name]] = cells[status].split(" ")[0]
        return found

    def wait_for(self, replica: str, state: str, timeout: float = 20) -> None:
        """Wait until HAProxy's health checks say ``replica`` is ``state`` (UP, DOWN)."""
        wait_until(lambda: self.states().get(replica) == state, timeout=timeout, what=f"haproxy: {replica} {state}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[Sequence[int]], HAProxy]]:
    """A factory: ``haproxy([port, …])`` starts HAProxy in front of replicas on those loopback ports."""
    if HAPROXY is None:
        missing("haproxy is not installed (apt-get install haproxy)")
    started: list[HAProxy] = []

    def start(backends: Sequence[int]) -> HAProxy:
        proxy = HAProxy(tmp_path / f"haproxy{len(started)}", backends)
        started.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()
