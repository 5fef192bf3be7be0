"""The CLI's two ways to a server, the client (``octotui/client.py``) and the ``--json`` fast path
(``commands/rawjson.py``), word every failure the same (``octotui/httpcommon.py``): a refused
connection, a refused token, a proxy that is down, a proxy that cannot reach the server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octotui.cli import main
from tests.support.processes import ServerProcess, free_port
from tests.support.tinyproxy import Tinyproxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings from the user's machine (config and data dirs in tmp, no OCTOTUI_*), no proxy."""
    for name in list(os.environ):
        if name.startswith("OCTOTUI_") or name.upper() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _proxy(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, url)


def both(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    """``octotui agents --json ARGV`` (the fast path) and ``octotui agents ARGV`` (the client): their
    stderr; both must fail with exit 2 and print nothing on stdout."""
    said = []
    for command in (["agents", "--json"], ["agents"]):
        capsys.readouterr()
        code = main([*command, *argv])
        out, err = capsys.readouterr()
        assert (code, out) == (2, ""), err
        said.append(err)
    return said[0], said[1]


def test_a_refused_connection_reads_the_same(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    fast, client = both(capsys, "--server", url, "--token", "t")
    assert fast == client == f"octotui agents: cannot reach the server: {url}: connection refused\n"


def test_a_refused_token_reads_the_same(env: None, server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    fast, client = both(capsys, "--server", server.url, "--token", "not-a-token")
    assert fast == client
    assert fast.startswith("octotui agents: the server refused the token: ") and fast.endswith("(HTTP 401)\n")


def test_a_proxy_that_is_down_is_named_without_its_password(
    env: None, server: ServerProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    _proxy(monkeypatch, f"http://user:s3cret@127.0.0.1:{port}")
    fast, client = both(capsys, "--server", server.url, "--token", server.admin_token)
    assert fast == client
    assert fast == (
        f"octotui agents: cannot reach the server: {server.url}: connection refused"
        f" (through the proxy http://user:***@127.0.0.1:{port})\n"
    )
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # bypassed: the server answers
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert main(["agents", "--json", "--server", server.url, "--token", server.admin_token]) == 0


def test_a_proxy_that_cannot_reach_the_server_reads_the_same(
    env: None, tinyproxy: Tinyproxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _proxy(monkeypatch, tinyproxy.url)
    url = f"http://127.0.0.1:{free_port()}"
    fast, client = both(capsys, "--server", url, "--token", "t")
    assert fast == client
    # tinyproxy's HTML error page is not printed: its status and reason are
    assert fast.startswith("octotui agents: the server refused: ") and "(HTTP 50" in fast and "<" not in fast, fast
    assert tinyproxy.requests("/api/v1/agents") == 2


def test_an_empty_url_in_the_list_reads_the_same(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    fast, client = both(capsys, "--server", "http://127.0.0.1:9,", "--token", "t")
    assert fast == client == "octotui agents: --server: an empty URL in the list: 'http://127.0.0.1:9,'\n"
