"""Real ``octotui server`` and ``octotui-agent`` child processes on loopback, and what they need.

Docker-dependent tests must run in CI (``CI=true``): there a missing engine or image fails the run
instead of skipping it (:func:`missing`). Elsewhere they skip with the reason, so a laptop without
Docker can still run the rest.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.waiting import wait_until

IN_CI = os.environ.get("CI", "").lower() == "true"
JMETER_IMAGE = os.environ.get("OCTOTUI_TEST_JMETER_IMAGE", "octotui-jmeter:local")
ROOT = Path(__file__).resolve().parents[2]


def missing(reason: str) -> None:
    """Something a test needs is not here: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"CI requires it: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Send ``sig`` to a child that still runs; kill it if it has not exited ``timeout`` s later."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class ServerProcess:
    """``octotui server`` as a real child process on a loopback port."""

    def __init__(
        self, data_dir: Path, *extra: str, port: int | None = None, admin_token: str = "test-admin-token"
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.admin_token = admin_token
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "octotui", "server",
            "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port),
            f"--admin-token={self.admin_token}", *self.extra,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_until(self._healthy, timeout=30, what=f"server on {self.url} (log {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig)
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10
        )


#: State folders of every agent process this pytest process started, for the session-end sweep.
STARTED_AGENT_STATE_DIRS: set[Path] = set()


class AgentProcess:
    """``octotui-agent`` as a real child process."""

    def __init__(
        self, server_url: str, token: str, state_dir: Path, location: str = "local", name: str = "agent", *extra: str
    ) -> None:
        self.server_url = server_url
        self.token = token
        self.state_dir = state_dir
        self.location = location
        self.name = name
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}.log"

    def start(self, env: dict[str, str] | None = None) -> AgentProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "agent",
            f"--server={self.server_url}", f"--token={self.token}", f"--location={self.location}",
            "--name", self.name, "--state-dir", str(self.state_dir), *self.extra,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
        log.close()
        STARTED_AGENT_STATE_DIRS.add(self.state_dir)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc, sig, timeout)
        code = self.proc.returncode
        self.proc = None
        return code
