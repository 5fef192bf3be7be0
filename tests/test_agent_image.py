"""The agent image (``make agent-image``): the agent as a container, on the host's Docker engine.

It is started as the documented one-line install does it (host network, the Docker socket, the
state directory mounted at the same path on both sides), registers with a real server on loopback,
reports this host's figures, and launches a real JMeter container beside itself through the host's
engine, which it follows, stops and removes.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin import create_provider, online_agent
from tests.support.processes import ROOT, ServerProcess, missing
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.jmeter, pytest.mark.xdist_group("jmeter")]

AGENT_IMAGE = os.environ.get("OCTOTUI_TEST_AGENT_IMAGE", "octotui-agent:latest")
AGENT_UID = 10001


@pytest.fixture(scope="session")
def agent_image(docker_client: Any) -> str:
    """The agent image of the current sources: ``scripts/agent-image.sh`` (``make agent-image``) is
    idempotent and returns at once when the image carries the hash of these sources."""
    built = subprocess.run(["bash", str(ROOT / "scripts" / "agent-image.sh"), AGENT_IMAGE], capture_output=True,
                           text=True, timeout=900, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    if built.returncode != 0:
        missing(f"cannot build {AGENT_IMAGE} (run `make agent-image`): {(built.stderr or built.stdout)[-1500:]}")
    return AGENT_IMAGE


class AgentContainer:
    """The agent image run as the install line runs it; removed by id at the end."""

    def __init__(
        self, docker_client: Any, image: str, state_dir: Path, env: dict[str, str], mount_at: str | None = None
    ) -> None:
        self.docker_client = docker_client
        self.image = image
        self.state_dir = state_dir
        self.env = env
        #: where the state dir is mounted in the agent's container (default: the same path as on the host)
        self.mount_at = mount_at or str(state_dir)
        self.container: Any = None

    def start(self) -> AgentContainer:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.container = self.docker_client.containers.run(
            self.image,
            detach=True,
            name=f"octotui-agent-test-{uuid.uuid4().hex[:12]}",
            network_mode="host",
            volumes={
                "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                str(self.state_dir): {"bind": self.mount_at, "mode": "rw"},
            },
            environment={"OCTOTUI_STATE_DIR": self.mount_at, **self.env},
            labels={"io.octotui.test-agent": "true"},
        )
        return self

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace") if self.container is not None else ""

    def remove(self) -> None:
        if self.container is not None:
            self.container.remove(force=True)
            self.container = None


@pytest.fixture
def agent_container(docker_client: Any, agent_image: str, tmp_path: Path) -> Iterator[list[AgentContainer]]:
    """Collects the agent containers a test starts and removes each of them (by id) at the end."""
    started: list[AgentContainer] = []
    yield started
    for agent in started:
        agent.remove()


def test_image_registers_reports_and_runs_jmeter_on_the_host_engine(  # type: ignore[no-untyped-def]
    server: ServerProcess, agent_container, agent_image, docker_client, jmeter_image, http_target, tmp_path
) -> None:
    api = server.client()
    provider = create_provider(api, "image")
    # Under /tmp: the host's engine must find the same path when the agent bind-mounts work folders.
    state = tmp_path / "agent-state"
    env = {"OCTOTUI_SERVER": server.url, "OCTOTUI_TOKEN": provider["token"], "OCTOTUI_LOCATION": "paris",
           "OCTOTUI_NAME": "gen-image", "OCTOTUI_INTERVAL": "0.5"}  # fmt: skip
    agent = AgentContainer(docker_client, agent_image, state, env).start()
    agent_container.append(agent)

    def online() -> dict[str, Any] | None:
        found = [a for a in api.get("/agents").json() if a["name"] == "gen-image" and a["status"] == "online"]
        ready = found and found[0].get("host") and (found[0].get("docker") or {}).get("available")
        return found[0] if ready else None

    try:
        agent_info = wait_until(online, timeout=40, what="the agent from the image online with Docker")
    except AssertionError:
        raise AssertionError(f"agent container log:\n{agent.logs()[-3000:]}") from None
    assert agent_info["location"] == "paris" and agent_info["provider"] == provider["id"]
    host = agent_info["host"]
    assert host["memory_total"] > 0 and 0 < host["memory_percent"] < 100 and len(host["cpu_per_core"]) >= 1
    assert agent_info["cpu_count"] == os.cpu_count()
    identity = state / "identity.json"
    assert identity.is_file() and identity.stat().st_uid == AGENT_UID, "the agent runs as octotui-agent"
    top = agent.container.top()
    users = {row[top["Titles"].index("UID")] for row in top["Processes"]}
    assert users <= {str(AGENT_UID), "octotui+", "octotui-agent"}, f"agent processes run as {users}"

    spec = {
        "name": "from the image",
        "plan": (ROOT / "examples" / "http-get.jmx").read_text(),
        "provider": provider["id"],
        "containers": 1,
        "image": jmeter_image,
        "users": 2,
        "duration": 120,
        "properties": {"host": "127.0.0.1", "port": str(http_target.port), "path": "/"},
    }
    created = api.post("/tests", json=spec)
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]

    def running() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()["containers"][0]
        return current if current["state"] == "running" and (current.get("figures") or {}).get("samples") else None

    try:
        container = wait_until(running, timeout=90, interval=0.5, what="the JMeter container running with figures")
    except AssertionError:
        raise AssertionError(f"agent container log:\n{agent.logs()[-3000:]}") from None
    assert container["agent"] == agent_info["id"]
    jmeter = docker_client.containers.list(filters={"label": f"io.octotui.test={test_id}"})
    assert len(jmeter) == 1, "the JMeter container runs on the host's engine, beside the agent"
    mounts = {m["Destination"]: m["Source"] for m in jmeter[0].attrs["Mounts"]}
    assert mounts["/plan"].startswith(str(state)), mounts
    assert http_target.hits > 0, "JMeter really hit the local target"

    assert api.post(f"/tests/{test_id}/stop").status_code == 200

    def ended() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()
        return current if current["state"] in ("finished", "failed") else None

    final = wait_until(ended, timeout=90, interval=1, what="the test to end after stop")
    assert final["state"] == "finished", final
    assert final["results"]["samples"] > 0
    wait_until(
        lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}),
        timeout=30,
        what="the JMeter container removed",
    )

    agent.container.stop(timeout=20)
    agent.container.reload()
    assert agent.container.attrs["State"]["ExitCode"] == 0, agent.logs()[-2000:]
    log = agent.logs()
    assert "registered as" in log and "stopped by signal" in log and "Traceback" not in log


def test_image_without_server_exits_with_usage_error(agent_container, agent_image, docker_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent = AgentContainer(docker_client, agent_image, tmp_path / "agent-state", {}).start()
    agent_container.append(agent)
    result = agent.container.wait(timeout=60)
    assert result["StatusCode"] == 2
    assert "--server (or OCTOTUI_SERVER) is required" in agent.logs()


def _launch(api: httpx.Client, provider: dict[str, Any], image: str, port: int) -> str:
    spec = {"name": "mounted elsewhere", "plan": (ROOT / "examples" / "http-get.jmx").read_text(),
            "provider": provider["id"], "containers": 1, "image": image, "users": 1, "duration": 60,
            "properties": {"host": "127.0.0.1", "port": str(port), "path": "/", "think_ms": "50"}}  # fmt: skip
    created = api.post("/tests", json=spec)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_image_with_its_state_dir_mounted_at_another_host_path_runs_jmeter(  # type: ignore[no-untyped-def]
    server: ServerProcess, agent_container, agent_image, docker_client, jmeter_image, http_target, tmp_path
) -> None:
    """The documented default: ``-v HOSTDIR:/var/lib/octotui-agent``; JMeter gets host paths under HOSTDIR."""
    api = server.client()
    provider = create_provider(api, "image")
    host_dir = tmp_path / "elsewhere"
    env = {"OCTOTUI_SERVER": server.url, "OCTOTUI_TOKEN": provider["token"], "OCTOTUI_NAME": "gen-moved",
           "OCTOTUI_INTERVAL": "0.5"}  # fmt: skip
    agent = AgentContainer(docker_client, agent_image, host_dir, env, mount_at="/var/lib/octotui-agent").start()
    agent_container.append(agent)
    try:
        wait_until(lambda: online_agent(api, "gen-moved", docker=True), timeout=40, what="the agent online with Docker")
        test_id = _launch(api, provider, jmeter_image, http_target.port)

        def running() -> dict[str, Any] | None:
            c = api.get(f"/tests/{test_id}").json()["containers"][0]
            return c if c["state"] == "running" and (c.get("figures") or {}).get("samples") else None

        container = wait_until(running, timeout=60, interval=0.5, what="the JMeter container running with figures")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent container log:\n{agent.logs()[-3000:]}") from None
    jmeter = docker_client.containers.list(filters={"label": f"io.octotui.test={test_id}"})
    assert len(jmeter) == 1
    mounts = {m["Destination"]: m["Source"] for m in jmeter[0].attrs["Mounts"]}
    assert mounts["/plan"] == str(host_dir / "work" / container["id"] / "plan"), mounts
    assert mounts["/results"] == str(host_dir / "work" / container["id"] / "results"), mounts
    assert any((host_dir / "work" / container["id"] / "plan").glob("*.jmx")), "the plan is in the host folder"
    assert api.post(f"/tests/{test_id}/stop").status_code == 200
    final = wait_until(
        lambda: (t := api.get(f"/tests/{test_id}").json())["state"] in ("finished", "failed") and t,
        timeout=60,
        interval=1,
        what="the test to end after stop",
    )
    assert final["state"] == "finished" and final["results"]["samples"] > 0, final
    wait_until(
        lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}),
        timeout=30,
        what="the JMeter container removed",
    )
    assert "bind-mounted by their host paths" in agent.logs()


def test_image_with_a_work_dir_on_no_volume_fails_the_launch_clearly(  # type: ignore[no-untyped-def]
    server: ServerProcess, agent_container, agent_image, docker_client, jmeter_image, http_target, tmp_path
) -> None:
    api = server.client()
    provider = create_provider(api, "image")
    env = {"OCTOTUI_SERVER": server.url, "OCTOTUI_TOKEN": provider["token"], "OCTOTUI_NAME": "gen-nowhere",
           "OCTOTUI_WORK_DIR": "/tmp/octotui-work"}  # fmt: skip
    agent = AgentContainer(docker_client, agent_image, tmp_path / "state", env).start()
    agent_container.append(agent)
    wait_until(lambda: online_agent(api, "gen-nowhere", docker=True), timeout=40, what="the agent online with Docker")
    test_id = _launch(api, provider, jmeter_image, http_target.port)
    final = wait_until(
        lambda: (t := api.get(f"/tests/{test_id}").json())["state"] in ("finished", "failed") and t,
        timeout=40,
        interval=0.5,
        what="the test to fail",
    )
    error = final["containers"][0]["error"] or ""
    assert final["state"] == "failed", final
    assert "work folder /tmp/octotui-work is not on a volume of the agent's container" in error, error
    assert not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"})
