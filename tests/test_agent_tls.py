"""The agent against ``octotui server --tls-cert --tls-key`` with a throwaway CA (openssl CLI).

The agent verifies by default: with ``--ca-bundle`` of the right CA it registers and heartbeats,
directly or through a real proxy (CONNECT); with another CA, or with the system's CAs only, it
refuses the server with "certificate verify failed" in its log and registers nothing.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin import create_provider, online_agent
from tests.support.processes import AgentProcess
from tests.support.tinyproxy import Tinyproxy
from tests.support.tlskit import Pki, make_pki
from tests.support.tlskit import https_server as serve_https
from tests.support.waiting import wait_until

ADMIN = "agent-tls-admin"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def https_server(tmp_path: Path, pki: Pki) -> Iterator[str]:
    """``octotui server`` serving HTTPS on 127.0.0.1; yields its https:// URL."""
    with serve_https(
        tmp_path, pki, ADMIN, "--heartbeat-interval", "1", "--late-after", "3", "--offline-after", "6"
    ) as url:
        yield url


@pytest.fixture
def api(https_server: str, pki: Pki) -> Iterator[httpx.Client]:
    """The admin's client of the HTTPS server, closed before the server stops."""
    with _api(https_server, pki) as client:
        yield client


def _api(url: str, pki: Pki) -> httpx.Client:
    return httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {ADMIN}"},
                        verify=ssl.create_default_context(cafile=pki.ca), timeout=10, trust_env=False)  # fmt: skip


def _no_proxy() -> dict[str, str]:
    env = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": "", "NO_PROXY": ""}
    return {**env, **{k.lower(): v for k, v in env.items()}}


def test_agent_with_the_ca_bundle_registers_and_heartbeats_over_https(
    https_server: str, pki: Pki, api: httpx.Client, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = create_provider(api, "tls")
    agent = AgentProcess(https_server, provider["token"], tmp_path / "gen-t", "paris", "gen-t",
                         f"--ca-bundle={pki.ca}", "--interval", "0.5")  # fmt: skip
    agents.append(agent.start(env=_no_proxy()))
    first = wait_until(lambda: online_agent(api, "gen-t"), timeout=30, what="the agent online over HTTPS")

    def later() -> dict[str, Any] | None:
        current = online_agent(api, "gen-t")
        return current if current and current["last_seen"] > first["last_seen"] else None

    wait_until(later, timeout=15, what="more heartbeats over HTTPS")
    assert "registered as" in agent.log() and "certificate" not in agent.log()


@pytest.mark.parametrize("which", ["other CA", "system CAs"])
def test_agent_refuses_a_server_it_cannot_verify(
    which: str, https_server: str, pki: Pki, api: httpx.Client, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = create_provider(api, "tls")
    extra = [f"--ca-bundle={pki.other_ca}"] if which == "other CA" else []
    agent = AgentProcess(https_server, provider["token"], tmp_path / "gen-w", "paris", "gen-w", *extra)
    agents.append(agent.start(env=_no_proxy()))
    wait_until(lambda: "certificate verify failed" in agent.log(), timeout=20, what="a certificate error in the log")
    assert api.get("/agents").json() == [], "an unverified server gets nothing"
    assert not (agent.state_dir / "identity.json").exists()
    assert "Traceback" not in agent.log()


def test_agent_over_https_through_the_proxy_uses_connect(
    https_server: str,
    pki: Pki,
    api: httpx.Client,
    agents: list[AgentProcess],
    tinyproxy: Tinyproxy,
    tmp_path: Path,
) -> None:
    provider = create_provider(api, "tls")
    agent = AgentProcess(https_server, provider["token"], tmp_path / "gen-pt", "paris", "gen-pt",
                         f"--ca-bundle={pki.ca}", "--interval", "0.5")  # fmt: skip
    agents.append(agent.start(env=tinyproxy.env()))
    wait_until(lambda: online_agent(api, "gen-pt"), timeout=30, what="the agent online over HTTPS through the proxy")
    port = https_server.rsplit(":", 1)[1]
    assert tinyproxy.requests(f"CONNECT 127.0.0.1:{port}") >= 1, tinyproxy.log()[-2000:]
    assert tinyproxy.requests("/api/v1/") == 0, "the proxy sees only the tunnel, never a request inside it"


def test_agent_through_the_proxy_still_refuses_a_wrong_ca(
    https_server: str,
    pki: Pki,
    api: httpx.Client,
    agents: list[AgentProcess],
    tinyproxy: Tinyproxy,
    tmp_path: Path,
) -> None:
    provider = create_provider(api, "tls")
    agent = AgentProcess(https_server, provider["token"], tmp_path / "gen-pw", "paris", "gen-pw",
                         f"--ca-bundle={pki.other_ca}")  # fmt: skip
    agents.append(agent.start(env=tinyproxy.env()))
    wait_until(lambda: "certificate verify failed" in agent.log(), timeout=20, what="a certificate error in the log")
    assert tinyproxy.requests("CONNECT") >= 1
    assert api.get("/agents").json() == []


@pytest.mark.parametrize(
    "content",
    [
        None,
        "not a certificate\n",
        "",
    ],
)
def test_bad_ca_bundle_file_is_refused_with_a_clear_error(
    content: str | None, https_server: str, pki: Pki, api: httpx.Client, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = create_provider(api, "tls")
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_text(content)
    agent = AgentProcess(https_server, provider["token"], tmp_path / "gen-b", "paris", "gen-b", f"--ca-bundle={bundle}")
    agents.append(agent.start(env=_no_proxy()))
    assert agent.proc is not None
    assert agent.proc.wait(timeout=20) == 2
    log = agent.log()
    assert "--ca-bundle" in log and "Traceback" not in log, log[-2000:]
    assert api.get("/agents").json() == []
