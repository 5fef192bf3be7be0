"""The real ``octotui server`` process: files it writes, tokens, restarts keeping the state."""

from __future__ import annotations

import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServerProcess
from tests.support.tlskit import https_server, make_pki
from tests.support.waiting import wait_until

PLAN = '<jmeterTestPlan version="1.2"><hashTree><TestPlan testname="t"/></hashTree></jmeterTestPlan>'


def test_writes_server_url_and_logs_it(server: ServerProcess) -> None:
    url_file = server.data_dir / "server.url"
    assert url_file.read_text().strip() == server.url
    wait_until(lambda: f"octotui server listening on {server.url}" in server.log_path.read_text(), what="log line")
    # The admin token was given: no token file written.
    assert not (server.data_dir / "admin.token").exists()
    with server.client() as http:
        info = http.get("/info").json()
    assert info["role"] == "admin" and info["heartbeat_interval"] == 1.0 and info["offline_after"] == 6.0


def test_generates_admin_token_with_mode_0600_and_keeps_it(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", admin_token="")
    proc.start()
    try:
        token_file = proc.data_dir / "admin.token"
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{proc.url}/api/v1/providers", headers=headers).status_code == 200
        proc.restart()
        assert token_file.read_text().strip() == token
        assert httpx.get(f"{proc.url}/api/v1/providers", headers=headers).status_code == 200
    finally:
        proc.stop()


def test_port_zero_picks_a_free_port_written_to_server_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "OCTOTUI_ADMIN_TOKEN": "env-token", "OCTOTUI_LATE_AFTER": "7"}
    cmd = [sys.executable, "-m", "octotui.server", "--data-dir", str(data), "--port", "0"]
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    try:
        url = wait_until(lambda: (data / "server.url").read_text().strip(), timeout=30, what="server.url")
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        info = httpx.get(f"{url}/api/v1/info", headers={"Authorization": "Bearer env-token"}).json()
        assert info["late_after"] == 7.0 and info["url"] == url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not (data / "server.url").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_a_replica_behind_a_balancer_gives_the_public_url(tmp_path: Path) -> None:
    """Behind HAProxy, /info (and so the providers' install lines) must give the balancer's URL,
    never the replica's own loopback address."""
    proc = ServerProcess(tmp_path / "data", "--public-url", "https://octotui.example.org:8443/").start()
    try:
        with proc.client() as http:
            assert http.get("/info").json()["url"] == "https://octotui.example.org:8443"
    finally:
        proc.stop()


def test_bad_flags_exit_with_a_message(tmp_path: Path) -> None:
    for args, words in (
        (["--port", "70000"], "port must be 0..65535"),
        (["--late-after", "10", "--offline-after", "5"], "--offline-after must be greater"),
        (["--tls-cert", "x.pem"], "go together"),
        (["--public-url", "lb.example:8427"], "expected an http(s)://host[:port] URL"),
        (["--public-url", "http://lb.example:99999"], "expected an http(s)://host[:port] URL"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "octotui", "server", "--data-dir", str(tmp_path / "d"), *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_restart_keeps_providers_agents_and_tests(server: ServerProcess) -> None:
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).json()
        reg = http.post(
            "/agents/register",
            json={"name": "gen-1", "location": "paris", "cpu_count": 2},
            headers={"Authorization": f"Bearer {provider['token']}"},
        ).json()
        agent_auth = {"Authorization": f"Bearer {reg['agent_token']}"}
        beat = {"host": {"ts": time.time(), "cpu_percent": 5, "memory_percent": 10, "memory_total": 8 << 30},
                "docker": {"available": True}}  # fmt: skip
        assert http.post(f"/agents/{reg['agent_id']}/heartbeat", json=beat, headers=agent_auth).status_code == 200
        r = http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "lab", "containers": 1})
        assert r.status_code == 201, r.text
        test = r.json()

    server.restart()

    with server.client() as http:
        assert [p["name"] for p in http.get("/providers").json()] == ["lab"]
        agents = http.get("/agents").json()
        assert [(a["id"], a["name"]) for a in agents] == [(reg["agent_id"], "gen-1")]
        assert agents[0]["last_seen"] is not None
        kept = http.get(f"/tests/{test['id']}").json()
        assert kept["state"] == "pending" and [c["id"] for c in kept["containers"]] == [
            c["id"] for c in test["containers"]
        ]
        # The agent's token and its queued launch survived too.
        r = http.get(f"/agents/{reg['agent_id']}/commands", params={"timeout": 0}, headers=agent_auth)
        assert r.status_code == 200 and [c["kind"] for c in r.json()] == ["launch"]
        # The provider token still registers, as the same agent.
        again = http.post(
            "/agents/register",
            json={"name": "gen-1", "location": "paris"},
            headers={"Authorization": f"Bearer {provider['token']}"},
        ).json()
        assert again["agent_id"] == reg["agent_id"]


def test_serves_https_with_a_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with https_server(tmp_path, pki, "tls") as url:
        assert url.startswith("https://127.0.0.1:")
        r = httpx.get(
            f"{url}/api/v1/info",
            headers={"Authorization": "Bearer tls"},
            verify=ssl.create_default_context(cafile=str(pki.ca)),
        )
        assert r.status_code == 200 and r.json()["url"] == url
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url.replace('https', 'http')}/api/v1/health", timeout=2)
