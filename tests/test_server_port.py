"""``octotui server --port 0`` restarted takes its last port back when it is free (issue 15, part 6):
its agents and dashboards retry the address they were given, so a new port strands them."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.admin import create_provider
from tests.support.processes import AgentProcess, stop_process
from tests.support.waiting import wait_until

TOKEN = "test-admin-token"


class PortZeroServer:
    """``octotui server --port 0`` on a data dir, started and stopped as often as a test likes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        """Start it; its URL once it answers. The log of this start alone is :attr:`log`."""
        self.log_path.write_bytes(b"")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "octotui", "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                 "--port", "0", f"--admin-token={TOKEN}", "--heartbeat-interval", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.url = wait_until(self._answering, timeout=30, what=f"the server's URL (log {self.log_path})")
        return self.url

    def _answering(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.log}")
        url = (self.data_dir / "server.url").read_text().strip()
        return url if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200 else None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


@pytest.fixture
def port_zero(tmp_path: Path) -> Iterator[PortZeroServer]:
    server = PortZeroServer(tmp_path / "server")
    yield server
    server.stop()


def _seen_since(api: httpx.Client, name: str, moment: datetime) -> bool:
    agents = [a for a in api.get("/agents").json() if a["name"] == name and a["last_seen"]]
    return bool(agents) and datetime.fromisoformat(agents[0]["last_seen"]) > moment


def test_restarted_it_reuses_its_port_and_its_agent_comes_back(
    port_zero: PortZeroServer, agents: list[AgentProcess], tmp_path: Path
) -> None:
    first = port_zero.start()
    assert "from the last run" not in port_zero.log, "a first run has no port to reuse"
    with port_zero.api() as api:
        token = create_provider(api, "lab")["token"]
    agents.append(AgentProcess(first, token, tmp_path / "gen-a", "paris", "gen-a", "--interval", "1").start())
    with port_zero.api() as api:
        wait_until(lambda: _seen_since(api, "gen-a", datetime.min.replace(tzinfo=UTC)), timeout=30, what="gen-a")
    port_zero.stop()
    assert not (port_zero.data_dir / "server.url").exists(), "server.url still says whether a server runs"

    restarted = datetime.now(UTC)
    assert port_zero.start() == first
    assert f"reusing port {port_zero.port} from the last run" in port_zero.log
    with port_zero.api() as api:  # the agent retries the address it was given: found again
        wait_until(lambda: _seen_since(api, "gen-a", restarted), timeout=30, what="gen-a heard after the restart")


def test_a_taken_port_gives_a_new_one_and_says_so(port_zero: PortZeroServer) -> None:
    port_zero.start()
    old = port_zero.port
    port_zero.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old))
        squatter.listen()
        port_zero.start()
        assert port_zero.port != old
        assert f"port {old} of the last run is taken" in port_zero.log
        assert f"listening on port {port_zero.port} instead" in port_zero.log
    port_zero.stop()
    assert port_zero.start().endswith(f":{port_zero.port}")
    assert f"reusing port {port_zero.port} from the last run" in port_zero.log, "the newest port is remembered"
    assert port_zero.port != old


def test_a_killed_run_leaves_server_url_whose_port_is_reused(port_zero: PortZeroServer) -> None:
    """SIGKILL leaves ``server.url`` behind (no chance to delete it): its port is the one reused."""
    first = port_zero.start()
    assert port_zero.proc is not None
    port_zero.proc.kill()
    port_zero.proc.wait(timeout=10)
    (port_zero.data_dir / "server.last-url").unlink()
    assert port_zero.start() == first
    assert f"reusing port {port_zero.port} from the last run" in port_zero.log
