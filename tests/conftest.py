"""Shared fixtures: real server and agent processes on loopback, the real Docker engine.

Docker-dependent tests must run in CI (``CI=true``): there a missing engine or image fails the run
instead of skipping it. Elsewhere they skip with the reason, so a laptop without Docker can still
run the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.httptarget import http_target  # noqa: F401 - fixture registered for every test

IN_CI = os.environ.get("CI", "").lower() == "true"
JMETER_IMAGE = os.environ.get("OCTOTUI_TEST_JMETER_IMAGE", "octotui-jmeter:local")
ROOT = Path(__file__).resolve().parent.parent


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI requires it: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; bounded, fails with ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A docker SDK client on a live engine."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        _missing(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def jmeter_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    """The locally built JMeter image (``make jmeter-image``)."""
    import docker.errors

    try:
        docker_client.images.get(JMETER_IMAGE)
    except docker.errors.ImageNotFound:
        _missing(f"image {JMETER_IMAGE} is missing: run `make jmeter-image`")
    return JMETER_IMAGE


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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
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
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        code = self.proc.returncode
        self.proc = None
        return code


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real control server with short health thresholds, for end-to-end tests."""
    proc = ServerProcess(tmp_path / "server", "--heartbeat-interval", "1", "--late-after", "3", "--offline-after", "6")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Collects agents a test starts and stops every one of them at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        with contextlib.suppress(Exception):
            agent.stop()


@pytest.fixture(scope="session", autouse=True)
def _sweep_agent_containers() -> Iterator[None]:
    """At the end of the session, remove any container an agent of this session left behind.

    Tests clean up after themselves; this is the net under a test that failed half-way (a killed
    agent's exited JMeter container would otherwise stay on the engine). It touches only containers
    labelled with the id of an agent this pytest process started.
    """
    yield
    import json

    ids: set[str] = set()
    for state_dir in STARTED_AGENT_STATE_DIRS:
        with contextlib.suppress(OSError, ValueError, KeyError):
            ids.add(str(json.loads((state_dir / "identity.json").read_text())["agent_id"]))
    if not ids:
        return
    try:
        import docker

        client = docker.from_env(timeout=30)
    except Exception:
        return
    from octotui.protocol import LABEL_AGENT

    try:
        for agent_id in ids:
            with contextlib.suppress(Exception):
                for container in client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"}):
                    with contextlib.suppress(Exception):
                        container.remove(force=True, v=True)
    finally:
        client.close()
