"""The dashboard against a real server process (and a real agent): the app as ``make run`` builds
it, at the fixed terminal size of every Pilot test, and the small lab the dashboard tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octotui.client import Client
from octotui.tui.app import DashboardSettings, OctoApp, create_app
from tests.support.httptarget import HttpTarget
from tests.support.processes import ROOT, AgentProcess, ServerProcess
from tests.support.waiting import wait_until

SIZE = (80, 24)
PLAN = ROOT / "examples" / "http-get.jmx"
#: An image no registry can serve here: the pull fails, so the test fails with a reason.
MISSING_IMAGE = "127.0.0.1:9/octotui-missing:none"


def make_provider(server: ServerProcess, name: str = "lab") -> dict[str, str]:
    with server.client() as http:
        response = http.post("/providers", json={"name": name})
        response.raise_for_status()
        return dict(response.json())


def start_agent(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, token: str) -> AgentProcess:
    """Agent ``box1`` in location ``paris`` (1 s heartbeat), stopped by the ``agents`` fixture."""
    agent = AgentProcess(server.url, token, tmp_path / "agent-state", "paris", "box1", "--interval", "1")
    agents.append(agent.start())
    return agent


def build_app(server: ServerProcess, *, read_only: bool = False, token: str | None = None) -> OctoApp:
    settings = DashboardSettings(server=server.url, token=token or server.admin_token, read_only=read_only, refresh=0.5)
    return create_app(settings, Client(server.url, settings.token, timeout=3))


def agent_id(server: ServerProcess, name: str = "box1") -> str | None:
    """The id of the agent named ``name``, once it has registered."""
    with server.client() as http:
        return next((a["id"] for a in http.get("/agents").json() if a["name"] == name), None)


def text_of(app: OctoApp, selector: str) -> str:
    """What the widget ``selector`` of the current screen renders."""
    return str(app.screen.query_one(selector).render())


def docker_lab(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path) -> dict[str, str]:
    """Provider ``lab`` with agent ``box1`` online and its Docker engine usable."""
    provider = make_provider(server)
    start_agent(server, agents, tmp_path, provider["token"])

    def ready() -> bool:
        with server.client() as http:
            return any(a["docker"] and a["docker"]["available"] for a in http.get("/agents").json())

    wait_until(ready, timeout=30, what="agent box1 online with Docker")
    return provider


def create_test(server: ServerProcess, **extra: Any) -> dict[str, Any]:
    """A test of one container of the example plan in provider ``lab``, with ``extra`` on top."""
    body = {"name": "t", "plan": PLAN.read_text(), "provider": "lab", "containers": 1, **extra}
    with server.client() as http:
        response = http.post("/tests", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def long_test(
    server: ServerProcess,
    agents: list[AgentProcess],
    tmp_path: Path,
    jmeter_image: str,
    http_target: HttpTarget,
    name: str,
) -> dict[str, Any]:
    """A 5-minute real JMeter test (1 user) named ``name`` on the Docker lab, against the tests' target."""
    docker_lab(server, agents, tmp_path)
    props = {"host": "127.0.0.1", "port": str(http_target.port), "think_ms": "50"}
    return create_test(server, name=name, image=jmeter_image, users=1, duration=300, properties=props)
